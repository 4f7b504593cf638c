"""A revoked partition's work stops before its Zoho call: two consumers in one group, a long 429 pause.

The first consumer's work is all waiting out a 429 pause when a second consumer joins the group and
takes partitions from it. Had the first one sent its waiting calls after the revoke, the simulator
would see a second create for customers the new owner already made (a display-name clash, then a
duplicate); counted on the simulator, every customer is created exactly once.
"""

from __future__ import annotations

import asyncio

from benchmarks.infra import create_topics
from connectors.zoho_sim import SimLimits
from tests.consumer.harness import LiveSync, SimView, settings_for, wait_for
from tests.fixtures_zoho import TEST_DAILY_LIMIT
from tests.fixtures_zoho import settings_for as zoho_settings_for
from tests.support import Source

PAUSE_SECONDS = 20.0  # the simulator's Retry-After: the rebalance (a few seconds on Tansu) lands inside it


def _creates(handle) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return dict(handle.stats()["by_endpoint"].get("POST /customers", {}))


async def test_work_waiting_on_a_429_pause_is_not_sent_after_its_partition_was_revoked(
    zoho_sim_factory, database_url, kafka_bootstrap, topic_prefix
):
    handle = zoho_sim_factory(
        limits=SimLimits(
            per_window=100, window_seconds=1.0, daily=TEST_DAILY_LIMIT, retry_after=PAUSE_SECONDS
        )
    )
    settings = settings_for(zoho_settings_for(handle, database_url), kafka_bootstrap, topic_prefix)
    source = Source(database_url, kafka_bootstrap, topic_prefix)
    # Four partitions, so the joining consumer surely takes some of the first one's waiting work.
    await create_topics(kafka_bootstrap, [f"{topic_prefix}.public.customers"], partitions=4)
    customers = [source.insert_customer(300 + n) for n in range(12)]
    await source.flush()
    handle.set_faults(burst_429=1)  # the first call answers 429: the first consumer pauses all its calls

    async with LiveSync(settings) as first:
        await wait_for(lambda: handle.stats()["http_429"] >= 1, timeout=30)
        async with LiveSync(settings):  # joins the group: partitions move while the first one waits
            await wait_for(
                lambda: (
                    source.query("SELECT count(*) FROM customers WHERE zoho_billing_customer_id IS NOT NULL")[
                        0
                    ][0]
                    == len(customers)
                ),
                timeout=90,
            )
            await asyncio.sleep(PAUSE_SECONDS + 2)  # past the pause: a withdrawn call would go out now
        assert first.runner is not None and first.runner.engine.fatal is None

    creates = _creates(handle)
    accepted = {status: n for status, n in creates.items() if status != "429"}
    assert accepted == {"201": len(customers)}, creates
    zoho = SimView(handle)
    assert len(zoho.customers()) == len(customers)
    assert zoho.duplicates() == {}
