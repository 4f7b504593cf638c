"""Two processes writing one entity at once leave Zoho in the newest state (found by the simulation).

A backfill beside the live sync updated an entity from an older event planned against the same map row
as the live sync's newer one; the older PUT landed last and the map kept the newer hash, so Zoho stayed
rolled back (`make simulate SEED=196`: sent 4 s after the newer one; `SEED=1079`: both at one instant).
A write now goes out only while the map row is the version it was planned from and no other process's
write of the entity is in flight (`consumer.pipeline.effects.write_lease`). Two appliers over one
database play the two processes (real clients, real simulator, real PostgreSQL store).
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
from consumer.model.call_errors import Refused, SyncedMeanwhile
from consumer.model.events import EntityType
from consumer.model.plan import Action, Plan
from consumer.pipeline.durability.rows import EntityUpdate
from consumer.pipeline.durability.store import SyncStore
from consumer.pipeline.effects.apply import Applied, ApplyOptions, ZohoApplier
from consumer.service.zoho_config import zoho_config
from tests.fixtures_zoho import settings_for
from tests.zoho.conftest import customer_payload

C = EntityType.CUSTOMER
ROW = {"id": "c1", "account_number": "CT-1", "email": "c1@example.com"}
CREATE = Plan(Action.CREATE_CUSTOMER, customer_payload(1), "h1", "test", status="active")
OLDER = Plan(Action.UPDATE_CUSTOMER, customer_payload(1, display_name="Older"), "h2", "t", status="active")
NEWER = Plan(Action.UPDATE_CUSTOMER, customer_payload(1, display_name="Newer"), "h3", "t", status="active")


class LeasesMeanwhile:
    """A process's write leases whose first claim (its write about to go out, its slot held) lets another
    process act first."""

    def __init__(self, leases: Any, other: Callable[[], Awaitable[None]]) -> None:
        self._leases = leases
        self._other: Callable[[], Awaitable[None]] | None = other
        self.claims = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._leases, name)

    async def claim(self, *args: Any, **kw: Any) -> str | None:
        self.claims += 1
        other, self._other = self._other, None
        if other is not None:  # another process: none of this one's context (its lease)
            await asyncio.create_task(other(), context=contextvars.Context())
        return await self._leases.claim(*args, **kw)  # type: ignore[no-any-return]


class Process:
    """A store whose `leases` are `LeasesMeanwhile`."""

    def __init__(self, store: SyncStore, other: Callable[[], Awaitable[None]]) -> None:
        self._store = store
        self.leases = LeasesMeanwhile(store.leases, other)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.fixture
async def two_processes(zoho_sim: SimHandle, database_url: str) -> AsyncIterator[tuple[Any, ...]]:
    """Two processes' stores and clients, the customer created and recorded (map version 0)."""
    migrate(database_url)
    config = zoho_config(settings_for(zoho_sim, database_url))
    async with SyncStore(database_url) as one, SyncStore(database_url) as two:
        async with ZohoClient(config) as client_one, ZohoClient(config) as client_two:
            created = await ZohoApplier(client_one, one, ApplyOptions()).apply(C, "c1", CREATE, ROW, None)
            await one.record([], entity=_update(created, "h1", 1), clear_intent=(C, "c1"))
            yield one, client_one, two, client_two, created.zoho_id


def _update(applied: Applied, payload_hash: str, lsn: int) -> EntityUpdate:
    return EntityUpdate(C, "c1", applied.zoho_id, payload_hash, lsn, "active", "CT-1", lease=applied.lease)


def _customers_put(sim: SimHandle) -> int:
    return sum(n for call, n in sim.stats()["calls"].items() if call.startswith("PUT /customers/"))


def _name(sim: SimHandle) -> str:
    [customer] = sim.state()["customers"]
    return str(customer["display_name"])


async def _version(store: SyncStore) -> int:
    state = await store.entity_state(C, "c1")
    assert state is not None and state.version is not None
    return state.version


async def test_a_write_planned_before_another_process_synced_the_entity_sends_nothing(
    two_processes, zoho_sim
):
    """Seed 196: the older write waited for its slot while the newer one was sent and recorded."""
    one, client_one, two, client_two, zoho_id = two_processes
    planned_from = await _version(two)

    async def live_sync_writes_the_newer_state() -> None:
        applied = await ZohoApplier(client_one, one, ApplyOptions()).apply(
            C, "c1", NEWER, ROW, zoho_id, version=planned_from
        )
        await one.record([], entity=_update(applied, "h3", 3))

    backfill = ZohoApplier(client_two, Process(two, live_sync_writes_the_newer_state), ApplyOptions())
    with pytest.raises(SyncedMeanwhile):
        await backfill.apply(C, "c1", OLDER, ROW, zoho_id, version=planned_from)

    assert _name(zoho_sim) == "Newer"
    assert _customers_put(zoho_sim) == 1
    assert await one.leases.held(C, "c1") == (planned_from + 1, None)  # the outcome released its lease


async def test_a_write_waits_while_another_process_has_one_in_flight_then_decides_again(
    two_processes, zoho_sim
):
    """Seed 1079: both writes were sent at one instant and the older landed last. The second waits for
    the first's outcome, then finds the map row moved on."""
    one, client_one, two, client_two, zoho_id = two_processes
    planned_from = await _version(two)

    async def live_sync_sends_the_newer_state() -> None:  # sent; its outcome is recorded a moment later
        applied = await ZohoApplier(client_one, one, ApplyOptions()).apply(
            C, "c1", NEWER, ROW, zoho_id, version=planned_from
        )
        asyncio.get_running_loop().call_later(
            0.05, lambda: asyncio.ensure_future(one.record([], entity=_update(applied, "h3", 3)))
        )

    backfill = ZohoApplier(client_two, Process(two, live_sync_sends_the_newer_state), ApplyOptions())
    backfill.RACED_PAUSE_SECONDS = 2.0  # well past the other outcome write, even on a loaded machine
    with pytest.raises(SyncedMeanwhile):
        await backfill.apply(C, "c1", OLDER, ROW, zoho_id, version=planned_from)

    assert _name(zoho_sim) == "Newer"
    assert _customers_put(zoho_sim) == 1


async def test_a_lease_left_by_a_process_that_died_mid_write_is_taken_over_after_a_call_deadline(
    two_processes, zoho_sim
):
    one, client_one, two, client_two, zoho_id = two_processes
    planned_from = await _version(two)
    died = await ZohoApplier(client_one, one, ApplyOptions()).apply(
        C, "c1", OLDER, ROW, zoho_id, version=planned_from
    )  # sent; the process died before its outcome was written: its lease stays
    assert await one.leases.held(C, "c1") == (planned_from, died.lease)

    process = Process(two, lambda: asyncio.sleep(0))
    second = ZohoApplier(client_two, process, ApplyOptions())
    second.RACED_PAUSE_SECONDS = 0.05
    applied = await second.apply(C, "c1", NEWER, ROW, zoho_id, version=planned_from)
    await two.record([], entity=_update(applied, "h3", 3))

    assert process.leases.claims == 2  # refused while the lease was the dead one's, then taken over
    assert _name(zoho_sim) == "Newer"
    assert _customers_put(zoho_sim) == 2
    assert await two.leases.held(C, "c1") == (planned_from + 1, None)


async def test_a_refused_write_gives_its_lease_back(two_processes, zoho_sim):
    """No outcome write releases it: the next write of the entity must not wait a deadline for it."""
    one, client_one, _, _, zoho_id = two_processes
    planned_from = await _version(one)
    invalid = Plan(Action.UPDATE_CUSTOMER, customer_payload(1, email="not-an-email"), "h9", "t")
    with pytest.raises(Refused):
        await ZohoApplier(client_one, one, ApplyOptions()).apply(
            C, "c1", invalid, ROW, zoho_id, version=planned_from
        )
    assert _customers_put(zoho_sim) == 1  # it was sent, under the lease
    assert await one.leases.held(C, "c1") == (planned_from, None)
