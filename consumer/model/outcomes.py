"""How one Kafka record ends: the outcome its sync-log row records, exactly one per record.

The values are what `zoho_sync_log.outcome` stores, and its CHECK constraint lists them
(`consumer/migrations/0010_zoho_ahead.sql`): a new outcome needs a migration as well as a member here.
"""

from __future__ import annotations

from enum import StrEnum


class SyncOutcome(StrEnum):
    """A record's outcome in the sync log (a `str`, so PostgreSQL, JSON and metric labels see the value)."""

    SYNCED = "synced"  # the call was made: Zoho holds the change
    # nothing to send by rule (a tombstone, never synced, refused before, already a letter)
    SKIPPED = "skipped"
    UNCHANGED = "unchanged"  # Zoho already matches: no call
    STALE = "stale"  # older than the change already applied
    SUPERSEDED = "superseded"  # a newer change of the same entity came in the same batch or replay
    FAILED = "failed"  # parked: refused again after its reprocess attempts, not dead-lettered again
    DEAD_LETTERED = "dead_lettered"  # published to the dead-letter topic
    ZOHO_AHEAD = "zoho_ahead"  # Zoho moved on its own (paid in the portal, made inactive): not sent

    def __repr__(self) -> str:
        # Counts keyed by outcome are logged and printed as dicts: show `'synced'`, as the sync log does,
        # not `<SyncOutcome.SYNCED: 'synced'>`.
        return repr(self.value)
