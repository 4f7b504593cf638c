"""Resolve the parent first: an entity that needs another in Zoho (an invoice its customer) gets it.

A parent not in Zoho yet is synced from its current source row, as any event is. One Zoho refused before
is not sent again (`ParentRefused`) unless the run is explicit (a resync or a DLQ reprocess); one Zoho
refuses now is dead-lettered once as its own reprocessable record.
"""

from __future__ import annotations

from typing import Final, Protocol

import structlog

from consumer.entities.registry import spec_of, specs
from consumer.entities.spec import EntitySpec, ParentRecord
from consumer.model.call_errors import CallError, CredentialsRejected, ZohoAhead
from consumer.model.events import ChangeEvent, EntityType, snapshot_read
from consumer.model.plan import Action, EntityState, Plan
from consumer.pipeline.decision import entity_map
from consumer.pipeline.decision.decisions import PolicyOptions
from consumer.pipeline.decision.entity_map import Listing
from consumer.pipeline.decision.row_images import state_digest
from consumer.pipeline.durability.recording import Outcome, OutcomeRecorder
from consumer.pipeline.effects.apply import Applied
from consumer.pipeline.effects.dead_lettering import DeadLetterDesk, Refusal
from consumer.pipeline.effects.follow_ups import FollowUps
from consumer.pipeline.effects.write_back import WriteBack
from consumer.pipeline.intake.scheduler import Key, KeyScheduler

log = structlog.get_logger(__name__)


REFUSED_BEFORE: Final = (
    "Zoho refused this same mapped state before (see the dead-letter topic); it is sent again only when"
    " the row changes, or by `dlq reprocess` or `backfill --resync`"
)


class PolicySteps(Protocol):
    """The event policy, as resolving a parent uses it: the same plan, apply and recording steps."""

    options: PolicyOptions
    recorder: OutcomeRecorder
    desk: DeadLetterDesk
    locks: KeyScheduler
    follow_ups: FollowUps | None

    async def plan(
        self, spec: EntitySpec, event: ChangeEvent, state: EntityState | None, *, explicit: bool
    ) -> Plan: ...

    async def apply(self, event: ChangeEvent, plan: Plan, state: EntityState | None) -> Applied: ...


class ParentRefused(Exception):
    """Raised when a child needs its parent synced and Zoho refused that parent's current state."""


class ParentResolver:
    """Finds (or syncs first) the Zoho record of an entity's parent.

    The parent is looked up in the entity map; when it is not in Zoho yet it goes through the same steps
    as any event (plan by its spec, apply, record), under the parent's own key lock so the parent's own
    events never race it."""

    def __init__(self, policy: PolicySteps, listing: Listing | None) -> None:
        self._policy = policy
        self._listing = listing
        self._verified: set[Key] = set()  # parents checked against Zoho in this resync

    async def resolve(self, spec: EntitySpec, event: ChangeEvent, *, explicit: bool) -> ParentRecord | None:
        parent_id = spec.parent_id(event.row)
        if spec.parent is None or parent_id is None:
            return None
        return await self._zoho_record(spec_of(spec.parent.entity), parent_id, explicit=explicit)

    def mark_verified(self, key: Key) -> None:
        """After a batch of `key`: in a resync, a parent whose own event was applied is known to exist."""
        if self._policy.options.resync and _is_parent(key[0]):  # a live run must not remember every key
            self._verified.add(key)

    async def _zoho_record(self, spec: EntitySpec, entity_id: str, *, explicit: bool) -> ParentRecord | None:
        """The parent as Zoho has it, syncing it first if it is not in Zoho yet.

        In a resync the stored id may point at a record that no longer exists, so the parent is
        checked against Zoho once per run before any child uses the id."""
        policy = self._policy
        read, store = policy.recorder.read, policy.recorder.store
        state = await read(store.entity_state, spec.entity, entity_id)
        if self._usable(spec.entity, entity_id, state):
            return parent_record(state)
        # Wait for (or do) the parent's sync under the parent's own key lock, so the two never race.
        async with policy.locks.locked((spec.entity.value, entity_id)):
            state = await read(store.entity_state, spec.entity, entity_id)
            if self._usable(spec.entity, entity_id, state):
                return parent_record(state)
            row = await read(store.source_row, spec.entity, entity_id)
            if row is None or spec.never_synced(row) is not None:
                return None
            digest = state_digest(spec.entity, row)
            if entity_map.refused_before(state, digest, explicit=explicit):
                raise ParentRefused(f"{spec.entity} {entity_id}: {REFUSED_BEFORE}")
            if policy.options.resync:
                state = entity_map.as_listed(self._listing, policy.options.mapping, spec.entity, row, state)
            event = snapshot_read(spec.entity, entity_id, row)
            return await self._sync(spec, event, state, digest, explicit=explicit)

    async def _sync(
        self, spec: EntitySpec, event: ChangeEvent, state: EntityState | None, digest: str, *, explicit: bool
    ) -> ParentRecord | None:
        policy = self._policy
        plan = await policy.plan(spec, event, state, explicit=explicit)
        if plan.action in (Action.NOOP, Action.ZOHO_AHEAD) and state is not None:
            # Zoho ahead (a customer made inactive by hand): the record is in Zoho, the child may use it.
            self._verified.add((spec.entity.value, event.entity_id))
            return parent_record(state)
        if not plan.makes_call:
            return None
        try:
            applied = await policy.apply(event, plan, state)
        except ZohoAhead as found:
            policy.recorder.metrics.zoho_calls(found.calls)
            policy.recorder.metrics.zoho_ahead_found(spec.entity.value)
            update = entity_map.zoho_ahead(event, state, plan, found)
            await policy.recorder.record(Outcome([], update))
            self._verified.add((spec.entity.value, event.entity_id))
            return parent_record(await policy.recorder.store.entity_state(spec.entity, event.entity_id))
        except CallError as exc:
            if isinstance(exc, CredentialsRejected):
                raise
            synced = await self._synced_meanwhile(spec.entity, event.entity_id, state)
            if synced is not None:
                return synced
            await self._refused(event, state, digest, exc)
            raise
        policy.recorder.metrics.zoho_calls(applied.calls)
        write_back = WriteBack(spec.entity, event.entity_id, applied.zoho_id, "synced")
        update = entity_map.synced(event, plan, applied)
        await policy.recorder.record(Outcome([], update, write_back, (spec.entity, event.entity_id)))
        self._verified.add((spec.entity.value, event.entity_id))
        if policy.follow_ups is not None:  # its other children refused for it go now
            await policy.follow_ups.parent_synced(spec.entity, event.entity_id)
        log.info(
            "parent synced for its child",
            entity=str(spec.entity),
            entity_id=event.entity_id,
            zoho_id=applied.zoho_id,
        )
        currency = spec.created_currency(plan) or (state.currency_code if state else None)
        return ParentRecord(applied.zoho_id, currency) if applied.zoho_id else None

    async def _synced_meanwhile(
        self, entity: EntityType, entity_id: str, state: EntityState | None
    ) -> ParentRecord | None:
        """The parent's Zoho record when another process synced it while this one failed to (its own event,
        in a partition this process does not own: the key lock is per process). Its call may wait minutes
        for the rate window; refusing the parent then would remember a state Zoho accepted as refused, and
        park the child waiting for a sync that already happened."""
        policy = self._policy
        now = await policy.recorder.read(policy.recorder.store.entity_state, entity, entity_id)
        if now is None or not now.zoho_id or now.zoho_id == (state.zoho_id if state else None):
            return None
        return parent_record(now)

    async def _refused(
        self, event: ChangeEvent, state: EntityState | None, digest: str, exc: CallError
    ) -> None:
        """Zoho refused a parent a child needed: dead-letter the parent's state once, as its own record (a
        snapshot-shaped event, so `dlq reprocess` can re-drive it), and remember the refusal so neither
        the parent's own event nor its write-back echo sends it again."""
        policy = self._policy
        await policy.desk.publish_change(
            event, Refusal.of_error(f"{event.entity_type} synced for its child: {exc}", exc)
        )
        refused = entity_map.rejection(event, state, digest)
        failed = WriteBack(event.entity_type, event.entity_id, None, "failed", called=False)
        await policy.recorder.record(Outcome([], refused, failed))

    def _usable(self, entity: EntityType, entity_id: str, state: EntityState | None) -> bool:
        if state is None or not state.zoho_id:
            return False
        if self._listing is not None and self._listing.has(entity, state.zoho_id):
            return True  # listed by this resync: it exists in Zoho
        return not self._policy.options.resync or (entity.value, entity_id) in self._verified


def parent_record(state: EntityState | None) -> ParentRecord | None:
    """What a child needs of a parent the entity map shows in Zoho; None when it is not there."""
    if state is None or not state.zoho_id:
        return None
    return ParentRecord(state.zoho_id, state.currency_code)


def _is_parent(entity: str) -> bool:
    return any(spec.parent is not None and spec.parent.entity == entity for spec in specs())
