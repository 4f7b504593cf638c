"""A replay's newest records, checked in batches: those Zoho already holds are recorded `unchanged` in bulk.

One query reads the map rows of a batch of keys and of their parents. A record whose map row holds its
replay memo ends `unchanged` undecoded; else only one the rule (`decision.nothing_to_send`), asked with
the record and rows alone, finds nothing to send for ends here. Every other goes to the pipeline as is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, NamedTuple, Protocol

import structlog

from consumer.entities.registry import spec_of
from consumer.entities.spec import ParentRecord
from consumer.model.events import ChangeEvent, ChangeSummary, DecodeError, EntityType, snapshot_read
from consumer.model.outcomes import SyncOutcome
from consumer.model.plan import EntityState, MappingConfig, Plan
from consumer.pipeline.decision import entity_map
from consumer.pipeline.decision.decisions import planned_from
from consumer.pipeline.decision.nothing_to_send import row_leaves_nothing_to_look_up, unchanged_without_reads
from consumer.pipeline.decision.parents import parent_record
from consumer.pipeline.decision.policy import EventPolicy
from consumer.pipeline.durability.gathered import Gathering
from consumer.pipeline.durability.recording import Outcome
from consumer.pipeline.durability.rows import OutcomeRow
from consumer.pipeline.intake.scheduler import InboundRecord, Key, WorkItem, key_of
from consumer.pipeline.replay.memo import memo_digest

log = structlog.get_logger(__name__)

#: Keys read in one query; a poll of up to 500 records brings fewer newest records than this.
MAX_BATCH: Final = 1000


class SourceRows(Protocol):
    async def rows(self, entity_type: EntityType, entity_ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...


class BulkReads(Protocol):
    """The batch reads the check makes (`SyncStore`)."""

    source: SourceRows

    async def entity_states(self, keys: Sequence[Key]) -> dict[Key, EntityState]: ...


class Undecoded(NamedTuple):
    """What the intake read of a record it did not decode: its summary and its parent's key."""

    summary: ChangeSummary
    parent: Key | None


class UnchangedInBulk:
    """Takes a replay's newest records (`add`), settles the unchanged ones, hands on the rest."""

    def __init__(
        self,
        reads: BulkReads,
        policy: EventPolicy,
        *,
        settle: Callable[[WorkItem, Outcome], None],
        work: Callable[[Key, WorkItem], None],
        fail: Callable[[BaseException], None],
        decode: Callable[[InboundRecord], tuple[ChangeEvent | None, DecodeError | None]],
    ) -> None:
        self._reads = reads
        self._policy = policy
        self._mapping: MappingConfig = policy.options.mapping
        self._settle, self._work, self._fail, self._decode = settle, work, fail, decode
        self._pending: Gathering[tuple[Key, WorkItem, Undecoded | None]] = Gathering(
            self._check, most=MAX_BATCH, failed=self._failed, name="sync:unchanged"
        )

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The check while records wait for it, for shutdown."""
        return self._pending.task

    def add(self, key: Key, item: WorkItem) -> None:
        """An admitted record holding its entity's newest change, made whole from the images before it."""
        self._pending.add((key, item, None))

    def add_undecoded(self, key: Key, item: WorkItem, summary: ChangeSummary, parent: Key | None) -> None:
        """An admitted record, not decoded, holding its entity's newest change as a whole image."""
        self._pending.add((key, item, Undecoded(summary, parent)))

    def _failed(self, exc: Exception) -> None:  # a bug must stop the process loudly, never drop a record
        log.exception("checking replayed records for changes failed")
        self._fail(exc)

    async def _check(self, batch: list[tuple[Key, WorkItem, Undecoded | None]]) -> None:
        states = await self._policy.recorder.read(self._reads.entity_states, _keys_to_read(batch))
        fingerprint = self._policy.no_call.memo_fingerprint
        unchanged: list[tuple[WorkItem, ChangeEvent, EntityState, Plan, ParentRecord | None]] = []
        for key, item, undecoded in batch:
            state = states.get(key)
            if undecoded is not None:
                if _memo_matches(fingerprint, item, undecoded, state, states):
                    assert state is not None
                    self._settle(
                        item, self._policy.no_call.already_applied(self._memo_row(item, undecoded, state))
                    )
                    continue
                decoded = self._decoded(item)
                if decoded is None:
                    continue
                item = decoded
            event = item.event
            assert event is not None
            planned = await self._noop_plan(event, state, states)
            if planned is None or state is None:
                self._work(key, item)
            else:
                unchanged.append((item, event, state, *planned))
        outcomes = [  # each marked as decided from the row read, as the live policy's (`planned_from`)
            planned_from(await self._policy.no_call.unchanged(item, event, state, plan, parent), state)
            for item, event, state, plan, parent in unchanged
        ]
        await self._drop_written_back(outcomes)
        for (item, *_), outcome in zip(unchanged, outcomes, strict=True):
            self._settle(item, outcome)

    def _memo_row(self, item: WorkItem, undecoded: Undecoded, state: EntityState) -> OutcomeRow:
        """The sync-log row `NoCallOutcomes.unchanged` writes for the record, from its summary."""
        record, summary = item.record, undecoded.summary
        return self._policy.recorder.position_row(
            record.topic,
            record.partition,
            record.offset,
            summary.entity_type,
            summary.entity_id,
            SyncOutcome.UNCHANGED,
            operation="none",
            zoho_id=state.zoho_id,
            source_lsn=summary.lsn,
            source_ts_ms=summary.source_ts_ms,
        )

    def _decoded(self, item: WorkItem) -> WorkItem | None:
        """Decode a record whose memo did not match; one that cannot be decoded goes to the pipeline,
        which dead-letters it with its reason (None: nothing more to check here)."""
        event, error = self._decode(item.record)
        decoded = WorkItem(item.record, event, error)
        if event is None:
            self._work(key_of(decoded), decoded)
            return None
        return decoded

    async def _noop_plan(
        self, event: ChangeEvent, state: EntityState | None, states: Mapping[Key, EntityState]
    ) -> tuple[Plan, ParentRecord | None] | None:
        """The NOOP plan when the rule finds nothing to send from the record and the map rows alone, with
        the parent it was planned with; None when the policy's own steps must decide."""
        spec = spec_of(event.entity_type)
        parent_id = spec.parent_id(event.row) if event.row is not None else None
        parent = None
        if spec.parent is not None and parent_id is not None:
            parent = parent_record(states.get((spec.parent.entity.value, parent_id)))
        plan = await unchanged_without_reads(event, state, parent, self._mapping)
        return None if plan is None else (plan, parent)

    async def _drop_written_back(self, outcomes: list[Outcome]) -> None:
        """Keep an outcome's write-back only when the current source row does not already say it (one query
        per entity and batch)."""
        by_entity: dict[EntityType, list[Outcome]] = {}
        for outcome in outcomes:
            if outcome.write_back is not None:
                by_entity.setdefault(outcome.write_back.entity_type, []).append(outcome)
        for entity, queued in by_entity.items():
            ids = [o.write_back.entity_id for o in queued if o.write_back]
            rows = await self._policy.recorder.read(self._reads.source.rows, entity, ids)
            for outcome in queued:
                write_back = outcome.write_back
                assert write_back is not None
                row = rows.get(write_back.entity_id)
                current = None if row is None else snapshot_read(entity, write_back.entity_id, row)
                if current is None or entity_map.missing_write_back(current, write_back.zoho_id) is None:
                    outcome.write_back = None  # gone from the source, or it already says synced and the id


def _memo_matches(
    fingerprint: str | None,
    item: WorkItem,
    undecoded: Undecoded,
    state: EntityState | None,
    states: Mapping[Key, EntityState],
) -> bool:
    """True when the map row's replay memo is this record's, under this mapping and parent."""
    if fingerprint is None or state is None or state.replay_memo is None or item.record.value is None:
        return False
    if not row_leaves_nothing_to_look_up(state):
        return False  # written since by no upsert of ours (an intent), or a refusal: the full path decides
    parent = None
    if undecoded.parent is not None:
        parent = parent_record(states.get(undecoded.parent))
        if parent is None:
            return False
    return memo_digest(fingerprint, item.record.value, parent, state) == state.replay_memo


def _keys_to_read(batch: list[tuple[Key, WorkItem, Undecoded | None]]) -> list[Key]:
    """The batch's keys and the keys of the parents their rows name."""
    keys = dict.fromkeys(key for key, _, _ in batch)
    for _, item, undecoded in batch:
        if undecoded is not None:
            if undecoded.parent is not None:
                keys.setdefault(undecoded.parent)
            continue
        event = item.event
        assert event is not None
        spec = spec_of(event.entity_type)
        parent_id = spec.parent_id(event.row)
        if spec.parent is not None and parent_id is not None:
            keys.setdefault((spec.parent.entity.value, parent_id))
    return list(keys)
