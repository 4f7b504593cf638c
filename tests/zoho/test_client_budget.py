"""The budget: per-window pacing agrees with the simulator's window, AIMD absorbs 429s, and the
daily budget survives restarts and pauses work when spent."""

from __future__ import annotations

import asyncio
import datetime as dt

from connectors.zoho import PgDailyBudgetStore, ZohoClient
from connectors.zoho.limits.aimd import CEILING_RECOVERY_PER_WINDOW
from connectors.zoho_sim import SimLimits
from consumer.migrations import migrate
from consumer.service.zoho_config import zoho_config
from tests.fixtures_zoho import settings_for
from tests.zoho.conftest import customer_payload

WINDOW = SimLimits(per_window=20, window_seconds=1.0, daily=100_000, concurrency=5)


async def _calls(client: ZohoClient, count: int, tasks: int = 8) -> int:
    customer_id = (await client.create_customer(customer_payload("rate")))["customer_id"]
    done = 1
    queue = list(range(count - 1))

    async def worker() -> None:
        nonlocal done
        while queue:
            queue.pop()
            await client.get_customer(customer_id)
            done += 1

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(tasks))), 120)
    return done


async def test_client_at_the_simulator_rate_never_sees_a_429_and_uses_the_whole_window(
    zoho_sim_factory, database_url
):
    sim = zoho_sim_factory(limits=WINDOW)
    settings = settings_for(sim, database_url, zoho_rate_guard_seconds=0.1)
    async with ZohoClient(zoho_config(settings)) as client:
        assert await _calls(client, 60) == 60
    stats = sim.stats()
    assert stats["http_429"] == 0
    assert stats["max_in_window"] == 20  # the budget was used to the last call


async def test_client_rate_set_too_high_absorbs_429s_and_settles_under_the_limit(
    zoho_sim_factory, database_url
):
    sim = zoho_sim_factory(limits=WINDOW)
    settings = settings_for(sim, database_url, zoho_rate_per_minute=60, zoho_rate_guard_seconds=0.1)
    async with ZohoClient(zoho_config(settings)) as client:
        assert await _calls(client, 100) == 100
        assert client.metrics.http_429 > 0
        # held near the server's 20: between refusals the learned ceiling fades back by a share of the
        # configured rate per clean window (so a transient burst of 429s cannot cut the rate for good), and
        # the next refusal teaches it again; the run may end up to one window's fade above 20
        assert client.current_rate_per_window <= 20 + CEILING_RECOVERY_PER_WINDOW * 60
    assert sim.stats()["http_429"] == client.metrics.http_429


class FakeClock:
    def __init__(self) -> None:
        self.now = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


async def test_daily_budget_survives_a_restart_and_pauses_work_when_spent(zoho_sim, database_url):
    migrate(database_url)
    clock = FakeClock()
    config = zoho_config(settings_for(zoho_sim, database_url, zoho_daily_limit=5))

    def new_client() -> ZohoClient:
        return ZohoClient(config, budget_store=PgDailyBudgetStore(database_url, clock=clock))

    async with new_client() as first:
        customer_id = (await first.create_customer(customer_payload(1)))["customer_id"]
        await first.get_customer(customer_id)
        await first.get_customer(customer_id)
    async with new_client() as second:
        assert (await second.budget_state())["calls_today"] == 3
        await second.get_customer(customer_id)
        await second.get_customer(customer_id)
        state = await second.budget_state()
        assert state["calls_today"] == 5 and state["paused_until"] == "2025-03-02T00:00:00+00:00"
        sent_before = zoho_sim.stats()["requests"]
        waiting = asyncio.create_task(second.get_customer(customer_id))
        await asyncio.sleep(0.3)
        assert not waiting.done() and zoho_sim.stats()["requests"] == sent_before
        clock.now += dt.timedelta(days=1)
        assert (await asyncio.wait_for(waiting, 10))["customer_id"] == customer_id
        assert (await second.budget_state())["calls_today"] == 1


async def test_zoho_daily_limit_code_45_pauses_until_the_next_day(zoho_sim, database_url):
    migrate(database_url)
    clock = FakeClock()
    zoho_sim.set_limits(daily=2)
    config = zoho_config(settings_for(zoho_sim, database_url, zoho_daily_limit=100))
    async with ZohoClient(config, budget_store=PgDailyBudgetStore(database_url, clock=clock)) as client:
        customer_id = (await client.create_customer(customer_payload(1)))["customer_id"]
        await client.get_customer(customer_id)
        waiting = asyncio.create_task(client.get_customer(customer_id))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        assert (await client.budget_state())["paused_until"] is not None
        zoho_sim.set_limits(daily=100)  # the simulator's day has turned too
        clock.now += dt.timedelta(days=1)
        assert (await asyncio.wait_for(waiting, 10))["customer_id"] == customer_id


async def test_the_daily_budget_is_reserved_in_blocks_and_the_unsent_part_handed_back(zoho_sim, database_url):
    migrate(database_url)
    clock = FakeClock()
    config = zoho_config(settings_for(zoho_sim, database_url, zoho_daily_limit=1000))
    async with ZohoClient(config, budget_store=PgDailyBudgetStore(database_url, clock=clock)) as client:
        customer_id = (await client.create_customer(customer_payload(1)))["customer_id"]
        for _ in range(24):
            await client.get_customer(customer_id)
        assert client.daily.block_size == 10
        assert client.daily.reservations == 3  # 25 calls: three round trips, not 25
        assert (await client.budget_state())["calls_today"] == 25
        store = PgDailyBudgetStore(database_url)
        assert (await store.spent(config.organization_id, clock.now.date()))[0] == 30  # held: 5
    assert (await store.spent(config.organization_id, clock.now.date()))[0] == 25  # handed back at close
    await store.aclose()
