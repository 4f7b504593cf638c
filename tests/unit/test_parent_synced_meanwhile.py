"""A parent another process synced while this one failed to is used, never remembered as refused.

Found by the simulation (seed 33): an invoice's process synced its customer first, since the entity map
had no Zoho id for it; that call waited a minute for the rate window, while the process owning the
customer's partition created it (key locks are per process). The lookup's reply was then lost. Refusing
the parent at that point dead-lettered a customer Zoho held, marked its accepted state refused, and left the
invoice waiting for a sync that had already happened: it never reached Zoho. And when that other sync
ends just before the child waits, its hand-over finds no child yet: the child is handed over at once.

Real `EventPolicy` and `ParentResolver`; the store, the dead-letter desk and Zoho are in-memory fakes.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from consumer.entities.registry import spec_of
from consumer.entities.spec import ParentRecord
from consumer.metrics import Metrics
from consumer.model.call_errors import Unavailable
from consumer.model.events import ChangeEvent, EntityType
from consumer.model.plan import EntityState, MappingConfig, Plan
from consumer.pipeline.codec.decode import decode_event
from consumer.pipeline.decision.decisions import Refused
from consumer.pipeline.decision.policy import EventPolicy, PolicyOptions
from consumer.pipeline.durability.recording import OutcomeRecorder
from consumer.pipeline.effects.follow_ups import FollowUps, is_follow_up
from consumer.pipeline.intake.scheduler import InboundRecord, Key, WorkItem

PREFIX = "billing"
FIXTURE = Path(__file__).parent.parent / "fixtures" / "debezium" / "events-plain.jsonl"
OTHER_PROCESS_ZOHO_ID = "460000000099999"
LOST = "no reply from Zoho for GET /customers (ReadError)"


def _event(n: int) -> ChangeEvent:
    line = json.loads(FIXTURE.read_text().splitlines()[n])
    encoded = (json.dumps(line["key"]).encode(), json.dumps(line["value"]).encode())
    return decode_event(line["topic"], *encoded, topic_prefix=PREFIX)


CUSTOMER, INVOICE = _event(0), _event(3)  # the invoice's customer_id is this customer's id


class _Store:
    """The entity map and source rows, in memory; what is recorded is kept in order."""

    def __init__(self) -> None:
        self.states: dict[Key, EntityState] = {}
        self.recorded: list[dict[str, Any]] = []
        self.waiting: dict[tuple[EntityType, str], tuple[EntityType, str]] = {}
        self.synced_as_child_waits = False

    async def entity_state(self, entity_type: EntityType, entity_id: str) -> EntityState | None:
        return self.states.get((entity_type.value, entity_id))

    async def source_row(self, entity_type: EntityType, entity_id: str) -> dict[str, Any] | None:
        found = {CUSTOMER.entity_id: CUSTOMER.row, INVOICE.entity_id: INVOICE.row}.get(entity_id)
        return dict(found) if found is not None else None

    async def first_child_value(self, *args: Any) -> str | None:
        return "ZAR"

    async def record(self, outcomes: Any, **parts: Any) -> None:
        self.recorded.append(parts)

    async def await_parent(
        self, child: EntityType, child_id: str, parent: EntityType, parent_id: str
    ) -> None:
        if self.synced_as_child_waits:  # the parent's own sync, in another process, ends right before
            self.states[(parent.value, parent_id)] = EntityState(
                zoho_id=OTHER_PROCESS_ZOHO_ID, payload_hash="p" * 64, last_lsn=900, status="active"
            )
        self.waiting[(child, child_id)] = (parent, parent_id)

    async def take_waiting(self, parent: EntityType, parent_id: str) -> list[tuple[EntityType, str]]:
        taken = [child for child, waited in self.waiting.items() if waited == (parent, parent_id)]
        for child in taken:
            del self.waiting[child]
        return taken

    async def next_follow_up(self) -> int:
        return 1


class _Desk:
    def __init__(self) -> None:
        self.letters: list[tuple[ChangeEvent, Any]] = []

    async def publish_change(self, event: ChangeEvent, refusal: Any) -> None:
        self.letters.append((event, refusal))


class _ZohoLosesTheReply:
    """The parent's call gets no reply; meanwhile (when `other_process` is set) the process that owns the
    parent's partition has synced it and written its map row."""

    def __init__(self, store: _Store, *, other_process: bool) -> None:
        self._store, self._other_process = store, other_process

    async def apply(self, entity_type: EntityType, entity_id: str, plan: Plan, *args: Any, **_: Any) -> Any:
        if self._other_process:
            self._store.states[(entity_type.value, entity_id)] = EntityState(
                zoho_id=OTHER_PROCESS_ZOHO_ID, payload_hash="p" * 64, last_lsn=900, status="active"
            )
        raise Unavailable(LOST, attempts=1)


class _Locks:  # per process: they never see another process's work on the parent
    @contextlib.asynccontextmanager
    async def locked(self, key: Key) -> AsyncIterator[None]:
        yield


def _policy(store: _Store, desk: _Desk, *, other_process: bool) -> EventPolicy:
    options = PolicyOptions(MappingConfig(), False, False, "billing.dlq", PREFIX)
    recorder = OutcomeRecorder(store, "group", Metrics())  # type: ignore[arg-type]
    zoho = _ZohoLosesTheReply(store, other_process=other_process)
    return EventPolicy(options, recorder, desk, zoho, _Locks())  # type: ignore[arg-type]


async def test_a_parent_synced_by_another_process_meanwhile_is_used_and_not_refused() -> None:
    store, desk = _Store(), _Desk()
    policy = _policy(store, desk, other_process=True)

    parent = await policy.parents.resolve(spec_of(EntityType.INVOICE), INVOICE, explicit=False)

    assert parent == ParentRecord(OTHER_PROCESS_ZOHO_ID, None)  # the invoice is sent to that customer
    assert desk.letters == []  # no dead letter for a customer Zoho holds
    assert store.recorded == []  # its accepted state is not remembered as refused


async def test_a_parent_nobody_synced_is_still_dead_lettered_once_and_remembered_refused() -> None:
    store, desk = _Store(), _Desk()
    policy = _policy(store, desk, other_process=False)

    with pytest.raises(Unavailable):
        await policy.parents.resolve(spec_of(EntityType.INVOICE), INVOICE, explicit=False)

    assert [event.entity_id for event, _ in desk.letters] == [CUSTOMER.entity_id]
    [refused] = store.recorded
    assert refused["entity"].entity_id == CUSTOMER.entity_id and refused["entity"].rejected_digest


async def test_a_child_whose_parent_was_synced_just_before_it_waited_is_handed_over_at_once() -> None:
    """The parent's own process synced it after this one found it unsynced, and took its (still empty)
    waiting list before this child waited: the child must not wait for a sync that already happened."""
    store, desk = _Store(), _Desk()
    store.synced_as_child_waits = True
    policy = _policy(store, desk, other_process=False)
    handed: list[WorkItem] = []
    policy.follow_ups = FollowUps(policy.recorder, handed.append, PREFIX)
    record = InboundRecord(INVOICE.entity_type.topic(PREFIX), 0, 7, None, None)

    decision = await policy.decide(WorkItem(record, INVOICE, None), INVOICE)

    assert isinstance(decision, Refused)  # this record is dead-lettered for its customer, as before
    assert [(item.event.entity_id, is_follow_up(item.record)) for item in handed if item.event] == [
        (INVOICE.entity_id, True)
    ]  # and sent again at once, now that its customer is in Zoho
    assert store.waiting == {}
