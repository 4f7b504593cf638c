"""Carry out one planned Zoho call, without ever creating a second record for one source row.

A create's intent is written durably first; after a crash with an intent in place the record is looked up
by its natural key, as the client's idempotent creates resolve a lost response. The intent is written only
while the create is still this process's to send (`SyncStore.claim_create`): another process creating
the same entity (a child's parent synced beside the parent's own event) makes it look Zoho up again.
The calls are the entity's (`EntitySpec.calls`); what fails leaves here as a `consumer.model.call_errors`
family, never a client's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, Protocol

from connectors.zoho.send_guard import before_each_write
from consumer.entities.registry import spec_of
from consumer.entities.spec import EntityCalls, Row
from consumer.entities.zoho_boundary import as_call_errors
from consumer.model.call_errors import SyncedMeanwhile, Unavailable, ZohoAhead
from consumer.model.events import EntityType
from consumer.model.plan import Plan
from consumer.pipeline.adoption.finder import find_adoptable
from consumer.pipeline.adoption.match_index import MatchIndex
from consumer.pipeline.durability.rows import Intent
from consumer.pipeline.durability.store import SyncStore
from consumer.pipeline.effects.apply_options import ApplyOptions
from consumer.pipeline.effects.write_lease import LeaseHeld, WriteLease, lease_for

#: False while applying a plan whose entity-map read showed no intent: the intent reads are skipped.
#: A context variable, because one applier serves every worker task at once.
_INTENT_LEFT: ContextVar[bool] = ContextVar("intent_left", default=True)
#: What the current apply found out about the record (how it was matched), for its sync-log row.
_NOTES: ContextVar[list[str] | None] = ContextVar("apply_notes", default=None)
#: The Zoho id the plan being applied was made from (its entity-map row's): a create is sent only while
#: the map still shows it, else another process made the record since.
_PLANNED_ZOHO_ID: ContextVar[str | None] = ContextVar("planned_zoho_id", default=None)

#: How often a create gives way to another process's create of the same entity before it gives up (the
#: second round normally settles it: the record is found, or a create left by a dead process taken over).
RACED_ROUNDS: Final = 3


class CreateRaced(Exception):
    """Raised instead of sending a create when another process made the entity's record, or wrote its own
    create intent, since this create's lookup: nothing was sent."""


@dataclass(frozen=True, slots=True)
class Applied:
    """What Zoho now holds after the call."""

    zoho_id: str | None
    zoho_status: str | None
    http_status: int | None
    attempts: int
    calls: int
    note: str | None = None  # how the record was found (adopted by stored id, by which rule, or created)
    lease: str | None = None  # the entity's write lease, released by the outcome's map write (`write_lease`)


class Applier(Protocol):
    """Carries out a plan; `zoho_id` is the record the entity map knows (None: not in Zoho yet). What
    fails is raised as a `consumer.model.call_errors.CallError`."""

    async def apply(
        self, entity_type: EntityType, entity_id: str, plan: Plan, row: Row, zoho_id: str | None, **kw: Any
    ) -> Applied: ...


class ZohoApplier:
    """Applies plans with the Zoho client; one instance shared by every worker."""

    #: The pause before looking Zoho up again when another process's create intent (or write lease) is in
    #: place; None: one API call's whole deadline (`_call_deadline`).
    RACED_PAUSE_SECONDS: float | None = None

    def __init__(
        self,
        client: Any,
        store: SyncStore,
        options: ApplyOptions | None = None,
        match_index: MatchIndex | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.options = options or ApplyOptions()
        self.match_index = match_index  # a replay's listing of Zoho, to match without a call per entity
        self._calls: dict[EntityType, EntityCalls] = {}

    def calls(self, entity_type: EntityType) -> EntityCalls:
        """The entity's calls, made once per applier (they may keep state, e.g. the item catalogue)."""
        calls = self._calls.get(entity_type)
        if calls is None:
            make = spec_of(entity_type).calls
            if make is None:
                raise LookupError(f"entity {entity_type} has no Zoho calls; it needs an applier of its own")
            calls = self._calls[entity_type] = make(self)
        return calls

    async def apply(
        self,
        entity_type: EntityType,
        entity_id: str,
        plan: Plan,
        row: Row,
        state_zoho_id: str | None,
        *,
        intent_left: bool = True,
        version: int | None = None,
    ) -> Applied:
        """`intent_left` False: the entity map just showed no intent for this entity, so none is read
        before a create (the intent read is for creates a crash or a lost reply left unresolved).
        `version`: the map row's the plan was made from (None: no row); its writes are sent under the
        entity's write lease (`write_lease`)."""
        notes: list[str] = []
        lease = lease_for(self.store, entity_type, entity_id, version)
        with self.client.tracking() as tracker:
            token, noted = _INTENT_LEFT.set(intent_left), _NOTES.set(notes)
            planned = _PLANNED_ZOHO_ID.set(state_zoho_id)
            try:
                zoho_id, status = await self._leased(lease, entity_type, entity_id, plan, row, state_zoho_id)
            except ZohoAhead as ahead:  # what the attempt cost, for the outcome it is recorded as
                ahead.calls, ahead.http_status = tracker.attempts, tracker.http_status
                raise
            finally:
                _INTENT_LEFT.reset(token)
                _NOTES.reset(noted)
                _PLANNED_ZOHO_ID.reset(planned)
        return Applied(
            zoho_id=zoho_id,
            zoho_status=status,
            http_status=tracker.http_status,
            attempts=tracker.attempts,
            calls=tracker.attempts,
            note="; ".join(notes) or None,
            lease=lease.token if lease else None,
        )

    async def _leased(
        self,
        lease: WriteLease | None,
        entity_type: EntityType,
        entity_id: str,
        plan: Plan,
        row: Row,
        state_zoho_id: str | None,
    ) -> tuple[str | None, str | None]:
        """The plan carried out, its writes sent only while the lease is ours: while another process's
        write of the entity is in flight, this one waits a call's deadline (and then takes a lease that
        stood still that long over). A call that fails gives the lease back."""
        calls = self.calls(entity_type)
        for _ in range(RACED_ROUNDS):
            try:
                with as_call_errors(), lease.in_force() if lease else nullcontext():
                    return await calls.carry_out(plan, entity_id, row, state_zoho_id)
            except LeaseHeld as held:
                assert lease is not None
                await asyncio.sleep(self._call_deadline())
                await lease.waited(held)
            except Exception:
                if lease is not None:
                    await lease.give_back()
                raise
        raise Unavailable(
            f"{entity_type.value} {entity_id}: other processes kept writing it at the same time; not sent"
        )

    def _call_deadline(self) -> float:
        """One API call's whole deadline (its connect and read timeouts), by which a call sent has landed
        (`RACED_PAUSE_SECONDS` instead, when set)."""
        if self.RACED_PAUSE_SECONDS is not None:
            return self.RACED_PAUSE_SECONDS
        config = self.client.config
        return float(config.connect_timeout + config.read_timeout)

    async def intent(self, entity_type: EntityType, entity_id: str) -> Intent | None:
        if not _INTENT_LEFT.get():
            return None
        return await self.store.intent(entity_type, entity_id)

    async def created_before(self, entity_type: EntityType, entity_id: str) -> str | None:
        """The Zoho id of a record an unresolved create intent may have made, found by its natural key.

        A delete that arrives while a create is unresolved (the call was sent, the outcome never
        recorded) must reach that record, or it would stay active in Zoho.
        """
        intent = await self.intent(entity_type, entity_id)
        if intent is None:
            return None
        found = await self.calls(entity_type).find(intent.natural_key, entity_id, None)
        return spec_of(entity_type).zoho_id_of(found) if found else None

    async def create(
        self, entity_type: EntityType, entity_id: str, payload: dict[str, Any], row: Mapping[str, Any] | None
    ) -> tuple[str | None, dict[str, Any]]:
        """Create the record once: after a crash with an intent left, the record found by its natural key
        is brought up to `payload` instead of being created a second time; so is the record another
        process made (or was making) while this create waited to be sent."""
        spec = spec_of(entity_type)
        key = spec.natural_key_of(row)
        if key is None:
            raise ValueError(f"{entity_type.value} {entity_id} has no natural key to create it safely")
        calls = self.calls(entity_type)
        left = await self.intent(entity_type, entity_id)
        planned, look_up = _PLANNED_ZOHO_ID.get(), left is not None
        for _ in range(RACED_ROUNDS):
            existing = await self._existing(entity_type, entity_id, row, key, look_up=look_up)
            try:  # every write of it (the POST, its retries, an adoption's PUT) renews the claim first
                with before_each_write(self._claim(entity_type, entity_id, key, planned, left)):
                    if existing is not None:
                        return await self._adopt(entity_type, entity_id, existing, payload)
                    body = await calls.create(payload, key, row)
            except CreateRaced:
                left, planned = await self._after_race(entity_type, entity_id)
                look_up = True  # the other process's record carries the natural key
                continue
            if self.match_index is not None:  # a later entity of the replay sharing a value sees it
                self.match_index.add(entity_type, body)
            return spec.zoho_id_of(body), body
        raise Unavailable(
            f"{entity_type.value} {entity_id}: other processes kept creating it at the same time; not sent"
        )

    async def _adopt(
        self,
        entity_type: EntityType,
        entity_id: str,
        existing: dict[str, Any],
        payload: dict[str, Any],
    ) -> tuple[str | None, dict[str, Any]]:
        """The record found brought up to `payload`, under the create's claim: of two processes adopting
        one record from different events (a backfill's older one beside the live sync), only one sends
        (simulation seed 523: the older PUT landed last, and the map kept the newer hash)."""
        zoho_id = spec_of(entity_type).zoho_id_of(existing)
        assert zoho_id is not None
        await self._not_synced_since_planned(entity_type, entity_id, zoho_id)
        return zoho_id, await self.calls(entity_type).adopt(existing, payload)

    async def _existing(
        self,
        entity_type: EntityType,
        entity_id: str,
        row: Mapping[str, Any] | None,
        key: str,
        *,
        look_up: bool,
    ) -> dict[str, Any] | None:
        """The record to adopt instead of creating one: the one an earlier create (ours after a crash, or
        another process's) made, found by its natural key, else one made by others the match rules find."""
        calls = self.calls(entity_type)
        if look_up:
            found = await calls.find(key, entity_id, row)
            if found is not None:
                return found
        # A record made by others (or the id the source already holds) is adopted, never duplicated.
        adoption = await find_adoptable(
            entity_type,
            entity_id,
            row,
            calls,
            self.store.claims,
            self.options.match_rules.get(entity_type, ()),
            self.match_index,
            stored_ids=getattr(self.store, "writes_back", True),
        )
        notes = _NOTES.get()
        if notes is not None:
            notes.append(adoption.note)
        return adoption.record

    async def _not_synced_since_planned(self, entity_type: EntityType, entity_id: str, zoho_id: str) -> None:
        """Raise `SyncedMeanwhile` when the record about to be adopted is the one the entity map now shows,
        though the plan was made without it: another process synced the entity since, and the map holds
        its state (newer positions win there), so pushing this payload over it could leave Zoho holding an
        older state than the map says it does, with nothing left to put it right."""
        planned = _PLANNED_ZOHO_ID.get()
        if planned == zoho_id:
            return
        state = await self.store.entity_state(entity_type, entity_id)
        if state is not None and state.zoho_id == zoho_id:
            raise SyncedMeanwhile(
                f"{entity_type.value} {entity_id}: another process synced it as Zoho {zoho_id} meanwhile;"
                " decided again against its state"
            )

    def _claim(
        self, entity_type: EntityType, entity_id: str, key: str, planned: str | None, left: Intent | None
    ) -> Any:
        """The step run just before each write of a create is sent (once it can go out at once, or holds its
        send slot, so waiting for the rate window leaves no intent behind): the intent, written only while
        the create is still ours to send, and renewed before every retry, so a process that would take it
        over as left by a dead one (after a call deadline) sees it move and backs off (simulation seed
        7015: a backfill's create retried 63 s after its first attempt, beside the live sync's takeover)."""
        held = left

        async def claim() -> None:
            nonlocal held
            written = await self.store.claim_create(
                entity_type, entity_id, key, zoho_id=planned, taking_over=held
            )
            if written is None:
                raise CreateRaced(f"{entity_type.value} {entity_id}")
            held = written

        return claim

    async def _after_race(self, entity_type: EntityType, entity_id: str) -> tuple[Intent | None, str | None]:
        """What the process that won the create left: its intent (after a pause, so a create it has under
        way lands in Zoho before the lookup; one still there then is taken over, as a crash's is) and the
        Zoho id the map now shows."""
        if await self.store.intent(entity_type, entity_id) is not None:
            await asyncio.sleep(self._call_deadline())
        left = await self.store.intent(entity_type, entity_id)
        state = await self.store.entity_state(entity_type, entity_id)
        return left, state.zoho_id if state else None
