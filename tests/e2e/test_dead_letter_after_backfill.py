"""A dead letter whose cause is fixed reaches Zoho after a backfill, through the real relay.

Issue 23 (j): a customer Zoho refuses is dead-lettered and its 'failed' write-back is streamed back by
Debezium; a `backfill --from-beginning` then replays the customer's topic. The replay must neither publish
the refused record to the dead-letter topic again nor leave the entity map judging the letter `stale`:
once the cause is fixed (here in Zoho's own rules), `dlq reprocess --all` sends the customer once.
"""

from __future__ import annotations

import asyncio

import pytest

from consumer.jobs.backfill import run_backfill
from consumer.jobs.reprocess import list_dead_letters, reprocess
from consumer.service.wiring import sync_session
from tests.consumer.harness import LiveSync, SimView, settings_for, wait_for
from tests.fixtures_zoho import settings_for as zoho_settings_for
from tests.support import sql_value as _one

pytestmark = pytest.mark.relay

QUIET_SECONDS = 5.0


async def test_a_fixed_dead_letter_is_sent_after_a_backfill_from_the_beginning_and_published_once(
    zoho_sim_factory, database_url, kafka_bootstrap, topic_prefix, relay_process
):
    sim = zoho_sim_factory(require_email=True)  # Zoho refuses a customer without an email
    relay_process(database_url, topic_prefix, kafka_bootstrap)
    settings = settings_for(zoho_settings_for(sim, database_url), kafka_bootstrap, topic_prefix)
    async with LiveSync(settings):
        customer = str(
            _one(database_url, "INSERT INTO customers (account_number) VALUES ('CT-NOMAIL') RETURNING id")
        )
        await wait_for(
            lambda: (
                _one(database_url, "SELECT zoho_sync_status FROM customers WHERE id = %s", customer)
                == "failed"
            ),
            timeout=60,
        )
        await asyncio.sleep(QUIET_SECONDS)  # the 'failed' write-back's echo is consumed too
    assert len(await list_dead_letters(kafka_bootstrap, settings.dlq_topic)) == 1

    async with sync_session(settings) as session:
        replayed = await run_backfill(session)  # `backfill --from-beginning`
    assert replayed.outcomes.get("synced", 0) == 0
    assert len(await list_dead_letters(kafka_bootstrap, settings.dlq_topic)) == 1  # not published again

    sim.set_config(require_email=False)  # the cause is fixed
    async with sync_session(settings) as session:
        again = await reprocess(session)
    assert again.outcomes == {"synced": 1}
    assert len(SimView(sim).customers()) == 1
    calls = sim.stats()["requests"]
    await wait_for(
        lambda: (
            _one(database_url, "SELECT zoho_sync_status FROM customers WHERE id = %s", customer) == "synced"
        ),
        timeout=30,
    )
    await asyncio.sleep(QUIET_SECONDS)
    assert sim.stats()["requests"] == calls
