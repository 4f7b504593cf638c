"""The event policy: what one key's batch of change events becomes, as one `Outcome` per batch.

Steps, in order: undecodable records and tombstones get their outcome at once; the newest change wins
(in source order) and is made whole from older images (`coalesce`); a stale change (older than what
was applied) is recorded `stale`; a state Zoho refused before is `skipped`; the entity's spec plans the
call (its parent resolved first); the call is applied; the outcome is recorded. Each step returns an
`Outcome` (recorded as is) or a `Refused` (dead-lettered); only the recording step writes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import structlog

from connectors.zoho.errors import AuthError, ZohoError
from connectors.zoho.send_guard import SendRevoked
from consumer.entities.registry import spec_of
from consumer.entities.spec import EntitySpec, ParentRecord, PlanInput
from consumer.jobs.health import MOVED_BACK_MIN_STALE
from consumer.model.events import ChangeEvent, EntityType, Op
from consumer.model.plan import Action, EntityState, MappingConfig, MappingError, Plan, ZohoAhead
from consumer.pipeline.decision import entity_map
from consumer.pipeline.decision.entity_map import Listing, older_than_applied
from consumer.pipeline.decision.parents import REFUSED_BEFORE, ParentRefused, ParentResolver
from consumer.pipeline.decision.row_images import coalesce, fill_unavailable, is_partial, state_digest
from consumer.pipeline.durability.recording import Outcome, OutcomeRecorder
from consumer.pipeline.durability.store import EntityUpdate, OutcomeRow
from consumer.pipeline.effects.apply import Applied, Applier
from consumer.pipeline.effects.dead_lettering import DeadLetterDesk, Refusal
from consumer.pipeline.effects.follow_ups import FollowUps, is_follow_up
from consumer.pipeline.effects.write_back import WriteBack
from consumer.pipeline.intake.scheduler import FatalSyncError, Key, KeyScheduler, WorkItem
from consumer.pipeline.replay.memo import mapping_fingerprint, memo_for, row_after

log = structlog.get_logger("zoho_cdc.engine")


@dataclass(frozen=True, slots=True)
class Refused:
    """A decision to dead-letter the record; `entity` remembers the refused state."""

    refusal: Refusal
    write_back: bool = False
    entity: EntityUpdate | None = None


Decision = Outcome | Refused


@dataclass(frozen=True)
class PolicyOptions:
    """What the policy needs of the run's settings."""

    mapping: MappingConfig
    resync: bool  # ignore stored payload hashes and check every entity against Zoho
    ignore_stale: bool
    dlq_topic: str
    topic_prefix: str
    payload_settings: tuple[tuple[str, object], ...] = ()  # part of the replay memo's fingerprint


class EventPolicy:
    """Decides and records the outcome of each key's batch; shared by every worker."""

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
        self._applier = applier
        self._listing = listing
        self.parents = ParentResolver(self, listing)
        self.follow_ups: FollowUps | None = None  # set by the engine: children waiting for a parent
        self._stale_streak = 0  # stale outcomes in a row: a long streak means the source moved backwards
        self._fingerprint: str | None = None
        self._fingerprint_known = False

    @property
    def memo_fingerprint(self) -> str | None:
        """The mapping's fingerprint for replay memos (`replay_memo.mapping_fingerprint`): read once, at
        first use, when every spec is registered; None turns memos off."""
        if not self._fingerprint_known:
            self._fingerprint = mapping_fingerprint(self.options.mapping, self.options.payload_settings)
            self._fingerprint_known = True
        return self._fingerprint

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
            self.recorder.row(item, "skipped", operation="none", error="tombstone") for item in tombstones
        ]
        self.recorder.metrics.outcome("skipped", len(tombstones))
        if not changes:
            if rows:
                await self.recorder.record(Outcome(rows))
            return
        changes = in_source_order(changes)
        winner = changes[-1]
        rows += [
            self.recorder.row(item, "superseded", error=f"newer event at offset {winner.record.offset}")
            for item in changes[:-1]
        ]
        self.recorder.metrics.outcome("superseded", len(changes) - 1)
        # The newest state wins, made whole from the older images (a partial one never wins as it is).
        merged = coalesce([_event(item) for item in changes])
        await self.settle(winner, await self.decide(winner, merged), prior=rows)

    async def settle(self, item: WorkItem, decision: Decision, *, prior: list[OutcomeRow]) -> None:
        """The recording step: an outcome is written, a refusal is dead-lettered (and written)."""
        if isinstance(decision, Refused):
            await self.desk.dead_letter(
                item, decision.refusal, prior=prior, write_back=decision.write_back, entity=decision.entity
            )
        else:
            await self.recorder.record(decision.after(prior))
            entity = decision.entity
            synced = any(row.outcome == "synced" for row in decision.rows)
            if self.follow_ups is not None and synced and entity is not None and entity.zoho_id:
                await self.follow_ups.parent_synced(entity.entity_type, entity.entity_id)

    # --- the steps ------------------------------------------------------------------------
    async def decide(self, item: WorkItem, event: ChangeEvent) -> Decision:
        started = time.monotonic()
        state = await self.recorder.read(self.recorder.store.entity_state, event.entity_type, event.entity_id)
        if self.options.resync:
            state = entity_map.as_listed(
                self._listing, self.options.mapping, event.entity_type, event.row, state
            )
        if self._explicit(item) and older_than_applied(event, state):
            if entity_map.newest_is_this_refused_state(event, state):
                # A re-driven letter whose later images only repeated it (its 'failed' write-back's echo, a
                # replay): it is the newest state, and its outcome stands at the newest position.
                assert state is not None
                event = replace(event, lsn=state.last_lsn)
        stale = self._stale(item, event, state)
        if stale is not None:
            return stale
        event = await self._made_whole(event, state)
        whole = event.row is not None and not is_partial(event)
        explicit = self._explicit(item)

        def refused() -> EntityUpdate | None:
            """The map row remembering this state as refused: built only once Zoho refuses it."""
            return entity_map.rejection(
                event, state, state_digest(event.entity_type, event.row) if whole else None
            )

        # Only an entity with a refused state on record is compared with it (a digest costs a JSON dump).
        if whole and state is not None and state.rejected is not None:
            digest = state_digest(event.entity_type, event.row)  # type: ignore[arg-type]
            if entity_map.refused_before(state, digest, explicit=explicit):
                # An echo (or replay) of a state Zoho refused: sending it again would be refused again.
                self.recorder.metrics.outcome("skipped")
                return Outcome(
                    [self.recorder.row(item, "skipped", operation="none", error=REFUSED_BEFORE)], refused()
                )
        planned = await self._plan(item, event, state, explicit=explicit, refused=refused)
        if not isinstance(planned, tuple):
            return planned
        plan, parent = planned
        return await self._execute(item, event, state, plan, parent, started, refused)

    def _stale(self, item: WorkItem, event: ChangeEvent, state: EntityState | None) -> Outcome | None:
        if self.options.ignore_stale or not older_than_applied(event, state):
            return None
        self.recorder.metrics.outcome("stale")
        self._stale_streak += 1
        if self._stale_streak in (MOVED_BACK_MIN_STALE, 1000 * MOVED_BACK_MIN_STALE):
            log.error(
                "source positions moved backwards for every entity: was the database restored into a new"
                " cluster? Changes are being skipped as stale; run `zoho-cdc backfill --resync`",
                stale_in_a_row=self._stale_streak,
            )
        assert state is not None
        error = f"source lsn {event.lsn} older than applied {state.last_lsn}"
        return Outcome([self.recorder.row(item, "stale", error=error)])

    async def _made_whole(self, event: ChangeEvent, state: EntityState | None) -> ChangeEvent:
        """Fill a partial image from the last full image we remember, else from the current source row."""
        if event.row is None or not is_partial(event):
            return event
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

    async def _plan(
        self,
        item: WorkItem,
        event: ChangeEvent,
        state: EntityState | None,
        *,
        explicit: bool,
        refused: Callable[[], EntityUpdate | None],
    ) -> tuple[Plan, ParentRecord | None] | Decision:
        spec = spec_of(event.entity_type)
        keep = event.op is not Op.DELETE  # write 'failed' back to a row that still exists
        try:
            plan, parent = await self.planned(spec, event, state, explicit=explicit)
        except MappingError as exc:
            refusal = Refusal(f"cannot map row: {exc.reason}", "mapping", "MappingError")
            return Refused(refusal, keep, refused())
        except AuthError as exc:
            raise credentials_refused(exc) from exc
        except (ZohoError, ParentRefused) as exc:
            # Only reached for an entity whose parent had to be synced first and Zoho refused it.
            parent = spec.parent.entity if spec.parent else "parent"
            parent_id = spec.parent_id(event.row)
            if self.follow_ups is not None and spec.parent is not None and parent_id is not None and keep:
                # Sent again, without an operator, once the parent is synced.
                await self.follow_ups.waiting(
                    event.entity_type, event.entity_id, spec.parent.entity, parent_id
                )
            return Refused(
                Refusal.of_error(f"its {parent} could not be synced to Zoho: {exc}", exc), keep, refused()
            )
        if plan.needs_parent is not None and plan.makes_call and plan.payload is None:
            return await self._parent_unavailable(item, spec, event)
        return plan, parent

    async def plan(
        self, spec: EntitySpec, event: ChangeEvent, state: EntityState | None, *, explicit: bool
    ) -> Plan:
        """The spec's plan for an event, with its parent resolved (and synced first if need be)."""
        return (await self.planned(spec, event, state, explicit=explicit))[0]

    async def planned(
        self, spec: EntitySpec, event: ChangeEvent, state: EntityState | None, *, explicit: bool
    ) -> tuple[Plan, ParentRecord | None]:
        """`plan`, with the parent record it was planned with."""
        parent = await self.parents.resolve(spec, event, explicit=explicit) if spec.parent else None
        facts = await spec.plan_facts(_RetryingLookups(self.recorder), event, state)
        return spec.plan(PlanInput(event, state, self.options.mapping, parent, facts)), parent

    async def _parent_unavailable(self, item: WorkItem, spec: EntitySpec, event: ChangeEvent) -> Decision:
        assert spec.parent is not None
        parent, parent_id = spec.parent.entity, spec.parent_id(event.row)
        row = None
        if parent_id:
            row = await self.recorder.read(self.recorder.store.source_row, parent, parent_id)
        why = spec_of(parent).never_synced(row) if row is not None else None
        if why is not None:
            self.recorder.metrics.outcome("skipped")
            return Outcome([self.recorder.row(item, "skipped", error=why)])
        reason = f"{parent} {parent_id} of {event.entity_type} {event.entity_id} does not exist in the source"
        return Refused(Refusal(reason, "source", f"Missing{parent.value.title()}"))

    async def _execute(
        self,
        item: WorkItem,
        event: ChangeEvent,
        state: EntityState | None,
        plan: Plan,
        parent: ParentRecord | None,
        started: float,
        refused: Callable[[], EntityUpdate | None],
    ) -> Decision:
        metrics = self.recorder.metrics
        if plan.action is Action.SKIP:
            metrics.outcome("skipped")
            return Outcome([self.recorder.row(item, "skipped", operation="none", error=plan.reason)])
        if plan.action is Action.NOOP:
            return await self.unchanged(item, event, state, plan, parent)
        if plan.action is Action.ZOHO_AHEAD:
            assert state is not None
            return self._zoho_ahead(
                item, event, plan.reason, state.zoho_id, entity_map.still_ahead(event, state)
            )
        try:
            applied = await self.apply(event, plan, state)
        except ZohoAhead as found:
            metrics.zoho_calls(found.calls)
            metrics.zoho_ahead_found(event.entity_type.value)
            log.warning(
                "Zoho is ahead: not sent",
                entity=str(event.entity_type),
                entity_id=event.entity_id,
                zoho_status=found.status,
            )
            update = entity_map.zoho_ahead(event, state, plan, found)
            return self._zoho_ahead(item, event, found.reason, found.zoho_id, update, found, str(plan.action))
        except AuthError as exc:
            raise credentials_refused(exc) from exc
        except ZohoError as exc:
            refusal = Refusal.of_error(f"{plan.action}: {exc}", exc)
            metrics.zoho_calls(refusal.attempts)
            return Refused(refusal, event.op is not Op.DELETE, refused())
        metrics.zoho_calls(applied.calls)
        self._stale_streak = 0
        done = (event.entity_type, event.entity_id)
        if applied.zoho_id is None:  # a delete whose unresolved create never reached Zoho
            metrics.outcome("skipped")
            row = self.recorder.row(
                item, "skipped", operation="none", error="deleted; its create never reached Zoho"
            )
            return Outcome([row], clear_intent=done)
        metrics.outcome("synced")
        if event.source_ts_ms:
            metrics.latency(time.time() - event.source_ts_ms / 1000)
        row = self.recorder.row(
            item,
            "synced",
            operation=str(plan.action),
            zoho_id=applied.zoho_id,
            http_status=applied.http_status,
            attempts=applied.attempts,
            duration_ms=int((time.monotonic() - started) * 1000),
            error=applied.note,  # how the record was found: adopted by stored id, by which rule, created
        )
        write_back = None
        if event.op is not Op.DELETE:
            write_back = WriteBack(event.entity_type, event.entity_id, applied.zoho_id, "synced")
        update = await self._with_memo(item, state, entity_map.synced(event, plan, applied), parent, True)
        return Outcome([row], update, write_back, done)

    def _zoho_ahead(
        self,
        item: WorkItem,
        event: ChangeEvent,
        reason: str,
        zoho_id: str | None,
        update: EntityUpdate,
        found: ZohoAhead | None = None,
        operation: str = "none",
    ) -> Outcome:
        """The outcome of a change Zoho is ahead of: recorded `zoho_ahead`, no dead letter, the entity map on
        Zoho's status, and the source row left (or put back) `synced`: nothing is wrong with it."""
        self.recorder.metrics.outcome("zoho_ahead")
        self._stale_streak = 0
        row = self.recorder.row(
            item,
            "zoho_ahead",
            operation=operation,
            zoho_id=zoho_id,
            error=reason,
            attempts=found.calls if found else 0,
            http_status=found.http_status if found else None,
        )
        return Outcome([row], update, entity_map.settled_write_back(event, zoho_id))

    async def unchanged(
        self,
        item: WorkItem,
        event: ChangeEvent,
        state: EntityState | None,
        plan: Plan,
        parent: ParentRecord | None,
    ) -> Outcome:
        """The outcome of a change Zoho already matches (its plan is NOOP); a replay's bulk check of its
        newest records (`consumer.pipeline.replay.bulk_check`) ends the same way."""
        self.recorder.metrics.outcome("unchanged")
        self._stale_streak = 0
        zoho_id = state.zoho_id if state else None
        row = self.recorder.row(item, "unchanged", operation="none", zoho_id=zoho_id)
        update = entity_map.unchanged(event, state, plan)
        if update is not None:
            update = await self._with_memo(item, state, update, parent, False)
        elif state is not None:
            update = await self._memo_only(item, state, parent)
        return Outcome([row], update, entity_map.settled_write_back(event, zoho_id))

    async def _memo_only(
        self, item: WorkItem, state: EntityState, parent: ParentRecord | None
    ) -> EntityUpdate | None:
        """A map row that already says everything but holds no memo of this record (written before memos
        existed, or under another mapping): the row is written again as it is, with the memo, so the next
        replay knows the record. None when no memo can be stored or the row holds it already."""
        if state.rejected is not None:
            return None  # the row's write would clear the refusal on record
        event = item.event
        assert event is not None
        kept = EntityUpdate(
            event.entity_type,
            event.entity_id,
            state.zoho_id,
            state.payload_hash,
            state.last_lsn,
            state.status,
            None,
        )
        update = await self._with_memo(item, state, kept, parent, False)
        return None if update.replay_memo in (None, state.replay_memo) else update

    def already_applied(self, row: OutcomeRow) -> Outcome:
        """The outcome of a replayed record whose replay memo matches: what `unchanged` gives for it,
        known without decoding or planning it (`consumer.pipeline.replay.memo`)."""
        self.recorder.metrics.outcome("unchanged")
        self.recorder.metrics.replay_already_applied()
        self._stale_streak = 0
        return Outcome([row])

    async def _with_memo(
        self,
        item: WorkItem,
        state: EntityState | None,
        update: EntityUpdate,
        parent: ParentRecord | None,
        intent_cleared: bool,
    ) -> EntityUpdate:
        """The map row with the replay memo of the record that leaves it (`replay_memo.memo_for`): of the
        record alone, as a replay decodes it. A resync's state is what Zoho's listing shows, not the
        stored row, so it leaves none."""
        if self.options.resync or item.event is None:
            return update
        mapping = self.options.mapping
        after = row_after(state, update, intent_cleared=intent_cleared)
        memo = await memo_for(self.memo_fingerprint, item.event, item.record.value, after, parent, mapping)
        return update if memo is None else replace(update, replay_memo=memo)

    async def apply(self, event: ChangeEvent, plan: Plan, state: EntityState | None) -> Applied:
        """One planned call. The client keeps its token and daily budget in PostgreSQL: if the database is
        briefly gone (a restart), the call is retried, which is safe because creates are guarded by the
        intent and the natural-key lookup. When the entity map showed no intent, the first attempt skips
        the intent read; a failed attempt may have written one, so later attempts read it."""
        attempts = 0

        def attempt() -> Any:
            nonlocal attempts
            attempts += 1
            return self._applier.apply(
                event.entity_type,
                event.entity_id,
                plan,
                event.row,
                state.zoho_id if state else None,
                intent_left=(state is not None and state.pending_create) or attempts > 1,
            )

        return await self.recorder.retrying(attempt, what="zoho call (database unavailable)")


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


def credentials_refused(exc: AuthError) -> FatalSyncError:
    return FatalSyncError(
        f"Zoho refused our credentials ({exc}); fix ZOHO_REFRESH_TOKEN / ZOHO_CLIENT_ID / "
        "ZOHO_CLIENT_SECRET and restart: no offsets were advanced."
    )


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
