"""Ordering by the source through the real relay: a change open across a snapshot read is not lost.

A transaction updates a customer and stays open while an incremental snapshot reads the table, so
the read (the old state) is streamed first and the update only when the transaction commits. The
update is the newer state, and Zoho must end with it. (Debezium 3.6 sends incremental reads without
an LSN; reads of an initial snapshot carry the LSN the snapshot began at, which the stale rule must
not compare with a streamed change: see tests/consumer/test_echo_rules.py.)
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import psycopg
import pytest

from tests.consumer.harness import LiveSync, SimView, read_topic, settings_for, wait_for
from tests.support import sql_value

pytestmark = pytest.mark.relay


async def test_an_update_committed_after_a_snapshot_read_of_its_row_reaches_zoho(
    database_url, kafka_bootstrap, topic_prefix, zoho_settings, zoho_sim, relay_process, tmp_path
):
    customer = sql_value(
        database_url,
        "INSERT INTO customers (account_number, email, company_name, phone) VALUES"
        " ('CT-ORDER-1', 'order@example.co.za', 'Order Co', '+27 21 000 0001') RETURNING id",
    )
    relay = relay_process(database_url, topic_prefix, kafka_bootstrap)
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    zoho = SimView(zoho_sim)
    topic = f"{topic_prefix}.public.customers"
    async with LiveSync(settings):
        zoho_id = await wait_for(
            lambda: sql_value(database_url, "SELECT zoho_billing_customer_id FROM customers"), timeout=60
        )
        with psycopg.connect(database_url) as open_tx:  # the application's long transaction
            open_tx.execute("UPDATE customers SET phone = '+27 21 999 9999' WHERE id = %s", (customer,))
            await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "consumer", "snapshot", "--table", "customers"],
                env=relay.env,
                cwd=tmp_path,
                check=True,
                capture_output=True,
            )

            async def snapshot_read_streamed() -> bool:
                return any(_incremental_read(v) for v in await _values(kafka_bootstrap, topic))

            await wait_for(snapshot_read_streamed, timeout=60)
            open_tx.commit()  # the update is streamed now, with the LSN of its change record
        await wait_for(lambda: zoho.customer(zoho_id).get("phone") == "+27 21 999 9999", timeout=45)
    values = await _values(kafka_bootstrap, topic)
    # The premise: the read of the old state reached the topic before the committed update.
    read_at = next(i for i, v in enumerate(values) if _incremental_read(v))
    update_at = next(
        i for i, v in enumerate(values) if v["op"] == "u" and v["after"]["phone"] == "+27 21 999 9999"
    )
    assert read_at < update_at
    assert values[read_at]["after"]["phone"] == "+27 21 000 0001"


async def _values(bootstrap: str, topic: str) -> list[dict]:
    return [json.loads(m.value) for m in await read_topic(bootstrap, topic) if m.value is not None]


def _incremental_read(value: dict) -> bool:
    return value["op"] == "r" and value["source"].get("snapshot") == "incremental"
