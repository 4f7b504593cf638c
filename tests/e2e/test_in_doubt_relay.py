"""Writes applied by Zoho and answered by a gateway's HTML 502 are settled, never retried blindly.

Issue 22, item 3, through the real relay: PostgreSQL -> Debezium -> Kafka -> `zoho-cdc run` -> the strict
simulator, with half of all writes applied and then answered by a gateway's 502 page while customers are
created, invoices opened, paid and voided and a customer closed. Every effect must be in Zoho exactly
once: one payment per paid invoice, one record per entity, each write sent once (counted on the
simulator), no dead letter, no `failed` row, then a quiet period with no further write.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.consumer.harness import LiveSync, SimView, read_topic, settings_for, wait_for
from tests.e2e.test_echo_safety import _exec, _insert_customer, _one, _quiet_and_unchanged, _writes
from tests.e2e.test_status_lifecycle import _insert_invoice, _zoho_invoice_id

pytestmark = pytest.mark.relay

FAULT_RATE = 0.5
SEED = 22


def _accepted_writes(sim: Any) -> dict[str, int]:
    """Non-GET requests the simulator accepted (applied, whatever it answered), by endpoint: a 429 is
    refused before anything is applied, so it is left out."""
    out: dict[str, int] = {}
    for endpoint, by_status in sim.stats()["by_endpoint"].items():
        if not endpoint.startswith("GET "):
            out[endpoint] = sum(n for status, n in by_status.items() if status != "429")
    return out


def _source_status(url: str, table: str, row_id: str) -> str | None:
    return _one(url, f"SELECT zoho_sync_status FROM {table} WHERE id = %s", row_id)


async def _letters(bootstrap: str, topic: str) -> list[Any]:
    try:
        return await read_topic(bootstrap, topic)
    except Exception:  # the topic does not exist until the first dead letter
        return []


async def test_half_of_all_writes_applied_then_502_leave_every_effect_in_zoho_once(
    database_url, kafka_bootstrap, topic_prefix, zoho_settings, zoho_sim, relay_process
):
    customers = [_insert_customer(database_url, f"CT-DOUBT-{n}", f"d{n}@doubt.example") for n in range(3)]
    invoices = [_insert_invoice(database_url, customers[n // 2], f"INV-DOUBT-{n}", "sent") for n in range(6)]
    zoho_sim.simulator.rng.seed(SEED)
    zoho_sim.set_faults(applied_502=FAULT_RATE)
    relay_process(database_url, topic_prefix, kafka_bootstrap)
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    zoho = SimView(zoho_sim)
    async with LiveSync(settings):
        ids = [await wait_for(lambda i=i: _zoho_invoice_id(database_url, i), timeout=120) for i in invoices]
        await wait_for(lambda: all(zoho.invoice(z)["status"] == "sent" for z in ids), timeout=60)

        # Under the same faults: four invoices paid, two voided, two customers created (with an invoice
        # each), one customer closed.
        paid, voided = invoices[:4], invoices[4:]
        for invoice in paid:
            _exec(database_url, "UPDATE customer_invoices SET status = 'paid' WHERE id = %s", invoice)
        for invoice in voided:
            _exec(database_url, "UPDATE customer_invoices SET status = 'void' WHERE id = %s", invoice)
        new = [_insert_customer(database_url, f"CT-DOUBT-{n}", f"d{n}@doubt.example") for n in (3, 4)]
        new_invoices = [_insert_invoice(database_url, c, f"INV-DOUBT-N{c}", "sent") for c in new]
        _exec(database_url, "UPDATE customers SET status = 'closed' WHERE id = %s", customers[2])

        await wait_for(lambda: all(zoho.invoice(z)["status"] == "paid" for z in ids[:4]), timeout=120)
        await wait_for(lambda: all(zoho.invoice(z)["status"] == "void" for z in ids[4:]), timeout=60)
        new_ids = [
            await wait_for(lambda i=i: _zoho_invoice_id(database_url, i), timeout=90) for i in new_invoices
        ]
        await wait_for(lambda: all(zoho.invoice(z)["status"] == "sent" for z in new_ids), timeout=60)
        closed = _one(
            database_url, "SELECT zoho_billing_customer_id FROM customers WHERE id = %s", customers[2]
        )
        await wait_for(lambda: zoho.customer(closed)["status"] == "inactive", timeout=60)
        every_row = [("customers", c) for c in customers + new] + [
            ("customer_invoices", i) for i in invoices + new_invoices
        ]
        await wait_for(
            lambda: all(_source_status(database_url, t, r) == "synced" for t, r in every_row), timeout=60
        )
        await _quiet_and_unchanged(zoho_sim, _writes(zoho_sim))

    stats = zoho_sim.stats()
    assert stats["faults_played"].get("applied_502", 0) >= 10, stats["faults_played"]
    # Exactly one payment per paid invoice, for its whole balance.
    payments = zoho_sim.state()["payments"]
    assert sorted(p["reference_number"] for p in payments) == sorted(paid)
    assert all(zoho.invoice(z)["balance"] == 0 for z in ids[:4])
    # One record per entity, and each write reached Zoho once: none was sent again after Zoho applied it.
    assert zoho.duplicates() == {}
    assert len(zoho.customers()) == 5 and len(zoho.invoices()) == 8
    assert _accepted_writes(zoho_sim) == {
        "POST /customers": 5,
        "POST /items": 2,  # the FIBRE-100 line's item and the default item for the uncoded line
        "POST /invoices": 8,
        "POST /invoices/{id}/converttoopen": 8,
        "POST /payments": 4,
        "POST /invoices/{id}/void": 2,
        "POST /customers/{id}/markasinactive": 1,
    }
    # No dead letter, no failed row, no failed outcome.
    assert await _letters(kafka_bootstrap, settings.dlq_topic) == []
    assert _one(database_url, "SELECT count(*) FROM customers WHERE zoho_sync_status = 'failed'") == 0
    assert _one(database_url, "SELECT count(*) FROM customer_invoices WHERE zoho_sync_status = 'failed'") == 0
    assert (
        _one(database_url, "SELECT count(*) FROM zoho_sync_log WHERE outcome IN ('failed', 'dead_lettered')")
        == 0
    )
    assert _one(database_url, "SELECT count(*) FROM zoho_sync_intent") == 0
