"""When a create's durable intent (`before_send`) is written: before the call is sent, always; outside the
send slot when the call can go out at once (so a slow commit never holds one of Zoho's concurrent
permits); inside it when calls queue for the rate window (so a wait leaves no intent behind).

Real simulator over a real socket; the shared window on real PostgreSQL.
"""

from __future__ import annotations

import asyncio

from connectors.zoho import ZohoClient
from connectors.zoho_sim import SimLimits
from consumer.service.zoho_config import zoho_config
from tests.fixtures_zoho import settings_for
from tests.zoho.conftest import customer_payload


async def test_a_slow_intent_does_not_hold_the_only_permit_when_the_window_is_open(
    zoho_sim_factory, database_url
):
    limits = SimLimits(per_window=100, window_seconds=10.0, daily=100_000, concurrency=1)
    sim = zoho_sim_factory(limits=limits)
    settings = settings_for(sim, database_url)
    async with ZohoClient(zoho_config(settings)) as client:
        existing = (await client.create_customer(customer_payload("first")))["customer_id"]
        committing, commit = asyncio.Event(), asyncio.Event()
        requests_at_intent: list[int] = []

        async def slow_intent() -> None:
            requests_at_intent.append(sim.stats()["requests"])
            committing.set()
            await commit.wait()  # a commit that takes its time

        create = asyncio.create_task(client.create_customer(customer_payload("second"), slow_intent))
        await asyncio.wait_for(committing.wait(), 5)
        # the one permit is free while the intent commits: another call goes through meanwhile
        read = await asyncio.wait_for(client.get_customer(existing), 5)
        assert read["customer_id"] == existing
        assert not create.done()
        commit.set()
        created = await asyncio.wait_for(create, 5)
    assert created["customer_id"] != existing
    # the intent was durable before its POST was sent (the read above is the only request in between)
    assert sum(sim.stats()["by_endpoint"]["POST /customers"].values()) == 2
    assert requests_at_intent == [sim.stats()["requests"] - 2]


async def test_a_create_waiting_for_the_rate_window_writes_no_intent_until_it_holds_its_slot(
    zoho_sim_factory, database_url
):
    sim = zoho_sim_factory(limits=SimLimits(per_window=2, window_seconds=3.0, daily=100_000, concurrency=5))
    settings = settings_for(sim, database_url, zoho_rate_guard_seconds=0.2)
    async with ZohoClient(zoho_config(settings)) as client:
        first = (await client.create_customer(customer_payload("a")))["customer_id"]
        await client.get_customer(first)  # the window's two calls are spent
        intents: list[float] = []

        async def intent() -> None:
            intents.append(asyncio.get_running_loop().time())

        create = asyncio.create_task(client.create_customer(customer_payload("b"), intent))
        await asyncio.sleep(1.0)
        assert intents == [] and not create.done()  # queued for the window: no intent left behind yet
        await asyncio.wait_for(create, 10)
    assert len(intents) == 1
    assert sim.stats()["http_429"] == 0
