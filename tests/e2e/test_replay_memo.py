"""A replay of topics the live sync already brought into step is recorded from the replay memos: through
the real relay, so the newest record of each entity is the echo Debezium streams for its write-back.

PostgreSQL -> Debezium -> Kafka -> `zoho-cdc run`, then `backfill` over the same topics. Zoho calls
are counted by the simulator itself; `already_applied` counts the records the memo settled without
decoding or planning them.
"""

from __future__ import annotations

import psycopg
import pytest

from consumer.entities.registry import source_topics
from consumer.jobs.backfill import run_backfill
from consumer.service.wiring import sync_session
from tests.consumer.harness import LiveSync, SimView, end_offsets, settings_for, wait_for
from tests.e2e.test_echo_safety import _insert_customer, _insert_invoice, _quiet_and_unchanged, _writes
from tests.support import sql_exec as _exec
from tests.support import sql_value as _one

pytestmark = pytest.mark.relay

SYNCED = (
    "SELECT (SELECT count(*) FROM customers WHERE zoho_sync_status = 'synced')"
    " + (SELECT count(*) FROM customer_invoices WHERE zoho_sync_status = 'synced')"
)


async def _streamed_past(bootstrap: str, topics: tuple[str, ...], offsets: int) -> bool:
    return sum((await end_offsets(bootstrap, topics)).values()) > offsets


def _map_rows(url: str) -> list[tuple[object, ...]]:
    """Every entity-map row as the sync reads it, its memo aside."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT entity_type, entity_id, zoho_id, payload_hash, last_lsn, zoho_status, natural_key,"
            " source_row, rejected_digest, currency_code FROM zoho_entity_map ORDER BY entity_type, entity_id"
        ).fetchall()


def _zoho_id(url: str, customer: str) -> str:
    return str(_one(url, "SELECT zoho_billing_customer_id FROM customers WHERE id = %s", customer))


async def _replay(settings, group: str):  # type: ignore[no-untyped-def]
    async with sync_session(settings) as session:
        return await run_backfill(session, group_id=group)


async def test_a_replay_after_the_live_sync_is_known_by_its_memos_and_a_changed_mapping_is_planned_again(
    database_url, kafka_bootstrap, topic_prefix, zoho_settings, zoho_sim, relay_process
):
    relay_process(database_url, topic_prefix, kafka_bootstrap)
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    async with LiveSync(settings):
        customers = [
            _insert_customer(database_url, f"CT-MEMO-{n}", f"memo{n}@echo.example") for n in range(3)
        ]
        items = [{"description": "Consulting", "quantity": 2, "unit_price": "150.00"}]
        _insert_invoice(database_url, customers[0], "INV-MEMO-1", items, "ZAR")
        await wait_for(lambda: _one(database_url, SYNCED) == 4, timeout=90)
        live = await _quiet_and_unchanged(zoho_sim, _writes(zoho_sim))  # the echoes were applied too
    calls = zoho_sim.stats()["requests"]

    replay = await _replay(settings, f"{topic_prefix}-replay")

    assert zoho_sim.stats()["requests"] == calls
    assert replay.outcomes.get("unchanged") == 4
    assert replay.extra["already_applied"] == 4  # every entity's newest record, none decoded
    assert sum(replay.outcomes.values()) == replay.records

    # Map rows written before memos existed: the replay decodes and plans each record, then stores the
    # memo alone (the rows are otherwise unchanged), so the replay after it knows every record again.
    _exec(database_url, "UPDATE zoho_entity_map SET replay_memo = NULL")
    rows_before = _map_rows(database_url)
    without = await _replay(settings, f"{topic_prefix}-replay-no-memo")
    assert without.extra["already_applied"] == 0 and without.outcomes.get("unchanged") == 4
    assert _map_rows(database_url) == rows_before  # only the memos were written
    assert _one(database_url, "SELECT count(*) FROM zoho_entity_map WHERE replay_memo IS NOT NULL") == 4
    relearned = await _replay(settings, f"{topic_prefix}-replay-relearned")
    assert relearned.extra["already_applied"] == 4
    assert zoho_sim.stats()["requests"] == calls

    # A change in the source after it: its record is not the one the memo describes, so it is sent.
    topics = source_topics(topic_prefix)
    before = sum((await end_offsets(kafka_bootstrap, topics)).values())
    _exec(database_url, "UPDATE customers SET email = 'moved@echo.example' WHERE id = %s", customers[1])
    await wait_for(lambda: _streamed_past(kafka_bootstrap, topics, before), timeout=30)
    changed_once = await _replay(settings, f"{topic_prefix}-replay-changed")

    assert changed_once.outcomes.get("synced") == 1 and changed_once.outcomes.get("unchanged") == 3
    assert changed_once.extra["already_applied"] == 3
    live["PUT /customers/{id}"] = live.get("PUT /customers/{id}", 0) + 1
    assert _writes(zoho_sim) == live
    assert SimView(zoho_sim).customer(_zoho_id(database_url, customers[1]))["email"] == "moved@echo.example"
    calls = zoho_sim.stats()["requests"]

    # Another mapping: no memo matches, so each newest record is decoded and planned again (a default
    # currency only matters to creates: still nothing to send).
    changed = settings.model_copy(update={"zoho_default_currency": "USD"})
    again = await _replay(changed, f"{topic_prefix}-replay-2")

    assert again.extra["already_applied"] == 0
    assert again.outcomes.get("unchanged") == 4
    assert zoho_sim.stats()["requests"] == calls
    assert _writes(zoho_sim) == live
