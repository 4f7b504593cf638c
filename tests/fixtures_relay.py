"""Fixtures for the embedded Debezium relay (filled by the relay work)."""
