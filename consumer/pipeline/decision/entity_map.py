"""Entity-map values: what the map row of an entity says after each kind of outcome. Pure.

The entity map is how an echo is told from a change (the payload hash of what Zoho acknowledged), how
a stale event is told from a new one (the source position), and where the last whole image and a
refused state are remembered. These functions build its rows; the store writes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

from consumer.entities.registry import spec_of
from consumer.entities.spec import Record
from consumer.model.call_errors import ZohoAhead
from consumer.model.events import ChangeEvent, EntityType
from consumer.model.plan import EntityState, MappingConfig, Plan
from consumer.pipeline.decision.row_images import is_partial, remembered, state_digest
from consumer.pipeline.durability.rows import EntityUpdate
from consumer.pipeline.effects.apply import Applied
from consumer.pipeline.effects.write_back import WriteBack

Row = Mapping[str, Any]


class Listing(Protocol):
    """What Zoho held when a resync began, read page by page (`consumer.jobs.zoho_listing`)."""

    def covers(self, entity_type: EntityType) -> bool: ...

    def has(self, entity_type: EntityType, zoho_id: str | None) -> bool: ...

    def find(
        self, entity_type: EntityType, zoho_id: str | None, natural_key: str | None
    ) -> Record | None: ...

    def zoho_id_of(self, entity_type: EntityType, record: Mapping[str, Any]) -> str: ...

    def differs(self, entity_type: EntityType, row: Row, record: Record, mapping: MappingConfig) -> bool:
        """True when a listed field differs from what the mapping sends for `row`."""
        ...


def position(event: ChangeEvent) -> int | None:
    """The source position an applied event leaves in the entity map, for later stale checks.

    Only streamed changes set it. A snapshot read carries the LSN at which the snapshot began, and a
    transaction that was open then (its change written to the WAL before that LSN) but committed after
    it is streamed later with its own, lower change LSN: compared with the read's LSN it would look
    stale and be lost. Streamed changes of one row are in LSN order (row locks), so they compare safely.
    """
    return event.position


def older_than_applied(event: ChangeEvent, state: EntityState | None) -> bool:
    """True when the entity map holds a later source position than the change: it is stale."""
    return (
        state is not None
        and state.last_lsn is not None
        and event.lsn is not None
        and event.lsn < state.last_lsn
    )


def newest_is_this_refused_state(event: ChangeEvent, state: EntityState | None) -> bool:
    """True when the later position the map holds is this very state, refused: the images after the
    change were only the echo of its 'failed' write-back or a replay of it (same mapped state).

    A dead letter of that state is then not stale: it is the newest state, and re-driving it is how it
    reaches Zoho once the cause is fixed."""
    if state is None or state.rejected is None or event.row is None or is_partial(event):
        return False
    return state.rejected == state_digest(event.entity_type, event.row)


def synced(event: ChangeEvent, plan: Plan, applied: Applied) -> EntityUpdate:
    """The map row after Zoho accepted the plan's calls."""
    spec = spec_of(event.entity_type)
    return EntityUpdate(
        event.entity_type,
        event.entity_id,
        applied.zoho_id,
        plan.payload_hash,
        position(event),
        applied.zoho_status,
        spec.natural_key_of(event.row),
        source_row=_whole(event),
        currency_code=spec.created_currency(plan),
        lease=applied.lease,
    )


def unchanged(event: ChangeEvent, state: EntityState | None, plan: Plan) -> EntityUpdate | None:
    """The map row when Zoho already matches; None when the row already says all of it (a replay)."""
    if _already_mapped(state, event, plan):
        return None
    return EntityUpdate(
        event.entity_type,
        event.entity_id,
        state.zoho_id if state else None,
        plan.payload_hash or (state.payload_hash if state else None),
        position(event),
        None,
        spec_of(event.entity_type).natural_key_of(event.row),
        source_row=_whole(event),
    )


def rejection(event: ChangeEvent, state: EntityState | None, digest: str | None) -> EntityUpdate | None:
    """The map row that remembers a refused state (None when the state is not whole)."""
    if digest is None or event.row is None:
        return None
    return EntityUpdate(
        event.entity_type,
        event.entity_id,
        None,
        state.payload_hash if state else None,
        position(event),
        None,
        spec_of(event.entity_type).natural_key_of(event.row),
        source_row=remembered(event.entity_type, event.row),
        rejected_digest=digest,
        zoho_ahead=state.ahead if state else None,
    )


def zoho_ahead(event: ChangeEvent, state: EntityState | None, plan: Plan, found: ZohoAhead) -> EntityUpdate:
    """The map row once Zoho is found ahead: it takes Zoho's status, and remembers that Zoho set it.

    The payload hash moves only when Zoho accepted the payload (`content_sent`); otherwise it stays what
    Zoho last acknowledged, so the content is sent once the source agrees with Zoho again (if Zoho
    still lets it be edited)."""
    payload_hash = plan.payload_hash if found.content_sent else (state.payload_hash if state else None)
    return EntityUpdate(
        event.entity_type,
        event.entity_id,
        found.zoho_id,
        payload_hash,
        position(event),
        found.status,
        spec_of(event.entity_type).natural_key_of(event.row),
        source_row=_whole(event),
        zoho_ahead=found.status,
    )


def still_ahead(event: ChangeEvent, state: EntityState) -> EntityUpdate:
    """The map row of a change not sent because Zoho is still ahead: only the source position and image
    move; Zoho's status and what Zoho last acknowledged stay."""
    return EntityUpdate(
        event.entity_type,
        event.entity_id,
        state.zoho_id,
        state.payload_hash,
        position(event),
        state.status,
        spec_of(event.entity_type).natural_key_of(event.row),
        source_row=_whole(event),
        zoho_ahead=state.ahead,
    )


def refused_before(state: EntityState | None, digest: str | None, *, explicit: bool) -> bool:
    """True when Zoho refused this same whole state before and nobody asked to send it again (a resync or
    a DLQ reprocess is `explicit`): sending it again would be refused again."""
    return digest is not None and state is not None and state.rejected == digest and not explicit


def missing_write_back(event: ChangeEvent, zoho_id: str | None) -> WriteBack | None:
    """The write-back (synced, the id) an entity Zoho already matches still needs; None when its row
    already says it.

    Checked against the event's own row, so the echo of a write-back (which already says
    'synced' and the id) writes nothing and therefore streams nothing back.
    """
    if event.row is None or zoho_id is None:
        return None
    id_column = spec_of(event.entity_type).write_back_id_column
    if "zoho_sync_status" not in event.row:  # an image without the write-back columns
        return None
    if event.row.get("zoho_sync_status") == "synced" and event.row.get(id_column) == zoho_id:
        return None
    return WriteBack(event.entity_type, event.entity_id, zoho_id, "synced", called=False)


def as_listed(
    listing: Listing | None,
    mapping: MappingConfig,
    entity_type: EntityType,
    row: Mapping[str, Any] | None,
    state: EntityState | None,
) -> EntityState | None:
    """A resync's view of the entity: what Zoho's listing shows replaces what the entity map assumes.

    Without a listing nothing stored is trusted (payload hash and status cleared: every entity is
    written). With one, a record Zoho no longer has is created again, and the stored payload hash is
    kept only when every listed field matches, so an entity already in step makes no call."""
    if listing is None or not listing.covers(entity_type):
        return None if state is None else replace(state, payload_hash=None, status=None)
    key = spec_of(entity_type).natural_key_of(row)
    record = listing.find(entity_type, state.zoho_id if state else None, key)
    if record is None:  # not in Zoho: created again (idempotently: intent, natural-key lookup)
        return None if state is None else replace(state, zoho_id=None, payload_hash=None, status=None)
    zoho_id = listing.zoho_id_of(entity_type, record)
    differs = row is None or listing.differs(entity_type, row, record, mapping)
    base = state or EntityState(zoho_id=None, payload_hash=None, last_lsn=None, status=None)
    payload_hash = None if differs or base.zoho_id != zoho_id else base.payload_hash
    status = record.get("status")
    # Zoho ahead stands while Zoho still shows that status; undone in Zoho (a payment deleted), it ends.
    ahead = base.ahead if base.ahead is not None and base.ahead == status else None
    return replace(base, zoho_id=zoho_id, payload_hash=payload_hash, status=status, ahead=ahead)


def _already_mapped(state: EntityState | None, event: ChangeEvent, plan: Plan) -> bool:
    """True when the map row already holds what an `unchanged` outcome would write: the same change
    (one LSN is one change of one row, so the same image) with the same payload hash and no refusal
    to clear. Replays of synced topics then write only their sync-log rows."""
    return (
        state is not None
        and event.lsn is not None
        and state.last_lsn == event.lsn
        and plan.payload_hash is not None
        and state.payload_hash == plan.payload_hash
        and state.rejected is None
        and state.ahead is None
        and not state.pending_create
    )


def _whole(event: ChangeEvent) -> dict[str, Any] | None:
    """The image the map remembers: only a whole one (a partial image would fill nothing later)."""
    return None if event.row is None or is_partial(event) else remembered(event.entity_type, event.row)
