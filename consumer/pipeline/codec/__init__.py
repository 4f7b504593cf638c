"""Debezium's wire form in and out: envelopes decoded into `ChangeEvent` values, column values, encoded
letters.
"""
