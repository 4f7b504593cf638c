"""A replay's newest records, checked in batches: those Zoho already holds are recorded `unchanged` in bulk.

Replaying topics that are already synced leaves nothing to send: each entity's newest record plans to
the payload hash the entity map holds. One query reads the map rows of a batch of keys (and of the
parents their plans need); each record is planned by its spec as the policy plans it, and one whose
plan is NOOP ends as the policy ends it (`EventPolicy.unchanged`), without a worker. Every other record
(changed, not in Zoho, stale, partial, refused before, needing its parent synced, not mappable) goes to
the pipeline as it is. A write-back such an outcome queues is kept only for source rows that do not
already say it (one query per entity and batch), so a replay writes nothing back that is already there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

import structlog

from consumer.entities.registry import spec_of
from consumer.entities.spec import ParentRecord, PlanInput
from consumer.pipeline import entity_map
from consumer.pipeline.events import ChangeEvent, EntityType, snapshot_read
from consumer.pipeline.parents import parent_record
from consumer.pipeline.plan import Action, EntityState, MappingConfig, Plan
from consumer.pipeline.policy import EventPolicy, older_than_applied
from consumer.pipeline.recording import Outcome
from consumer.pipeline.row_images import is_partial
from consumer.pipeline.scheduler import Key, WorkItem

log = structlog.get_logger("zoho_cdc.engine")

#: Keys read in one query; a poll of up to 500 records brings fewer newest records than this.
MAX_BATCH: Final = 1000


class SourceRows(Protocol):
    async def rows(self, entity_type: EntityType, entity_ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...


class BulkReads(Protocol):
    """The batch reads the check makes (`SyncStore`)."""

    source: SourceRows

    async def entity_states(self, keys: Sequence[Key]) -> dict[Key, EntityState]: ...


class _NeedsReads(Exception):
    """A spec's plan needs source reads of its own: the record goes through the pipeline."""


class _NoLookups:
    async def first_child_value(self, *args: Any) -> str | None:
        raise _NeedsReads


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
    ) -> None:
        self._reads = reads
        self._policy = policy
        self._mapping: MappingConfig = policy.options.mapping
        self._settle, self._work, self._fail = settle, work, fail
        self._pending: list[tuple[Key, WorkItem]] = []
        self.task: asyncio.Task[None] | None = None

    def add(self, key: Key, item: WorkItem) -> None:
        """An admitted record holding its entity's newest change, made whole from the images before it."""
        self._pending.append((key, item))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name="sync:unchanged")

    async def _run(self) -> None:
        try:
            while self._pending:
                await asyncio.sleep(0)  # gather what this tick's intake brings
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                await self._check(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must stop the process loudly, never silently drop a record
            log.exception("checking replayed records for changes failed")
            self._fail(exc)

    async def _check(self, batch: list[tuple[Key, WorkItem]]) -> None:
        states = await self._policy.recorder.read(self._reads.entity_states, _keys_to_read(batch))
        unchanged: list[tuple[WorkItem, ChangeEvent, EntityState, Plan]] = []
        for key, item in batch:
            event = item.event
            assert event is not None
            state = states.get(key)
            plan = await self._noop_plan(event, state, states)
            if plan is None or state is None:
                self._work(key, item)
            else:
                unchanged.append((item, event, state, plan))
        outcomes = [
            self._policy.unchanged(item, event, state, plan) for item, event, state, plan in unchanged
        ]
        await self._drop_written_back(outcomes)
        for (item, *_), outcome in zip(unchanged, outcomes, strict=True):
            self._settle(item, outcome)

    async def _noop_plan(
        self, event: ChangeEvent, state: EntityState | None, states: Mapping[Key, EntityState]
    ) -> Plan | None:
        """The spec's plan when it is NOOP and was reached as the policy would reach it; None otherwise."""
        if (
            state is None
            or state.rejected is not None
            or state.pending_create
            or older_than_applied(event, state)
        ):
            return None  # not in Zoho, refused before, maybe created, or stale: the policy's own steps
        if event.row is None or is_partial(event):
            return None  # a delete, or an image the policy fills from reads first
        spec = spec_of(event.entity_type)
        parent: ParentRecord | None = None
        parent_id = spec.parent_id(event.row)
        if spec.parent is not None and parent_id is not None:
            parent = parent_record(states.get((spec.parent.entity.value, parent_id)))
            if parent is None:
                return None  # the parent is synced first, under its own key: the pipeline's work
        try:
            facts = await spec.plan_facts(_NoLookups(), event, state)
            plan = spec.plan(PlanInput(event, state, self._mapping, parent, facts))
        except Exception:  # noqa: BLE001 - not mappable (or needs reads): the policy decides and records it
            return None
        return plan if plan.action is Action.NOOP else None

    async def _drop_written_back(self, outcomes: list[Outcome]) -> None:
        """Keep an outcome's write-back only when the current source row does not already say it."""
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
                if current is None or entity_map.settled_write_back(current, write_back.zoho_id) is None:
                    outcome.write_back = None  # gone from the source, or it already says synced and the id


def _keys_to_read(batch: list[tuple[Key, WorkItem]]) -> list[Key]:
    """The batch's keys and the keys of the parents their rows name."""
    keys = dict.fromkeys(key for key, _ in batch)
    for _, item in batch:
        event = item.event
        assert event is not None
        spec = spec_of(event.entity_type)
        parent_id = spec.parent_id(event.row)
        if spec.parent is not None and parent_id is not None:
            keys.setdefault((spec.parent.entity.value, parent_id))
    return list(keys)
