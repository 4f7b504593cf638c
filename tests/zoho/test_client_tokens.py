"""OAuth: one token request per lifetime under concurrency, refusals absorbed, revocation is fatal."""

from __future__ import annotations

import asyncio
import time

import pytest

from connectors.zoho import PgTokenStore, RefreshTokenRevoked, ZohoClient
from connectors.zoho_sim import SimFaults, SimLimits
from consumer.migrations import migrate
from consumer.service.zoho_config import zoho_config
from tests.fixtures_zoho import settings_for
from tests.zoho.conftest import customer_payload

FAST = SimLimits(per_window=100_000, window_seconds=1.0, daily=100_000, concurrency=10)


async def _hammer(client: ZohoClient, customer_id: str, calls: int, tasks: int) -> int:
    done = 0

    async def worker(share: int) -> None:
        nonlocal done
        for _ in range(share):
            await client.get_customer(customer_id)
            done += 1

    shares = [calls // tasks + (1 if i < calls % tasks else 0) for i in range(tasks)]
    await asyncio.wait_for(asyncio.gather(*(worker(s) for s in shares)), 120)
    return done


async def test_thirty_tasks_share_one_token_request_per_lifetime(zoho_sim_factory, database_url):
    # the refresh limit is raised so a slow machine (more lifetimes) measures pacing, not Zoho's cap
    sim = zoho_sim_factory(
        limits=FAST, token_lifetime=1.0, token_refresh_limit=1000, faults=SimFaults(latency=0.02)
    )
    settings = settings_for(sim, database_url, zoho_token_refresh_margin=0.3)
    async with ZohoClient(zoho_config(settings)) as client:
        customer_id = (await client.create_customer(customer_payload(1)))["customer_id"]
        started = time.monotonic()
        assert await _hammer(client, customer_id, 1000, 30) == 1000
        elapsed = time.monotonic() - started
    stats = sim.stats()
    assert stats["http_401"] == 0
    assert stats["token_requests"] >= 2  # the run outlived the first token
    # refreshed only when within the margin of expiry: at most one request per (lifetime - margin)
    assert stats["token_requests"] <= 2 + elapsed / (1.0 - 0.3)
    assert stats["token_requests"] == client.metrics.token_requests


async def test_token_refusal_window_delays_calls_but_loses_none(zoho_sim_factory, database_url):
    sim = zoho_sim_factory(
        limits=FAST, token_lifetime=1.0, token_refresh_limit=100, faults=SimFaults(latency=0.01)
    )
    settings = settings_for(sim, database_url, zoho_token_refresh_margin=0.3)
    async with ZohoClient(zoho_config(settings)) as client:
        customer_id = (await client.create_customer(customer_payload(1)))["customer_id"]
        sim.set_faults(token_refusal_seconds=1.5)
        assert await _hammer(client, customer_id, 300, 20) == 300
    stats = sim.stats()
    assert stats["token_refusals"] >= 1
    assert stats["token_refusals"] <= 10  # backed off with jitter, not a hot loop


async def test_rejected_access_token_is_refreshed_once_and_the_call_retried(zoho_sim, zoho_settings):
    async with ZohoClient(zoho_config(zoho_settings)) as client:
        customer_id = (await client.create_customer(customer_payload(1)))["customer_id"]
        zoho_sim.expire_access_tokens()
        with client.tracking() as tracker:
            await asyncio.gather(*(client.get_customer(customer_id) for _ in range(5)))
        assert 401 in [c.http_status for c in tracker.calls]
    assert zoho_sim.stats()["token_requests"] == 2


async def test_revoked_refresh_token_raises_refresh_token_revoked(zoho_sim, zoho_settings):
    zoho_sim.revoke_refresh_token()
    async with ZohoClient(zoho_config(zoho_settings)) as client:
        with pytest.raises(RefreshTokenRevoked) as revoked:
            await client.get_customer("1")
    assert "ZOHO_REFRESH_TOKEN" in str(revoked.value)


async def test_a_restart_within_the_lifetime_reuses_the_persisted_token(
    zoho_sim, zoho_settings, database_url
):
    migrate(database_url)
    for _ in range(2):
        async with ZohoClient(zoho_config(zoho_settings), token_store=PgTokenStore(database_url)) as client:
            await client.create_customer(customer_payload(_))
    assert zoho_sim.stats()["token_requests"] == 1


async def test_a_process_refused_a_token_uses_the_one_another_process_got_meanwhile(zoho_sim, database_url):
    """Found by the simulation (seed 456): a process refused at start read the shared token store only
    once, so it kept asking the accounts server every back-off while the other processes held a valid
    token, and its requests (refused ones count too) kept Zoho's 10-per-10-minutes block alive for ever.
    After each back-off it now looks at the store first."""
    migrate(database_url)
    settings = settings_for(
        zoho_sim, database_url, zoho_token_backoff_seconds=1.0, zoho_token_backoff_max_seconds=1.0
    )
    config = zoho_config(settings)
    async with (
        ZohoClient(config, token_store=PgTokenStore(database_url)) as refused,
        ZohoClient(config, token_store=PgTokenStore(database_url)) as other,
    ):
        zoho_sim.set_faults(token_refusal_seconds=0.3)
        waiting = asyncio.create_task(refused.find_customer("CT-1"))  # refused, then backs off 0.5-1 s
        await asyncio.sleep(0.4)  # the refusal spell is over
        await other.find_customer("CT-1")  # gets a token and stores it
        await asyncio.wait_for(waiting, 10)
    stats = zoho_sim.stats()
    assert stats["token_refusals"] == 1
    assert stats["token_requests"] == 2  # the refused request and the other process's
    assert refused.metrics.token_requests == 1
