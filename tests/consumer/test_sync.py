"""The live sync's guarantees, against real PostgreSQL, the real broker and the Zoho simulator.

Events are produced in the exact JsonConverter shape Debezium writes (see tests/support.py); the
end-to-end test with the real relay lives in tests/e2e.
"""

from __future__ import annotations

import asyncio
import json

import psycopg
import pytest

from consumer.entities.registry import source_topics
from consumer.model.events import EntityType
from consumer.pipeline.effects.dead_letter_topic import H_EXC_MESSAGE, H_OFFSET, H_TOPIC, parse_headers
from tests.consumer.harness import (
    LiveSync,
    SimView,
    committed_offsets,
    end_offsets,
    read_topic,
    settings_for,
    wait_for,
)
from tests.support import Source


@pytest.fixture
def settings(zoho_settings, kafka_bootstrap, topic_prefix):  # type: ignore[no-untyped-def]
    return settings_for(zoho_settings, kafka_bootstrap, topic_prefix)


@pytest.fixture
def zoho(zoho_sim):  # type: ignore[no-untyped-def]
    return SimView(zoho_sim)


@pytest.fixture
def source(database_url, kafka_bootstrap, topic_prefix):  # type: ignore[no-untyped-def]
    return Source(database_url, kafka_bootstrap, topic_prefix)


def outcomes(source: Source) -> dict[str, int]:
    return dict(source.query("SELECT outcome, count(*) FROM zoho_sync_log GROUP BY outcome"))  # type: ignore[arg-type]


def log_rows(source: Source) -> int:
    return source.query("SELECT count(*) FROM zoho_sync_log")[0][0]


async def test_customer_insert_update_delete_reach_zoho_with_sync_log_and_write_back(settings, source, zoho):
    customer = source.insert_customer(1)
    await source.flush()
    async with LiveSync(settings):
        await wait_for(lambda: log_rows(source) >= 1)
        # The write-back lands just after the outcome commit (apart from it: a locked row waits alone).
        await wait_for(lambda: source.query("SELECT zoho_sync_status FROM customers")[0][0] == "synced")
        (zoho_id, status, synced_at) = source.query(
            "SELECT zoho_billing_customer_id, zoho_sync_status, zoho_last_synced_at FROM customers"
            " WHERE id = %s",
            customer,
        )[0]
        assert zoho_id and status == "synced" and synced_at is not None
        created = zoho.customer(zoho_id)
        assert created["email"] == "customer1@example.co.za"
        assert {"label": "Account Number", "value": "CT-2025-00001"} in [
            {"label": f["label"], "value": f["value"]} for f in created["custom_fields"]
        ]

        source.update("customers", customer, phone="+27 82 000 1111")
        await source.flush()
        await wait_for(lambda: zoho.customer(zoho_id)["phone"] == "+27 82 000 1111")

        source.delete("customers", customer)
        await source.flush()
        await wait_for(lambda: zoho.customer(zoho_id)["status"] == "inactive")
        await wait_for(lambda: outcomes(source).get("skipped", 0) >= 1)  # the tombstone
    assert len(zoho.customers()) == 1  # never a second record
    rows = source.query("SELECT outcome, operation FROM zoho_sync_log ORDER BY kafka_offset")
    assert ("synced", "create_customer") in rows
    assert ("synced", "mark_customer_inactive") in rows


async def test_invoice_arriving_before_its_customer_was_synced_creates_the_customer_first(
    settings, source, zoho
):
    customer = source.insert_customer(7)
    source.pending.clear()  # the customer's own event has not reached Kafka yet
    invoice = source.insert_invoice(customer, "INV-7001")
    await source.flush()
    async with LiveSync(settings):
        await wait_for(
            lambda: source.query(
                "SELECT zoho_billing_invoice_id FROM customer_invoices WHERE id = %s", invoice
            )[0][0]
        )
    (cust_zoho,) = source.query("SELECT zoho_billing_customer_id FROM customers WHERE id = %s", customer)[0]
    (inv_zoho,) = source.query(
        "SELECT zoho_billing_invoice_id FROM customer_invoices WHERE id = %s", invoice
    )[0]
    zoho_invoice = zoho.invoice(inv_zoho)
    assert zoho_invoice["customer_id"] == cust_zoho
    assert zoho_invoice["invoice_number"] == "INV-7001"
    assert outcomes(source) == {"synced": 1}  # no dead letter for a customer that was merely late


async def test_invoice_update_then_void_then_delete(settings, source, zoho):
    customer = source.insert_customer(8)
    invoice = source.insert_invoice(customer, "INV-8001")
    await source.flush()
    async with LiveSync(settings):
        inv_zoho = await wait_for(
            lambda: source.query(
                "SELECT zoho_billing_invoice_id FROM customer_invoices WHERE id = %s", invoice
            )[0][0]
        )
        source.update("customer_invoices", invoice, due_date=__import__("datetime").date(2026, 12, 31))
        await source.flush()
        await wait_for(lambda: zoho.invoice(inv_zoho)["due_date"] == "2026-12-31")
        source.update("customer_invoices", invoice, status="void")
        await source.flush()
        await wait_for(lambda: zoho.invoice(inv_zoho)["status"] == "void")
    assert len(zoho.invoices()) == 1


async def test_poison_events_go_to_the_dlq_with_headers_and_later_events_still_sync(settings, source, zoho):
    source.emit_raw("customers", b'{"id":"x"}', b"\x00\x01 not json")
    source.emit_raw(
        "customers", b'{"id":"y"}', json.dumps({"op": "t", "after": None, "before": None}).encode()
    )
    good = source.insert_customer(9)
    await source.flush()
    async with LiveSync(settings):
        await wait_for(
            lambda: source.query("SELECT zoho_billing_customer_id FROM customers WHERE id = %s", good)[0][0]
        )
        await wait_for(lambda: outcomes(source).get("dead_lettered", 0) == 2)
    letters = await read_topic(settings.kafka_bootstrap_servers, settings.dlq_topic)
    assert len(letters) == 2
    headers = [parse_headers(m.headers) for m in letters]
    assert {h[H_TOPIC] for h in headers} == {EntityType.CUSTOMER.topic(settings.topic_prefix)}
    assert all(h[H_OFFSET].isdigit() for h in headers)
    assert any("JSON" in h[H_EXC_MESSAGE] or "json" in h[H_EXC_MESSAGE] for h in headers)
    assert {m.value for m in letters} >= {b"\x00\x01 not json"}
    ends = await end_offsets(settings.kafka_bootstrap_servers, source_topics(settings.topic_prefix))
    committed = await committed_offsets(
        settings.kafka_bootstrap_servers, settings.consumer_group, source_topics(settings.topic_prefix)
    )
    assert committed == ends  # nothing blocked


async def test_write_back_echo_and_notes_only_updates_make_no_zoho_calls(settings, source, zoho):
    customer = source.insert_customer(10)
    await source.flush()
    async with LiveSync(settings):
        await wait_for(
            lambda: source.query("SELECT zoho_sync_status FROM customers WHERE id = %s", customer)[0][0]
        )
        calls_after_create = zoho.api_calls()
        source.emit("customers", "u", customer)  # the echo of our own write-back
        source.update("customers", customer, notes="called about invoice")
        source.update("customers", customer, notes="x" * 10000)
        await source.flush()
        await wait_for(
            lambda: outcomes(source).get("unchanged", 0) + outcomes(source).get("superseded", 0) >= 3
        )
        await asyncio.sleep(0.5)
    assert zoho.api_calls() == calls_after_create


async def test_offset_is_not_committed_before_the_sync_log_row_is_durable(settings, source, zoho):
    first = source.insert_customer(11)
    await source.flush()
    bootstrap, group, topics = (
        settings.kafka_bootstrap_servers,
        settings.consumer_group,
        source_topics(settings.topic_prefix),
    )
    async with LiveSync(settings):
        await wait_for(
            lambda: source.query("SELECT zoho_sync_status FROM customers WHERE id = %s", first)[0][0]
        )
        ends = await end_offsets(bootstrap, topics)
        await wait_for(lambda: _committed_equals(settings, ends))
        before = await committed_offsets(bootstrap, group, topics)
        # Hold the sync log locked: the next event's Zoho call happens, but its row cannot be written.
        blocker = psycopg.connect(source.database_url)
        blocker.execute("LOCK TABLE zoho_sync_log IN ACCESS EXCLUSIVE MODE")
        try:
            second = source.insert_customer(12)
            await source.flush()
            await wait_for(lambda: len(zoho.customers()) == 2)  # Zoho has it...
            await asyncio.sleep(1.5)  # ...several commit intervals pass
            during = await committed_offsets(bootstrap, group, topics)
            assert during == before  # ...but the offset did not move past the undurable outcome
        finally:
            blocker.rollback()
            blocker.close()
        await wait_for(
            lambda: source.query("SELECT zoho_sync_status FROM customers WHERE id = %s", second)[0][0]
        )
        ends = await end_offsets(bootstrap, topics)
        await wait_for(
            lambda: _committed_equals(settings, ends), timeout=10
        )  # after recovery nothing is missing
    assert len(zoho.customers()) == 2
    assert source.query("SELECT count(*) FROM zoho_sync_log WHERE outcome = 'synced'")[0][0] == 2


async def _committed_equals(settings, ends) -> bool:  # type: ignore[no-untyped-def]
    now = await committed_offsets(
        settings.kafka_bootstrap_servers, settings.consumer_group, source_topics(settings.topic_prefix)
    )
    return now == ends


async def test_two_consumers_in_one_group_share_partitions_without_duplicates(settings, source, zoho):
    ids = [source.insert_customer(100 + n) for n in range(20)]
    await source.flush()
    async with LiveSync(settings), LiveSync(settings):
        await wait_for(
            lambda: (
                source.query("SELECT count(*) FROM customers WHERE zoho_billing_customer_id IS NOT NULL")[0][
                    0
                ]
                == len(ids)
            ),
            timeout=60,
        )
    assert len(zoho.customers()) == len(ids)
    assert zoho.duplicates() == {}


async def test_revoked_refresh_token_stops_the_sync_with_one_sentence_and_advances_no_offset(
    settings, source, zoho
):
    from consumer.pipeline.intake.scheduler import FatalSyncError
    from consumer.service.wiring import sync_session
    from consumer.service.worker import Worker

    zoho.handle.revoke_refresh_token()
    source.insert_customer(30)
    await source.flush()
    async with sync_session(settings) as session:
        worker = Worker(session, session.run_options(settings.consumer_group))
        with pytest.raises(FatalSyncError) as info:
            await asyncio.wait_for(worker.run(), 60)
    message = str(info.value)
    assert "ZOHO_REFRESH_TOKEN" in message
    assert settings.zoho_refresh_token.get_secret_value() not in message
    committed = await committed_offsets(
        settings.kafka_bootstrap_servers, settings.consumer_group, source_topics(settings.topic_prefix)
    )
    assert sum(committed.values()) == 0
    assert log_rows(source) == 0  # no outcome was invented for the event: it will be redelivered
