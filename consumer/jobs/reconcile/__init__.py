"""Reconcile: compare the source tables with what Zoho holds, and repair what is missing or drifted.

`sides` reads both sides (Zoho only through the paginated `ZohoClient` listings, so every call spends the
live sync's limiter and budget), `comparison` turns two snapshots into findings (pure), `repair` hands
the missing and drifted rows to the live pipeline, `run` is the whole job. A report writes nothing
anywhere; a repair never deletes in Zoho (duplicates are only reported).
"""
