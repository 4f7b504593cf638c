"""Jobs an operator runs besides the live sync: backfill, dead-letter reprocessing, reconcile, status.

Each job drives the same pipeline (`consumer.pipeline`) or reads what it recorded; none has rules of its own
for what a Zoho call should be.
"""
