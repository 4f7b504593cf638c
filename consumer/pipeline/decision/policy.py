"""The event policy: what one key's batch of change events becomes, as one `Outcome` per batch.

The newest change wins (in source order) and is made whole from older images (`coalesce`); then the rule
(`nothing_to_send.verdict`) is asked, and the reads it asks for are made, until it answers: stale,
refused before, nothing to send, or a plan to carry out. Only the recording step writes.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import structlog

from connectors import clock
from connectors.zoho.send_guard import SendRevoked
from consumer.entities.registry import spec_of
from consumer.entities.spec import EntitySpec, PlanInput
from consumer.model.call_errors import CallError, CredentialsRejected, SyncedMeanwhile
from consumer.model.events import ChangeEvent, EntityType, Op
from consumer.model.outcomes import SyncOutcome
from consumer.model.plan import Action, EntityState, MappingError, Plan
from consumer.pipeline.decision import entity_map
from consumer.pipeline.decision.calls import PlannedCall
from consumer.pipeline.decision.decisions import (
    Decision,
    PolicyOptions,
    Refused,
    credentials_refused,
    planned_from,
    remembered_refusal,
)
from consumer.pipeline.decision.entity_map import Listing
from consumer.pipeline.decision.no_call import NoCallOutcomes
from consumer.pipeline.decision.nothing_to_send import Ground, Next, Verdict, at_its_position, verdict
from consumer.pipeline.decision.parents import REFUSED_BEFORE, ParentRefused, ParentResolver
from consumer.pipeline.decision.row_images import coalesce, fill_unavailable, is_partial
from consumer.pipeline.durability.recording import Outcome, OutcomeRecorder
from consumer.pipeline.durability.rows import OutcomeRow
from consumer.pipeline.effects.apply import Applied, Applier
from consumer.pipeline.effects.dead_lettering import DeadLetterDesk, Refusal
from consumer.pipeline.effects.follow_ups import FollowUps, is_follow_up
from consumer.pipeline.intake.scheduler import FatalSyncError, Key, KeyScheduler, WorkItem

__all__ = ["Decision", "EventPolicy", "PolicyOptions", "Refused", "in_source_order"]

log = structlog.get_logger(__name__)


class EventPolicy:
    """Decides and records the outcome of each key's batch; shared by every worker.

    Undecodable records and tombstones get their outcome at once. Each decision is an `Outcome` (recorded
    as is) or a `Refused` (dead-lettered)."""

    def __init__(
        self,
        options: PolicyOptions,
        recorder: OutcomeRecorder,
        desk: DeadLetterDesk,
        applier: Applier,
        scheduler: KeyScheduler,
        listing: Listing | None = None,
    ) -> None:
        self.options = options
        self.recorder = recorder
        self.desk = desk
        self.locks = scheduler
        self._listing = listing
        self.no_call = NoCallOutcomes(options, recorder)
        self._calls = PlannedCall(recorder, applier, self.no_call)
        self.parents = ParentResolver(self, listing)
        self.follow_ups: FollowUps | None = None  # set by the engine: children waiting for a parent

    async def handle(self, key: Key, batch: list[WorkItem]) -> None:
        """The scheduler's handler: one key's batch, every record ending with exactly one durable outcome."""
        await self._safely(batch)
        self.parents.mark_verified(key)

    async def _safely(self, batch: list[WorkItem]) -> None:
        """An unexpected error dead-letters the batch's records instead of stopping the sync.

        Record content must never stop the process (the next records of the partition would wait
        forever); the error is logged with its traceback and each record keeps exactly one outcome."""
        try:
            await self._batch(batch)
        except (FatalSyncError, asyncio.CancelledError, SendRevoked):
            raise
        except Exception as exc:
            log.exception("unexpected error processing a record; dead-lettering it", key=_key_of(batch[0]))
            reason = f"unexpected error while processing this record: {type(exc).__name__}: {exc}"
            for item in batch:
                await self.desk.dead_letter(item, Refusal(reason, "internal", type(exc).__name__))

    async def _batch(self, batch: list[WorkItem]) -> None:
        for item in batch:
            if item.error is not None:
                await self.desk.dead_letter(item, Refusal(item.error.reason, "decode", "DecodeError"))
        decoded = [item for item in batch if item.event is not None]
        # Tombstones only exist for log compaction: they get an outcome but never a call.
        tombstones = [item for item in decoded if _event(item).op is Op.TOMBSTONE]
        changes = [item for item in decoded if _event(item).op is not Op.TOMBSTONE]
        rows = [
            self.recorder.row(item, SyncOutcome.SKIPPED, operation="none", error="tombstone")
            for item in tombstones
        ]
        self.recorder.metrics.outcome(SyncOutcome.SKIPPED, len(tombstones))
        if not changes:
            if rows:
                await self.recorder.record(Outcome(rows))
            return
        changes = in_source_order(changes)
        winner = changes[-1]
        rows += [
            self.recorder.row(
                item, SyncOutcome.SUPERSEDED, error=f"newer event at offset {winner.record.offset}"
            )
            for item in changes[:-1]
        ]
        self.recorder.metrics.outcome(SyncOutcome.SUPERSEDED, len(changes) - 1)
        # The newest state wins, made whole from the older images (a partial one never wins as it is).
        merged = coalesce([_event(item) for item in changes])
        await self.record_decision(winner, await self.decide(winner, merged), prior=rows)

    async def record_decision(self, item: WorkItem, decision: Decision, *, prior: list[OutcomeRow]) -> None:
        """The recording step: an outcome is written, a refusal is dead-lettered (and written)."""
        if isinstance(decision, Refused):
            await self.desk.dead_letter(
                item, decision.refusal, prior=prior, write_back=decision.write_back, entity=decision.entity
            )
        else:
            await self.recorder.record(decision.after(prior))
            entity = decision.entity
            synced = any(row.outcome == SyncOutcome.SYNCED for row in decision.rows)
            if self.follow_ups is not None and synced and entity is not None and entity.zoho_id:
                await self.follow_ups.parent_synced(entity.entity_type, entity.entity_id)

    # --- the steps ------------------------------------------------------------------------
    async def decide(self, item: WorkItem, event: ChangeEvent, *, again: int = 0) -> Decision:
        """Ask the rule, make the reads it asks for, and carry out its answer. A create that finds another
        process synced the entity since it was planned sends nothing (`SyncedMeanwhile`): the change is
        decided once more against the map row that process wrote (stale when that state is newer); so is a
        write that finds the map row moved on (`write_lease`). `again`: how often it was decided again.
        The map write it ends in names the map row's version it was decided from (`planned_from`)."""
        ground = await self._ground(item, event)
        try:
            return planned_from(await self._decided(item, ground, again), ground.state)
        except SyncedMeanwhile:
            return await self.decide(item, event, again=again + 1)

    async def _decided(self, item: WorkItem, ground: Ground, again: int) -> Decision:
        started = clock.monotonic()
        found = verdict(ground)
        if found.next is Next.FILL_IMAGE:
            ground = replace(ground, event=await self._made_whole(ground.event, ground.state), filled=True)
            found = verdict(ground)
        if found.next is Next.STALE:
            return self.no_call.stale(item, ground.event, ground.state)
        if found.next is Next.REFUSED_BEFORE:
            # An echo (or replay) of a state Zoho refused: sending it again would be refused again.
            self.recorder.metrics.outcome(SyncOutcome.SKIPPED)
            row = self.recorder.row(item, SyncOutcome.SKIPPED, operation="none", error=REFUSED_BEFORE)
            return Outcome([row], remembered_refusal(ground.event, ground.state))
        try:
            ground, found = await self._planned(ground, found)
        except MappingError as exc:
            refusal = Refusal(f"cannot map row: {exc.reason}", "mapping", "MappingError")
            return Refused(
                refusal, ground.event.op is not Op.DELETE, remembered_refusal(ground.event, ground.state)
            )
        except CredentialsRejected as exc:
            raise credentials_refused(exc) from exc
        except (CallError, ParentRefused) as exc:
            # Only reached for an entity whose parent had to be synced first and Zoho refused it.
            return await self._parent_refused(ground, exc)
        return await self._carry_out(item, ground, found, started, again=again)

    async def _ground(self, item: WorkItem, event: ChangeEvent) -> Ground:
        """What the rule is first asked with: the change and its map row (a resync's: as Zoho lists it)."""
        state = await self.recorder.read(self.recorder.store.entity_state, event.entity_type, event.entity_id)
        if self.options.resync:
            state = entity_map.as_listed(
                self._listing, self.options.mapping, event.entity_type, event.row, state
            )
        explicit = self._explicit(item)
        event = at_its_position(event, state, explicit=explicit)
        return Ground(
            event, state, self.options.mapping, explicit=explicit, ignore_stale=self.options.ignore_stale
        )

    async def _made_whole(self, event: ChangeEvent, state: EntityState | None) -> ChangeEvent:
        """Fill a partial image from the last full image we remember, else from the current source row."""
        event = fill_unavailable(event, state.source_row if state else None)
        if is_partial(event):
            current = await self.recorder.read(
                self.recorder.store.source_row, event.entity_type, event.entity_id
            )
            event = fill_unavailable(event, current)
        return event

    def _explicit(self, item: WorkItem) -> bool:
        """A resync or a dead letter re-driven on purpose may send a state Zoho refused before."""
        return self.options.resync or item.record.topic == self.options.dlq_topic or is_follow_up(item.record)

    async def _planned(self, ground: Ground, found: Verdict) -> tuple[Ground, Verdict]:
        """The reads the rule asks for before it can plan: the parent's Zoho record (synced first if need
        be), then the spec's source reads; returns the ground they made and the rule's answer."""
        while found.plan is None:
            spec = spec_of(ground.event.entity_type)
            if found.next is Next.FIND_PARENT:
                parent = await self.parents.resolve(spec, ground.event, explicit=ground.explicit)
                ground = replace(ground, parent_known=True, parent=parent)
            else:
                assert found.next is Next.READ_FACTS, found.next
                facts = await spec.plan_facts(_RetryingLookups(self.recorder), ground.event, ground.state)
                ground = replace(ground, facts=facts)
            found = verdict(ground)
        return ground, found

    async def _parent_refused(self, ground: Ground, exc: Exception) -> Refused:
        """The parent could not be synced: the child is dead-lettered, and sent again once it is."""
        event = ground.event
        spec = spec_of(event.entity_type)
        keep = event.op is not Op.DELETE  # write 'failed' back to a row that still exists
        parent = spec.parent.entity if spec.parent else "parent"
        parent_id = spec.parent_id(event.row)
        if self.follow_ups is not None and spec.parent is not None and parent_id is not None and keep:
            # Sent again, without an operator, once the parent is synced.
            await self.follow_ups.waiting(event.entity_type, event.entity_id, spec.parent.entity, parent_id)
            await self._synced_before_waiting(spec.parent.entity, parent_id)
        refusal = Refusal.of_error(f"its {parent} could not be synced to Zoho: {exc}", exc)
        return Refused(refusal, keep, remembered_refusal(event, ground.state))

    async def _synced_before_waiting(self, parent: EntityType, parent_id: str) -> None:
        """Hand the waiting children over now if the parent got a Zoho record since it was found without
        one: its own sync, in another process (key locks are per process), may have taken the waiting
        children just before this child waited, and would never look again."""
        if self.options.resync or self.follow_ups is None:
            return  # a resync trusts no stored id it has not verified: the parent's own sync hands over
        state = await self.recorder.read(self.recorder.store.entity_state, parent, parent_id)
        if state is not None and state.zoho_id:
            await self.follow_ups.parent_synced(parent, parent_id)

    async def _carry_out(
        self, item: WorkItem, ground: Ground, found: Verdict, started: float, *, again: int
    ) -> Decision:
        """The rule's answer once planned: nothing to send, a skip, Zoho ahead, or the call."""
        plan, event, state = found.plan, ground.event, ground.state
        assert plan is not None
        if plan.needs_parent is not None and plan.makes_call and plan.payload is None:
            return await self._parent_unavailable(item, spec_of(event.entity_type), event)
        if found.next is Next.NOTHING_TO_SEND:
            return await self.no_call.unchanged(item, event, state, plan, ground.parent)
        if plan.action is Action.SKIP:
            self.recorder.metrics.outcome(SyncOutcome.SKIPPED)
            return Outcome(
                [self.recorder.row(item, SyncOutcome.SKIPPED, operation="none", error=plan.reason)]
            )
        if plan.action is Action.ZOHO_AHEAD:
            assert state is not None
            update = entity_map.still_ahead(event, state)
            return self.no_call.zoho_ahead(item, event, plan.reason, state.zoho_id, update)
        return await self._calls.make(item, ground, plan, started, decided_again=again)

    async def _parent_unavailable(self, item: WorkItem, spec: EntitySpec, event: ChangeEvent) -> Decision:
        assert spec.parent is not None
        parent, parent_id = spec.parent.entity, spec.parent_id(event.row)
        row = None
        if parent_id:
            row = await self.recorder.read(self.recorder.store.source_row, parent, parent_id)
        why = spec_of(parent).never_synced(row) if row is not None else None
        if why is not None:
            self.recorder.metrics.outcome(SyncOutcome.SKIPPED)
            return Outcome([self.recorder.row(item, SyncOutcome.SKIPPED, error=why)])
        reason = f"{parent} {parent_id} of {event.entity_type} {event.entity_id} does not exist in the source"
        return Refused(Refusal(reason, "source", f"Missing{parent.value.title()}"))

    # --- what resolving a parent uses (`parents.PolicySteps`) ------------------------------
    async def plan(
        self, spec: EntitySpec, event: ChangeEvent, state: EntityState | None, *, explicit: bool
    ) -> Plan:
        """The spec's plan for an event, with its parent resolved (and synced first if need be)."""
        parent = await self.parents.resolve(spec, event, explicit=explicit) if spec.parent else None
        facts = await spec.plan_facts(_RetryingLookups(self.recorder), event, state)
        return spec.plan(PlanInput(event, state, self.options.mapping, parent, facts))

    async def apply(self, event: ChangeEvent, plan: Plan, state: EntityState | None) -> Applied:
        """One planned call, retried while the database is briefly gone (`calls.PlannedCall.apply`)."""
        return await self._calls.apply(event, plan, state)


class _RetryingLookups:
    """The source reads a spec's `plan_facts` makes, retried while the database is unavailable."""

    def __init__(self, recorder: OutcomeRecorder) -> None:
        self._recorder = recorder

    async def first_child_value(
        self, child: EntityType, parent_column: str, value_column: str, parent_id: str
    ) -> str | None:
        store = self._recorder.store
        value: str | None = await self._recorder.read(
            store.first_child_value, child, parent_column, value_column, parent_id
        )
        return value


def in_source_order(changes: list[WorkItem]) -> list[WorkItem]:
    """A key's queued changes ordered by source position (LSN), so the newest change wins even when the
    entity's events came through two partitions (a partition-count change, a primary-key update).
    Arrival order breaks ties and stands when a change has no position (`events.order_position`: a snapshot
    read, or no LSN); `ReplayIndex` orders a backfill's records by the same rule."""
    if any(item.event is None or item.event.position is None for item in changes):
        return changes  # a snapshot read's LSN is where the snapshot began, not when its row changed
    if len({item.partition for item in changes}) == 1:
        return changes  # one partition is already in Debezium's (commit) order
    return sorted(changes, key=lambda item: _event(item).version)


def _event(item: WorkItem) -> ChangeEvent:
    assert item.event is not None
    return item.event


def _key_of(item: WorkItem) -> str:
    event = item.event
    return f"{event.entity_type.value}:{event.entity_id}" if event else f"offset {item.record.offset}"
