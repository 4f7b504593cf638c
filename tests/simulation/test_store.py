"""The in-memory sync store keeps the semantics of the SQL the service runs (`SyncStore`)."""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg_pool import PoolClosed

from consumer.metrics import Metrics
from consumer.model.events import EntityType, Op
from consumer.model.outcomes import SyncOutcome
from consumer.pipeline.adoption.claims import AdoptionClaims
from consumer.pipeline.decision.row_images import recalled, remembered
from consumer.pipeline.durability.recording import Outcome, OutcomeRecorder
from consumer.pipeline.durability.rows import EntityUpdate, Intent, OutcomeRow
from consumer.pipeline.durability.source_reads import SourceReader
from consumer.pipeline.durability.store import SyncStore
from consumer.pipeline.effects.write_back import WriteBack, WriteBackPass, WriteBackQueue
from simulation.database.claims import MemoryClaims
from simulation.database.source import MemorySource
from simulation.database.store import MemoryStore
from simulation.database.tables import MemoryDatabase, MemorySourceReader
from simulation.database.write_backs import MemoryWriteBacks
from tests.simulation.test_source import LONG, FakeBroker, customer

C = EntityType.CUSTOMER
ORG = "org-1"


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


@pytest.fixture
def db(broker: FakeBroker) -> MemoryDatabase:
    return MemoryDatabase(MemorySource(broker, random.Random(1)))


@pytest.fixture
async def store(db: MemoryDatabase) -> AsyncIterator[MemoryStore]:
    async with MemoryStore(db, organization_id=ORG, pauses=False) as opened:
        yield opened


def outcome(
    offset: int, result: SyncOutcome = SyncOutcome.SYNCED, group: str = "g", **more: Any
) -> OutcomeRow:
    return OutcomeRow(group, "zoho-cdc.public.customers", 0, offset, "customer", "e1", result, **more)


def update(lsn: int | None, **more: Any) -> EntityUpdate:
    values: dict[str, Any] = {
        "zoho_id": "Z1",
        "payload_hash": "h",
        "zoho_status": "active",
        "natural_key": "CT-1",
    }
    return EntityUpdate(C, "e1", last_lsn=lsn, **{**values, **more})


async def test_a_redelivered_outcome_keeps_the_first_row(store: MemoryStore, db: MemoryDatabase) -> None:
    await store.record([outcome(5, SyncOutcome.FAILED, error="x" * 3000)])
    await store.record(
        [outcome(5, SyncOutcome.SYNCED), outcome(5, SyncOutcome.SKIPPED), outcome(6, error="")]
    )
    assert [(r.offset, r.outcome) for r in db.sync_log] == [(5, SyncOutcome.FAILED), (6, SyncOutcome.SYNCED)]
    assert len(db.sync_log[0].error or "") == 2000 and db.sync_log[1].error is None
    assert await store.has_outcome("g", "zoho-cdc.public.customers", 0, 5)
    assert not await store.has_outcome("other", "zoho-cdc.public.customers", 0, 5)


async def test_the_first_group_to_dead_letter_a_record_is_named(store: MemoryStore) -> None:
    await store.record([outcome(1, group="a")])
    await store.record([outcome(1, SyncOutcome.DEAD_LETTERED, group="b")])
    await store.record([outcome(1, SyncOutcome.DEAD_LETTERED, group="c")])
    assert await store.dead_lettered_by("zoho-cdc.public.customers", 0, 1) == "b"
    assert await store.dead_lettered_by("zoho-cdc.public.customers", 0, 2) is None


async def test_a_newer_write_wins_but_keeps_what_it_lacks(store: MemoryStore) -> None:
    await store.record([], entity=update(10, rejected_digest="r", currency_code="ZAR", replay_memo="m"))
    await store.record([], entity=update(20, zoho_id=None, payload_hash=None, zoho_status="inactive"))
    state = await store.entity_state(C, "e1")
    assert state is not None
    assert (state.zoho_id, state.payload_hash, state.status, state.last_lsn) == ("Z1", None, "inactive", 20)
    assert (state.rejected, state.currency_code, state.replay_memo) == (None, "ZAR", None)  # "sets" clear


async def test_an_older_write_only_fills_what_the_row_lacks(store: MemoryStore) -> None:
    await store.record([], entity=update(20, zoho_id=None, payload_hash="new", zoho_ahead="void"))
    await store.record([], entity=update(10, zoho_id="Z9", payload_hash="old", zoho_status="inactive"))
    state = await store.entity_state(C, "e1")
    assert state is not None
    assert (state.zoho_id, state.payload_hash, state.status, state.last_lsn) == ("Z9", "new", "active", 20)
    assert state.ahead == "void"
    await store.record([], entity=update(None, payload_hash="unknown position"))  # not older: it wins
    state = await store.entity_state(C, "e1")
    assert state is not None and (state.payload_hash, state.last_lsn) == ("unknown position", 20)


async def test_the_remembered_image_comes_back_as_decoded_values(
    store: MemoryStore, db: MemoryDatabase
) -> None:
    cid = customer(db.source, billing_address={"zip": "8001", "city": "Cape Town"})
    row = db.source.row("customers", cid)
    assert row is not None
    image = remembered(C, row)
    await store.record([], entity=EntityUpdate(C, cid, "Z1", "h", 1, "active", "CT-1", source_row=image))
    state = await store.entity_state(C, cid)
    assert state is not None and state.source_row == recalled(image)
    assert (await store.entity_states([(C, cid)]))[("customer", cid)].source_row is None  # never the image


async def test_an_intent_alone_is_a_pending_create_until_the_outcome_clears_it(store: MemoryStore) -> None:
    await store.write_intent(C, "e1", "create", "CT-1")
    assert await store.intent(C, "e1") == Intent("create", "CT-1")
    state = await store.entity_state(C, "e1")
    assert state is not None and state.pending_create and state.zoho_id is None
    assert list(await store.entity_states([(C, "e1"), (C, "nobody")])) == [("customer", "e1")]
    await store.record([outcome(1)], entity=update(1), clear_intent=(C, "e1"))
    state = await store.entity_state(C, "e1")
    assert await store.intent(C, "e1") is None and state is not None and not state.pending_create


async def test_the_map_and_intents_are_per_organisation(db: MemoryDatabase) -> None:
    async with (
        MemoryStore(db, organization_id="a", pauses=False) as a,
        MemoryStore(db, organization_id="b") as b,
    ):
        await a.record([], entity=update(1))
        await a.write_intent(C, "e2", "create", "k")
        assert await b.entity_state(C, "e1") is None and await b.intent(C, "e2") is None


async def test_a_refused_row_leaves_nothing_of_its_outcome(store: MemoryStore, db: MemoryDatabase) -> None:
    await store.write_intent(C, "e1", "create", "CT-1")
    bad = OutcomeRow("g", "t", 0, 2, "customer", "e1", "bogus")  # type: ignore[arg-type]
    for rows in ([outcome(1), bad], [outcome(1, error="e\x00")]):
        with pytest.raises((errors.CheckViolation, psycopg.DataError)):
            await store.record(
                rows, entity=update(1), clear_intent=(C, "e1"), write_back=WriteBack(C, "e1", "Z1", "synced")
            )
    assert (db.sync_log, db.entity_map, db.pending_write_backs) == ([], {}, {})
    assert await store.intent(C, "e1") is not None


async def test_an_unavailable_database_refuses_every_statement(
    store: MemoryStore, db: MemoryDatabase
) -> None:
    db.unavailable_until = asyncio.get_running_loop().time() + 3600
    for call in (
        store.record([outcome(1)], entity=update(1)),
        store.entity_state(C, "e1"),
        store.ping(),
        store.claims.claim(C, "Z1", "e1", "email"),
        store.write_backs.apply_pending(),
    ):
        with pytest.raises(psycopg.OperationalError, match="simulated: database unavailable"):
            await call
    assert db.sync_log == [] and db.claims == {}
    db.unavailable_until = asyncio.get_running_loop().time()
    await store.record([outcome(1)])
    assert len(db.sync_log) == 1


async def test_a_write_goes_when_its_caller_is_cancelled(store: MemoryStore, db: MemoryDatabase) -> None:
    caller = asyncio.ensure_future(store.record([outcome(1)], entity=update(1)))
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(db.sync_log) == 1 and ORG in next(iter(db.entity_map))


async def test_a_dead_process_writes_nothing_more(db: MemoryDatabase) -> None:
    alive = [True]

    def guard() -> None:
        if not alive[0]:
            raise asyncio.CancelledError("process killed")

    db.guard = guard
    async with MemoryStore(db, pauses=False) as store:
        writing = asyncio.ensure_future(store.record([outcome(1)]))
        alive[0] = False  # killed before the write's statement runs
        with pytest.raises(asyncio.CancelledError):
            await writing
        alive[0] = True
    assert db.sync_log == []


async def test_the_first_claim_wins_and_a_mapped_record_is_its_entitys(store: MemoryStore) -> None:
    claims = store.claims
    assert await claims.claim(C, "Z1", "e1", "email") == "e1"
    assert await claims.claim(C, "Z1", "e2", "email") == "e1"
    assert await claims.claim(C, "Z1", "e1", "again") == "e1"
    assert await claims.holder(C, "Z1", "e2") == "e1" and await claims.holder(C, "Z1", "e1") is None
    await store.record([], entity=EntityUpdate(C, "e3", "Z3", "h", 1, "active", "CT-3"))
    assert await claims.claim(C, "Z3", "e4", "email") == "e3" and await claims.holder(C, "Z3", "e4") == "e3"


async def test_records_unlinked_by_hand_are_refused(store: MemoryStore, db: MemoryDatabase) -> None:
    db.adoption_refused[(ORG, "customer", "e1")] = {"Z1": True}
    assert await store.claims.refused(C, "e1") == frozenset({"Z1"})
    assert await store.claims.refused(C, "e2") == frozenset()


async def test_each_waiting_child_is_handed_out_once(store: MemoryStore) -> None:
    await store.await_parent(EntityType.INVOICE, "i1", C, "p1")
    await store.await_parent(EntityType.INVOICE, "i2", C, "p0")
    await store.await_parent(EntityType.INVOICE, "i2", C, "p1")  # the newest parent replaces the older
    first, second = await asyncio.gather(store.take_waiting(C, "p1"), store.take_waiting(C, "p1"))
    assert sorted(first + second) == [(EntityType.INVOICE, "i1"), (EntityType.INVOICE, "i2")]
    assert not first or not second
    assert await store.take_waiting(C, "p0") == []


async def test_follow_up_positions_and_items(store: MemoryStore) -> None:
    assert [await store.next_follow_up() for _ in range(3)] == [1, 2, 3]
    await store.remember_item("code", "SKU", "I1")
    assert await store.item_id("code", "SKU") == "I1"
    await store.forget_item("code", "SKU")
    assert await store.item_id("code", "SKU") is None


async def test_write_backs_merge_and_apply_as_an_echoed_update(
    store: MemoryStore, db: MemoryDatabase, broker: FakeBroker
) -> None:
    cid = customer(db.source, notes=LONG)
    await store.record([outcome(1)], write_back=WriteBack(C, cid, "Z1", "synced", called=True))
    await store.record([outcome(2)], write_back=WriteBack(C, cid, None, "failed", called=False))
    queued = db.pending_write_backs[("customer", cid)]
    assert (queued["zoho_id"], queued["sync_status"], queued["called"]) == ("Z1", "failed", True)
    assert await store.write_backs.apply_pending() == WriteBackPass(1, 0, 0)
    row = db.source.row("customers", cid)
    assert row is not None and (row["zoho_billing_customer_id"], row["zoho_sync_status"]) == ("Z1", "failed")
    assert row["zoho_last_synced_at"] is not None and db.pending_write_backs == {}
    events = broker.events()
    assert events[-1].op is Op.UPDATE and events[-1].unavailable == {"notes"}
    assert events[-1].row["zoho_billing_customer_id"] == "Z1"  # type: ignore[index]


async def test_only_the_live_organisation_writes_back(db: MemoryDatabase) -> None:
    async with MemoryStore(db, writes_back=False, pauses=False) as store:
        await store.record([outcome(1)], write_back=WriteBack(C, "e1", "Z1", "synced"))
    assert db.pending_write_backs == {} and len(db.sync_log) == 1


async def test_a_refused_write_back_waits_longer_each_time(store: MemoryStore, db: MemoryDatabase) -> None:
    cid = customer(db.source)
    db.source.refusing[cid] = "CheckViolation: status"
    await store.record([outcome(1)], write_back=WriteBack(C, cid, "Z1", "synced"))
    assert await store.write_backs.apply_pending() == WriteBackPass(0, 0, 1)
    queued = db.pending_write_backs[("customer", cid)]
    first_pause = queued["retry_after"] - queued["queued_at"]
    assert queued["refused"] == "CheckViolation: status" and 29 < first_pause <= 30.5
    assert await store.write_backs.apply_pending() == WriteBackPass(0, 0, 0)  # not due yet
    queued["retry_after"] = 0.0
    assert await store.write_backs.apply_pending() == WriteBackPass(0, 0, 1)
    assert 59 < queued["retry_after"] - queued["queued_at"] <= 61 and queued["refusals"] == 2
    del db.source.refusing[cid]
    await store.record([outcome(2)], write_back=WriteBack(C, cid, None, "synced"))  # new values: at once
    requeued = db.pending_write_backs[("customer", cid)]
    assert (requeued["refused"], requeued["refusals"], requeued["retry_after"]) == (None, 0, None)
    assert await store.write_backs.apply_pending() == WriteBackPass(1, 0, 0)


async def test_a_held_source_row_stays_queued(store: MemoryStore, db: MemoryDatabase) -> None:
    cid = customer(db.source)
    db.source.holding[cid] = True
    await store.record([outcome(1)], write_back=WriteBack(C, cid, "Z1", "synced"))
    assert await store.write_backs.apply_pending() == WriteBackPass(0, 1, 0)
    assert db.pending_write_backs[("customer", cid)]["attempts"] == 1
    db.source.holding[cid] = False
    assert await store.write_backs.apply_pending() == WriteBackPass(1, 0, 0)


async def test_a_write_back_to_a_row_that_is_gone_is_dropped(store: MemoryStore, db: MemoryDatabase) -> None:
    await store.record([outcome(1)], write_back=WriteBack(C, "not-a-uuid", "Z1", "synced"))
    assert await store.write_backs.apply_pending() == WriteBackPass(1, 0, 0)
    assert db.pending_write_backs == {}


async def test_a_recorded_write_back_is_applied_in_the_background(db: MemoryDatabase) -> None:
    cid = customer(db.source)
    async with MemoryStore(db) as store:  # the service's pauses: applied ~50 ms after the commit
        await store.record([outcome(1)], write_back=WriteBack(C, cid, "Z1", "synced"), at_once=True)
        assert db.pending_write_backs
        await asyncio.sleep(0.2)
        assert db.pending_write_backs == {}
    assert db.source.row("customers", cid)["zoho_sync_status"] == "synced"  # type: ignore[index]


@pytest.mark.parametrize(
    ("real", "memory"),
    [
        (SyncStore, MemoryStore),
        (AdoptionClaims, MemoryClaims),
        (WriteBackQueue, MemoryWriteBacks),
        (SourceReader, MemorySourceReader),
    ],
)
def test_the_memory_store_offers_every_method_of_the_real_one(real: type, memory: type) -> None:
    def methods(cls: type) -> dict[str, list[tuple[str, Any]]]:
        return {
            name: [(p.name, p.kind) for p in inspect.signature(fn).parameters.values()]
            for name, fn in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_") or name in ("__aenter__", "__aexit__")
        }

    wanted = {name: params for name, params in methods(real).items() if name != "__init__"}
    offered = methods(memory)
    assert {name: offered.get(name) for name in wanted} == wanted


async def test_the_recorder_retries_through_an_outage(store: MemoryStore, db: MemoryDatabase) -> None:
    recorder = OutcomeRecorder(store, "g", Metrics())
    db.unavailable_until = asyncio.get_running_loop().time() + 0.3  # the recorder retries after 0.2, 0.6 s
    rows = [recorder.position_row("zoho-cdc.public.customers", 0, 7, C, "e1", SyncOutcome.SYNCED)]
    await recorder.record(Outcome(rows=rows, entity=update(7)))
    assert [r.offset for r in db.sync_log] == [7]
    assert asyncio.get_running_loop().time() >= db.unavailable_until


async def test_closing_applies_what_is_queued(db: MemoryDatabase) -> None:
    cid = customer(db.source)
    store = MemoryStore(db, pauses=False)
    with pytest.raises(PoolClosed):  # not open yet
        await store.ping()
    await store.open()
    await store.record([outcome(1)], write_back=WriteBack(C, cid, "Z1", "synced"))
    await store.close()
    assert db.pending_write_backs == {} and db.source.row("customers", cid)["zoho_sync_status"] == "synced"  # type: ignore[index]
    with pytest.raises(PoolClosed):
        await store.ping()
