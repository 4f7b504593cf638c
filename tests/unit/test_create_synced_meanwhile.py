"""A create that finds another process synced the entity since it was planned is decided again.

Found by the simulation (seeds 428, 456, 888, 1782): a backfill planned a customer's create from an older
event while the live sync (another process) created the customer from a newer one and wrote its map row.
The backfill's create then found that record and adopted it "brought up to" its older payload: Zoho held
the older state, the map (newer positions win) the newer hash, and no later event ever made a call. The
applier now sends nothing (`SyncedMeanwhile`) and the policy decides the change again against the map row
the other process wrote: stale when that state is newer, an update when it is older.

Real `EventPolicy`; the store and Zoho are the in-memory fakes of `test_parent_synced_meanwhile`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from consumer.metrics import Metrics
from consumer.model.events import Op
from consumer.model.outcomes import SyncOutcome
from consumer.model.plan import Action, EntityState, MappingConfig, Plan
from consumer.pipeline.decision.policy import EventPolicy, PolicyOptions
from consumer.pipeline.durability.recording import Outcome, OutcomeRecorder
from consumer.pipeline.effects.apply import Applied, SyncedMeanwhile
from consumer.pipeline.intake.scheduler import InboundRecord, WorkItem
from tests.unit.test_parent_synced_meanwhile import (
    CUSTOMER,
    OTHER_PROCESS_ZOHO_ID,
    PREFIX,
    _Desk,
    _Locks,
    _Store,
)

EVENT = replace(CUSTOMER, op=Op.CREATE, snapshot=False)  # a streamed insert, at its LSN
KEY = (EVENT.entity_type.value, EVENT.entity_id)


class _OtherProcessCreatesItFirst:
    """Zoho as the create meets it: the other process's record, whose map row was written meanwhile
    (from the source position `other_lsn`); what each call was asked to do is kept."""

    def __init__(self, store: _Store, other_lsn: int) -> None:
        self._store, self._other_lsn = store, other_lsn
        self.actions: list[Action] = []

    async def apply(self, entity_type: Any, entity_id: str, plan: Plan, *args: Any, **_: Any) -> Applied:
        self.actions.append(plan.action)
        if plan.action is Action.CREATE_CUSTOMER:
            self._store.states[KEY] = EntityState(
                zoho_id=OTHER_PROCESS_ZOHO_ID,
                payload_hash="p" * 64,
                last_lsn=self._other_lsn,
                status="active",
            )
            raise SyncedMeanwhile("another process synced it meanwhile")
        return Applied(OTHER_PROCESS_ZOHO_ID, "active", 200, 1, 1)


async def _decided(other_lsn: int) -> tuple[Outcome, list[Action]]:
    store = _Store()
    options = PolicyOptions(MappingConfig(), False, False, "billing.dlq", PREFIX)
    recorder = OutcomeRecorder(store, "group", Metrics())  # type: ignore[arg-type]
    zoho = _OtherProcessCreatesItFirst(store, other_lsn)
    policy = EventPolicy(options, recorder, _Desk(), zoho, _Locks())  # type: ignore[arg-type]
    record = InboundRecord(EVENT.entity_type.topic(PREFIX), 0, 3, None, None)
    decision = await policy.decide(WorkItem(record, EVENT, None), EVENT)
    assert isinstance(decision, Outcome)
    return decision, zoho.actions


async def test_an_older_change_whose_create_another_process_overtook_is_stale_and_sends_nothing() -> None:
    assert EVENT.lsn is not None
    decision, actions = await _decided(other_lsn=EVENT.lsn + 1000)

    assert actions == [Action.CREATE_CUSTOMER]  # the create sent nothing; no update over the newer state
    [row] = decision.rows
    assert row.outcome == SyncOutcome.STALE


async def test_a_newer_change_whose_create_another_process_overtook_updates_its_record() -> None:
    assert EVENT.lsn is not None
    decision, actions = await _decided(other_lsn=EVENT.lsn - 1000)

    assert actions == [Action.CREATE_CUSTOMER, Action.UPDATE_CUSTOMER]  # this newer state reaches Zoho
    [row] = decision.rows
    assert (row.outcome, row.zoho_id) == (SyncOutcome.SYNCED, OTHER_PROCESS_ZOHO_ID)
