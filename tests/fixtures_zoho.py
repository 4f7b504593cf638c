"""Fixtures for the Zoho simulator and client (filled by the Zoho connector work)."""
