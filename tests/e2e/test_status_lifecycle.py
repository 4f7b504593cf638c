"""Invoice and customer status through the real relay: each transition costs its calls once, echoes none.

PostgreSQL -> Debezium relay -> Kafka -> `zoho-cdc run` -> simulator (strict: every invoice line must
name a Zoho item). Calls are counted from the simulator's own counters; after each step a quiet period
checks the count stays put, so a write-back echo that paid or opened an invoice twice would show.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from consumer.local.broker import free_port
from tests.consumer.harness import LiveSync, SimView, read_topic, settings_for, wait_for
from tests.e2e.test_echo_safety import _exec, _insert_customer, _one, _quiet_and_unchanged, _writes
from tests.ops import settings_env

pytestmark = pytest.mark.relay

LINES = [
    {"description": "Fibre 100Mbps", "quantity": 1, "unit_price": "100.00", "sku": "FIBRE-100"},
    {"description": "Installation", "quantity": 1, "unit_price": "50.00"},
]


def _insert_invoice(url: str, customer_id: str, number: str, status: str) -> str:
    return str(
        _one(
            url,
            "INSERT INTO customer_invoices (customer_id, invoice_number, invoice_date, due_date, subtotal,"
            " vat_amount, total_amount, status, line_items)"
            " VALUES (%s, %s, %s, %s, 150, 22.50, 172.50, %s, %s) RETURNING id",
            customer_id,
            number,
            dt.date(2026, 11, 1),
            dt.date(2026, 11, 30),
            status,
            json.dumps(LINES),
        )
    )


def _zoho_invoice_id(url: str, invoice: str) -> str | None:
    return _one(url, "SELECT zoho_billing_invoice_id FROM customer_invoices WHERE id = %s", invoice)


def _grew(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {e: n - before.get(e, 0) for e, n in after.items() if n != before.get(e, 0)}


async def _step(sim: Any, before: dict[str, int], done: Any) -> dict[str, int]:
    """Wait for `done`, then the quiet period; returns the write calls this step made."""
    await wait_for(done, timeout=60)
    await wait_for(lambda: _writes(sim) != before, timeout=30)
    settled = await _quiet_and_unchanged(sim, _writes(sim))
    return _grew(before, settled)


async def test_each_invoice_and_customer_transition_makes_its_calls_once(
    database_url, kafka_bootstrap, topic_prefix, zoho_settings, zoho_sim, relay_process
):
    customer = _insert_customer(database_url, "CT-LIFE-1", "life@status.example")
    invoice = _insert_invoice(database_url, customer, "INV-LIFE-1", "draft")
    relay_process(database_url, topic_prefix, kafka_bootstrap)
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    zoho = SimView(zoho_sim)
    async with LiveSync(settings):
        zoho_id = await wait_for(lambda: _zoho_invoice_id(database_url, invoice), timeout=90)
        created = await _quiet_and_unchanged(zoho_sim, _writes(zoho_sim))
        # One item per line code and one default item for the uncoded line, each created once.
        assert created == {"POST /customers": 1, "POST /items": 2, "POST /invoices": 1}
        lines = zoho.invoice(zoho_id)["invoice_items"]
        items = {i["item_id"]: i for i in zoho_sim.simulator.state()["items"]}
        assert [items[line["product_id"]]["name"] for line in lines] == ["FIBRE-100", "Invoice line"]
        assert zoho.invoice(zoho_id)["status"] == "draft"

        # draft -> sent: converttoopen, nothing else (never /email).
        _exec(database_url, "UPDATE customer_invoices SET status = 'sent' WHERE id = %s", invoice)
        made = await _step(zoho_sim, created, lambda: zoho.invoice(zoho_id)["status"] == "sent")
        assert made == {"POST /invoices/{id}/converttoopen": 1}

        # sent -> paid: one payment for the balance, referenced by the source invoice id.
        before = _writes(zoho_sim)
        _exec(database_url, "UPDATE customer_invoices SET status = 'paid' WHERE id = %s", invoice)
        made = await _step(zoho_sim, before, lambda: zoho.invoice(zoho_id)["status"] == "paid")
        assert made == {"POST /payments": 1}
        [payment] = zoho_sim.simulator.state()["payments"]
        assert payment["reference_number"] == invoice and payment["amount"] == 172.5
        assert payment["payment_mode"] == "banktransfer"
        assert payment["invoices"][0]["invoice_id"] == zoho_id
        assert zoho.invoice(zoho_id)["balance"] == 0

        # paid -> sent (a refund in the source): no call reaches it; dead-lettered once with the reason.
        before = _writes(zoho_sim)
        _exec(database_url, "UPDATE customer_invoices SET status = 'sent' WHERE id = %s", invoice)
        letters = await wait_for(lambda: _letters(kafka_bootstrap, settings.dlq_topic), timeout=60)
        await _quiet_and_unchanged(zoho_sim, before)
        assert len(letters) == 1
        reason = dict(letters[0].headers)["__connect.errors.exception.message"].decode()
        assert "backwards" in reason and "paid in Zoho but sent in the source" in reason
        assert zoho.invoice(zoho_id)["status"] == "paid"

        # -> void: voided (its payment becomes a customer credit in Zoho).
        _exec(database_url, "UPDATE customer_invoices SET status = 'void' WHERE id = %s", invoice)
        made = await _step(zoho_sim, before, lambda: zoho.invoice(zoho_id)["status"] == "void")
        assert made == {"POST /invoices/{id}/void": 1}

        # A deleted sent invoice is voided, never deleted.
        sent = _insert_invoice(database_url, customer, "INV-LIFE-2", "sent")
        sent_zoho = await wait_for(lambda: _zoho_invoice_id(database_url, sent), timeout=60)
        await wait_for(lambda: zoho.invoice(sent_zoho)["status"] == "sent", timeout=30)
        before = await _quiet_and_unchanged(zoho_sim, _writes(zoho_sim))
        _exec(database_url, "DELETE FROM customer_invoices WHERE id = %s", sent)
        made = await _step(zoho_sim, before, lambda: zoho.invoice(sent_zoho)["status"] == "void")
        assert made == {"POST /invoices/{id}/void": 1}

        # Customer closed -> inactive, active again -> active; one call each.
        customer_zoho = _one(database_url, "SELECT zoho_billing_customer_id FROM customers")
        before = _writes(zoho_sim)
        _exec(database_url, "UPDATE customers SET status = 'closed' WHERE id = %s", customer)
        made = await _step(zoho_sim, before, lambda: zoho.customer(customer_zoho)["status"] == "inactive")
        assert made == {"POST /customers/{id}/markasinactive": 1}
        before = _writes(zoho_sim)
        _exec(database_url, "UPDATE customers SET status = 'suspended' WHERE id = %s", customer)
        made = await _step(zoho_sim, before, lambda: zoho.customer(customer_zoho)["status"] == "active")
        assert made == {"POST /customers/{id}/markasactive": 1}
    assert len(zoho_sim.simulator.state()["payments"]) == 1
    assert zoho.duplicates() == {}


async def _letters(bootstrap: str, topic: str) -> list[Any]:
    try:
        return await read_topic(bootstrap, topic)
    except Exception:  # the topic does not exist until the first dead letter
        return []


class _Consumer:
    """`zoho-cdc run` as its own process, so it can be SIGKILLed mid-call."""

    def __init__(self, settings: Any, workdir: Path) -> None:
        self.log_path = workdir / "zoho-cdc-run.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "consumer", "run", "--status-port", str(free_port())],
                env=settings_env(settings),
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def test_one_payment_per_paid_invoice_across_a_sigkill_and_a_lost_reply(
    database_url, kafka_bootstrap, topic_prefix, zoho_settings, zoho_sim, relay_process, tmp_path
):
    customer = _insert_customer(database_url, "CT-PAY-1", "pay@status.example")
    killed = _insert_invoice(database_url, customer, "INV-PAY-1", "sent")
    lost = _insert_invoice(database_url, customer, "INV-PAY-2", "sent")
    relay_process(database_url, topic_prefix, kafka_bootstrap)
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    zoho = SimView(zoho_sim)
    payments = lambda: zoho_sim.simulator.state()["payments"]  # noqa: E731
    consumer = _Consumer(settings, tmp_path)
    try:
        ids = [
            await wait_for(lambda i=i: _zoho_invoice_id(database_url, i), timeout=90) for i in (killed, lost)
        ]
        await wait_for(lambda: all(zoho.invoice(z)["status"] == "sent" for z in ids), timeout=30)

        # The payment is applied in Zoho, its reply held back; the consumer dies waiting for it.
        zoho_sim.set_faults(once=[["POST /payments", "timeout"]], timeout_hold=30.0)
        _exec(database_url, "UPDATE customer_invoices SET status = 'paid' WHERE id = %s", killed)
        await wait_for(lambda: len(payments()) == 1, timeout=60)
        consumer.kill()
        consumer = _Consumer(settings, tmp_path)
        await wait_for(
            lambda: _one(
                database_url,
                "SELECT count(*) FROM zoho_sync_log WHERE entity_id = %s AND operation = 'record_payment'"
                " AND outcome = 'synced'",
                killed,
            ),
            timeout=90,
        )

        # The reply of the next payment is lost: it is found on the invoice by reference, not paid twice.
        zoho_sim.set_faults(once=[["POST /payments", "lost_response"]])
        _exec(database_url, "UPDATE customer_invoices SET status = 'paid' WHERE id = %s", lost)
        await wait_for(lambda: zoho.invoice(ids[1])["status"] == "paid", timeout=60)
        await wait_for(
            lambda: (
                _one(database_url, "SELECT zoho_sync_status FROM customer_invoices WHERE id = %s", lost)
                == "synced"
            ),
            timeout=60,
        )
        await _quiet_and_unchanged(zoho_sim, _writes(zoho_sim))
    finally:
        consumer.stop()
    stats = zoho_sim.stats()
    assert stats["faults_played"].get("lost_response") == 1 and stats["faults_played"].get("timeout") == 1
    assert sorted(p["reference_number"] for p in payments()) == sorted([killed, lost])
    assert zoho.duplicates() == {}
    assert [zoho.invoice(z)["status"] for z in ids] == ["paid", "paid"]
    assert [zoho.invoice(z)["balance"] for z in ids] == [0, 0]
    # Nothing waits in the intent table once both payments are recorded.
    assert _one(database_url, "SELECT count(*) FROM zoho_sync_intent") == 0
