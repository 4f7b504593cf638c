"""Zoho's rate limits kept: the per-minute window shared by instances, the daily budget, adaptive rate."""
