"""The rows zoho-cdc keeps in PostgreSQL, as values: a sync-log row, an entity-map update, a create intent.

Built by the pipeline, written by the store (`store`, `group_writes`); never changed once built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from consumer.model.events import EntityType
from consumer.model.outcomes import SyncOutcome

OUTCOMES = tuple(SyncOutcome)  # every outcome a sync-log row may hold


# Not frozen: that triples the cost of building one, and a replay builds one per record.
@dataclass(slots=True)
class OutcomeRow:
    """One sync-log row: the outcome of one Kafka record (a value: never changed once built)."""

    consumer_group: str
    topic: str
    partition: int
    offset: int
    entity_type: str
    entity_id: str | None
    outcome: SyncOutcome
    operation: str | None = None
    zoho_id: str | None = None
    http_status: int | None = None
    attempts: int = 0
    error: str | None = None
    duration_ms: int | None = None
    source_lsn: int | None = None
    source_ts_ms: int | None = None


@dataclass(frozen=True, slots=True)
class EntityUpdate:
    """The entity map row after an applied (or confirmed unchanged) event."""

    entity_type: EntityType
    entity_id: str
    zoho_id: str | None
    payload_hash: str | None
    last_lsn: int | None
    zoho_status: str | None
    natural_key: str | None
    source_row: Mapping[str, Any] | None = None  # `row_images.remembered` form; None keeps the stored one
    rejected_digest: str | None = None  # None clears it: the entity's last outcome was not a refusal
    currency_code: str | None = None  # None keeps the stored one
    replay_memo: str | None = None  # always written: None clears it (`consumer.pipeline.replay.memo`)
    zoho_ahead: str | None = None  # always written: None clears it (Zoho's status, while Zoho is ahead)
    lease: str | None = None  # the write lease of the send this records, released with it (`write_lease`)
    # The map row's version the decision was made from (None: no row, or not a decision's write). When
    # the row moved on in between, another process wrote the entity meanwhile (a no-call `unchanged`
    # beside a write in flight): what Zoho holds is not known, so the payload hash is cleared and the
    # entity's next change is sent whatever it is.
    planned_version: int | None = None


@dataclass(frozen=True, slots=True)
class Intent:
    """A create (or payment) about to be sent: the row that lets a crash find it again."""

    operation: str
    natural_key: str
    #: When it was written (the database's clock): a create takes a left intent over only while it is
    #: still this one, never one another process wrote since (`SyncStore.claim_create`).
    written_at: Any = field(default=None, compare=False)
