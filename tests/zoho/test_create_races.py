"""Two processes creating one entity at once make one Zoho record (found by the simulation, issue 23).

An invoice's process syncs the invoice's customer first while the customer's own process creates it
(`make simulate SEED=1909`): each looked Zoho up before the other's create landed, and both created it.
Two appliers over one database play the two processes (real client, real simulator, real PostgreSQL
store); the other process's create runs right after this one's lookup, when its create is about to go out.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from connectors.zoho import ZohoClient
from connectors.zoho_sim import SimHandle
from consumer.migrations import migrate
from consumer.model.events import EntityType
from consumer.model.plan import Action, Plan
from consumer.pipeline.durability.rows import EntityUpdate
from consumer.pipeline.durability.store import SyncStore
from consumer.pipeline.effects.apply import ApplyOptions, SyncedMeanwhile, ZohoApplier
from consumer.service.zoho_config import zoho_config
from tests.fixtures_zoho import settings_for
from tests.zoho.conftest import customer_payload

C = EntityType.CUSTOMER
ROW = {"id": "c1", "account_number": "CT-1", "email": "c1@example.com"}
PLAN = Plan(Action.CREATE_CUSTOMER, customer_payload(1), "h", "test", status="active")
# The other process sends the row as it read it a moment before (a name since changed: no name clash
# that would make Zoho refuse the second create).
EARLIER = Plan(
    Action.CREATE_CUSTOMER,
    customer_payload(1, display_name="Customer 1 (old)"),
    "h0",
    "test",
    status="active",
)


class Meanwhile:
    """A process's store whose first intent write (the create about to be sent) lets another process act
    first: what happens between this process's lookup and its create."""

    def __init__(self, store: SyncStore, other: Callable[[], Awaitable[None]]) -> None:
        self._store = store
        self._other: Callable[[], Awaitable[None]] | None = other

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def _first(self) -> None:
        other, self._other = self._other, None
        if other is not None:  # another process: none of this one's context (its claim, its lease)
            await asyncio.create_task(other(), context=contextvars.Context())

    async def claim_create(self, *args: Any, **kw: Any) -> Any:
        await self._first()
        return await self._store.claim_create(*args, **kw)

    async def write_intent(self, *args: Any) -> None:
        await self._first()
        await self._store.write_intent(*args)


@pytest.fixture
async def two_processes(zoho_sim: SimHandle, database_url: str) -> AsyncIterator[tuple[Any, ...]]:
    migrate(database_url)
    config = zoho_config(settings_for(zoho_sim, database_url))
    async with SyncStore(database_url) as one, SyncStore(database_url) as two:
        async with ZohoClient(config) as client_one, ZohoClient(config) as client_two:
            yield one, client_one, two, client_two


def _customers_posted(sim: SimHandle) -> int:
    return sum(n for call, n in sim.stats()["calls"].items() if call.startswith("POST /customers "))


def _customers_put(sim: SimHandle) -> int:
    return sum(n for call, n in sim.stats()["calls"].items() if call.startswith("PUT /customers/"))


async def test_a_create_planned_before_another_process_created_and_recorded_the_entity_sends_nothing_over_it(
    two_processes, zoho_sim
):
    """The map holds the other process's state (simulation seeds 428, 456, 888, 1782): a backfill's older
    event adopting the record the live sync made from a newer one put the older content back in Zoho while
    the map kept the newer hash, and nothing ever corrected it. Nothing is sent: the policy decides the
    change again against that map row (stale, unchanged, or an update)."""
    one, client_one, two, client_two = two_processes
    first = ZohoApplier(client_one, one, ApplyOptions())

    async def other_process_syncs_it() -> None:
        applied = await first.apply(C, "c1", EARLIER, ROW, None)
        update = EntityUpdate(C, "c1", applied.zoho_id, "h0", 2, "active", "CT-1")
        await one.record([], entity=update, clear_intent=(C, "c1"))

    second = ZohoApplier(client_two, Meanwhile(two, other_process_syncs_it), ApplyOptions())
    with pytest.raises(SyncedMeanwhile):
        await second.apply(C, "c1", PLAN, ROW, None, intent_left=False)

    [customer] = zoho_sim.state()["customers"]
    assert customer["display_name"] == "Customer 1 (old)"  # the state the map says Zoho holds
    assert (_customers_posted(zoho_sim), _customers_put(zoho_sim)) == (1, 0)


async def test_a_create_sent_while_another_process_has_its_create_under_way_adopts_what_it_made(
    two_processes, zoho_sim
):
    one, client_one, two, client_two = two_processes
    first = ZohoApplier(client_one, one, ApplyOptions())

    async def other_process_creates_it() -> None:  # sent, its outcome not recorded yet: its intent stays
        await first.apply(C, "c1", EARLIER, ROW, None)

    second = ZohoApplier(client_two, Meanwhile(two, other_process_creates_it), ApplyOptions())
    second.RACED_PAUSE_SECONDS = 0.05  # the other's create has landed already
    applied = await second.apply(C, "c1", PLAN, ROW, None, intent_left=False)

    [customer] = zoho_sim.state()["customers"]
    assert applied.zoho_id == customer["customer_id"]
    assert customer["display_name"] == "Customer 1"  # brought up to this process's newer row
    assert _customers_posted(zoho_sim) == 1


async def test_an_intent_left_by_a_dead_process_whose_create_never_landed_is_taken_over(
    two_processes, zoho_sim
):
    one, _, two, client_two = two_processes
    await one.write_intent(C, "c1", "create", "CT-1")  # then the process died before sending

    applied = await ZohoApplier(client_two, two, ApplyOptions()).apply(C, "c1", PLAN, ROW, None)

    [customer] = zoho_sim.state()["customers"]
    assert applied.zoho_id == customer["customer_id"]
    assert await two.intent(C, "c1") is not None  # ours now, cleared when the outcome is recorded


async def test_two_processes_adopting_one_record_made_by_others_leave_it_in_the_newer_state(
    two_processes, zoho_sim
):
    """Simulation seed 523: a backfill's older event and the live sync's newer one both found the record
    an older integration made, and both brought it up to their payload; the older PUT landed last and
    the map kept the newer hash. An adoption is sent under the create's claim: the second process finds
    the record synced meanwhile and sends nothing over it."""
    one, client_one, two, client_two = two_processes
    [made] = zoho_sim.load_records_of_others(customers=[_made_by_others()])["customers"]

    async def live_sync_adopts_it_from_the_newer_row() -> None:
        applied = await ZohoApplier(client_one, one, ApplyOptions()).apply(C, "c1", PLAN, ROW, None)
        update = EntityUpdate(C, "c1", applied.zoho_id, "h", 5, "active", "CT-1")
        await one.record([], entity=update, clear_intent=(C, "c1"))

    backfill = ZohoApplier(client_two, Meanwhile(two, live_sync_adopts_it_from_the_newer_row), ApplyOptions())
    backfill.RACED_PAUSE_SECONDS = 0.05
    with pytest.raises(SyncedMeanwhile):
        await backfill.apply(C, "c1", EARLIER, ROW, None, intent_left=False)

    [customer] = zoho_sim.state()["customers"]
    assert customer["customer_id"] == made
    assert customer["display_name"] == "Customer 1"  # the newer row's, which the map says Zoho holds
    assert (_customers_posted(zoho_sim), _customers_put(zoho_sim)) == (0, 1)


def _made_by_others() -> dict[str, Any]:
    return {**customer_payload(1, display_name="Customer 1 (by hand)"), "customer_id": "4600000000001"}


class RenewalMeanwhile(Meanwhile):
    """A process's store whose second claim of one create (its renewal before a retry) lets another
    process act first."""

    def __init__(self, store: SyncStore, other: Callable[[], Awaitable[None]]) -> None:
        super().__init__(store, other)
        self.claims_made = 0

    async def claim_create(self, *args: Any, **kw: Any) -> Any:
        self.claims_made += 1
        if self.claims_made == 1:
            self.before_first_claim()
        if self.claims_made == 2:
            await self._first()
        return await self._store.claim_create(*args, **kw)

    def before_first_claim(self) -> None: ...


async def test_a_create_retried_after_another_process_took_its_claim_over_sends_nothing_more(
    two_processes, zoho_sim
):
    """Simulation seed 7015: a backfill's create was refused (not applied) and retried a minute later;
    the live sync had meanwhile seen the backfill's intent unchanged for a call deadline, taken it over as
    a dead process's and created the customer, and the backfill's retry posted a second one. The claim is
    renewed before every write of a create: the retry finds it taken and adopts what the other made."""
    one, client_one, two, client_two = two_processes

    async def other_process_takes_the_claim_over_and_creates() -> None:
        left = await one.intent(C, "c1")
        assert left is not None  # the first attempt's claim, its POST answered 429 (not applied)
        applied = await ZohoApplier(client_two, two, ApplyOptions()).apply(C, "c1", EARLIER, ROW, None)
        update = EntityUpdate(C, "c1", applied.zoho_id, "h0", 2, "active", "CT-1")
        await two.record([], entity=update, clear_intent=(C, "c1"))

    store = RenewalMeanwhile(one, other_process_takes_the_claim_over_and_creates)
    store.before_first_claim = lambda: zoho_sim.set_faults(burst_429=1)  # that POST: 429, retried
    first = ZohoApplier(client_one, store, ApplyOptions())
    first.RACED_PAUSE_SECONDS = 0.05
    with pytest.raises(SyncedMeanwhile):
        await first.apply(C, "c1", PLAN, ROW, None, intent_left=False)

    assert store.claims_made == 2
    assert len(zoho_sim.state()["customers"]) == 1
    assert _customers_posted(zoho_sim) == 2  # the 429'd one and the other process's create
