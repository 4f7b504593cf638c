"""Echo safety through the real relay: a source row costs Zoho calls only when its mapped state changes.

Every write-back zoho-cdc makes to a source row is streamed back by Debezium, and an unchanged TOASTed
column comes back as a placeholder. Only the real relay produces those echoes, so these tests drive
PostgreSQL -> Debezium -> Kafka -> `zoho-cdc run`, count calls from the simulator's own counters, then
wait a quiet period and check that the count stays put (a loop is invisible to an end-state check).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
from typing import Any

import psycopg
import pytest

from tests.consumer.harness import LiveSync, SimView, read_topic, settings_for, wait_for
from tests.support import sql_exec as _exec
from tests.support import sql_value as _one

pytestmark = pytest.mark.relay

QUIET_SECONDS = 6.0  # several relay polls and consumer commits: any echo loop would show in this time


def _calls(sim: Any, endpoint: str) -> int:
    """Requests the simulator received on one endpoint, whatever it answered."""
    return sum(sim.stats()["by_endpoint"].get(endpoint, {}).values())


def _writes(sim: Any) -> dict[str, int]:
    """Every non-GET API request the simulator received, by endpoint."""
    return {e: sum(by.values()) for e, by in sim.stats()["by_endpoint"].items() if not e.startswith("GET ")}


async def _quiet_and_unchanged(sim: Any, what: dict[str, int]) -> dict[str, int]:
    """Wait the quiet period, then require that no further write call was made."""
    await asyncio.sleep(QUIET_SECONDS)
    after = _writes(sim)
    assert after == what, f"calls kept coming after the work was done: {what} -> {after}"
    return after


def _insert_customer(url: str, account: str, email: str | None, **extra: Any) -> str:
    columns = {"account_number": account, "email": email, "company_name": f"Company {account}", **extra}
    names = ", ".join(columns)
    marks = ", ".join(["%s"] * len(columns))
    return str(_one(url, f"INSERT INTO customers ({names}) VALUES ({marks}) RETURNING id", *columns.values()))


def _invoice_sql() -> str:
    return (
        "INSERT INTO customer_invoices (customer_id, invoice_number, invoice_date, due_date, currency,"
        " subtotal, vat_amount, total_amount, status, line_items)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'sent', %s) RETURNING id"
    )


def _insert_invoice(
    url: str, customer_id: str, number: str, items: list[dict[str, Any]], currency: str
) -> str:
    subtotal = sum(float(i["unit_price"]) * i["quantity"] for i in items)
    return str(
        _one(
            url,
            _invoice_sql(),
            customer_id,
            number,
            dt.date(2026, 11, 1),
            dt.date(2026, 11, 30),
            currency,
            subtotal,
            round(subtotal * 0.15, 2),
            round(subtotal * 1.15, 2),
            json.dumps(items),
        )
    )


async def _dead_letters(bootstrap: str, topic: str) -> list[Any]:
    return await read_topic(bootstrap, topic)


async def test_a_customer_zoho_rejects_is_sent_once_and_dead_lettered_once(
    database_url, kafka_bootstrap, topic_prefix, zoho_settings, zoho_sim, relay_process
):
    relay_process(database_url, topic_prefix, kafka_bootstrap)
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    async with LiveSync(settings):
        customer = _insert_customer(database_url, "CT-ECHO-1", "not-an-email")
        # The refusal is written back ('failed'), which Debezium streams back: that echo must cost nothing.
        await wait_for(
            lambda: (
                _one(database_url, "SELECT zoho_sync_status FROM customers WHERE id = %s", customer)
                == "failed"
            ),
            timeout=60,
        )
        await wait_for(lambda: len(_writes(zoho_sim)) > 0)
        settled = await _quiet_and_unchanged(zoho_sim, _writes(zoho_sim))
        assert settled == {"POST /customers": 1}
        letters = await _dead_letters(kafka_bootstrap, settings.dlq_topic)
        assert len(letters) == 1
        assert b"email" in dict(letters[0].headers)["__connect.errors.exception.message"]
        assert _one(database_url, "SELECT zoho_last_synced_at FROM customers") is None

        # A changed mapped state is tried again: the fixed email goes through, once.
        _exec(database_url, "UPDATE customers SET email = 'ops@echo.example' WHERE id = %s", customer)
        zoho_id = await wait_for(
            lambda: _one(
                database_url, "SELECT zoho_billing_customer_id FROM customers WHERE id = %s", customer
            ),
            timeout=30,
        )
        await wait_for(lambda: _one(database_url, "SELECT zoho_sync_status FROM customers") == "synced")
        settled = await _quiet_and_unchanged(zoho_sim, _writes(zoho_sim))
    assert settled == {"POST /customers": 2}
    assert SimView(zoho_sim).customer(zoho_id)["email"] == "ops@echo.example"
    assert len(await _dead_letters(kafka_bootstrap, settings.dlq_topic)) == 1


@pytest.mark.parametrize("replica_identity", ["DEFAULT", "FULL"])
async def test_an_invoice_with_toasted_line_items_costs_one_put_per_real_change(
    database_url, kafka_bootstrap, topic_prefix, zoho_settings, zoho_sim, relay_process, replica_identity
):
    _exec(database_url, f"ALTER TABLE customer_invoices REPLICA IDENTITY {replica_identity}")
    # 30 items with random descriptions: over 8 kB that compression cannot shrink, so stored out of line.
    items = [
        {"description": secrets.token_urlsafe(300), "quantity": 1, "unit_price": f"{10 + n}.00"}
        for n in range(30)
    ]
    assert len(json.dumps(items)) > 8192
    customer = _insert_customer(database_url, "CT-TOAST-1", "toast@echo.example")
    invoice = _insert_invoice(database_url, customer, "INV-TOAST-1", items, "ZAR")
    relay_process(database_url, topic_prefix, kafka_bootstrap)
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    zoho = SimView(zoho_sim)
    async with LiveSync(settings):
        inv_zoho = await wait_for(
            lambda: _one(database_url, "SELECT zoho_billing_invoice_id FROM customer_invoices"), timeout=60
        )
        # The write-back echo carries the TOAST placeholder for line_items: it must not be sent.
        settled = await _quiet_and_unchanged(zoho_sim, _writes(zoho_sim))
        # A sent invoice: its lines' default item once, the invoice, then converttoopen.
        assert settled == {
            "POST /customers": 1,
            "POST /items": 1,
            "POST /invoices": 1,
            "POST /invoices/{id}/converttoopen": 1,
        }

        # Another column changes: one PUT, and Zoho still holds all 30 items.
        _exec(
            database_url,
            "UPDATE customer_invoices SET due_date = %s WHERE id = %s",
            dt.date(2026, 12, 15),
            invoice,
        )
        await wait_for(lambda: zoho.invoice(inv_zoho)["due_date"] == "2026-12-15", timeout=30)
        settled = await _quiet_and_unchanged(zoho_sim, _writes(zoho_sim))
    assert settled == {
        "POST /customers": 1,
        "POST /items": 1,
        "POST /invoices": 1,
        "POST /invoices/{id}/converttoopen": 1,
        "PUT /invoices/{id}": 1,
    }
    zoho_items = zoho.invoice(inv_zoho)["invoice_items"]
    assert [i["description"] for i in zoho_items] == [i["description"] for i in items]


async def test_status_notes_and_write_back_only_updates_make_no_zoho_call(
    database_url, kafka_bootstrap, topic_prefix, zoho_settings, zoho_sim, relay_process
):
    customer = _insert_customer(database_url, "CT-QUIET-1", "quiet@echo.example")
    relay_process(database_url, topic_prefix, kafka_bootstrap)
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    async with LiveSync(settings):
        await wait_for(
            lambda: _one(database_url, "SELECT zoho_sync_status FROM customers") == "synced", timeout=60
        )
        synced_at = _one(database_url, "SELECT zoho_last_synced_at FROM customers")
        settled = await _quiet_and_unchanged(zoho_sim, _writes(zoho_sim))
        assert settled == {"POST /customers": 1}

        _exec(
            database_url,
            "UPDATE customers SET notes = 'called them', updated_at = now() WHERE id = %s",
            customer,
        )
        # A write-back column changed by someone else is put right without a Zoho call.
        _exec(database_url, "UPDATE customers SET zoho_sync_status = 'pending' WHERE id = %s", customer)
        await wait_for(
            lambda: _one(database_url, "SELECT zoho_sync_status FROM customers") == "synced", timeout=30
        )
        settled = await _quiet_and_unchanged(zoho_sim, settled)
    assert settled == {"POST /customers": 1}
    # zoho_last_synced_at moves only when Zoho was called.
    assert _one(database_url, "SELECT zoho_last_synced_at FROM customers") == synced_at


async def test_a_customer_keeps_its_zoho_currency_and_an_invoice_in_another_is_dead_lettered(
    database_url, kafka_bootstrap, topic_prefix, zoho_settings, zoho_sim, relay_process
):
    item = [{"description": "Support", "quantity": 1, "unit_price": "100.00"}]
    with psycopg.connect(database_url) as conn:  # the customer and its first (USD) invoice in one transaction
        customer = str(
            conn.execute(
                "INSERT INTO customers (account_number, email, company_name) VALUES"
                " ('CT-USD-1', 'usd@echo.example', 'Dollar Co') RETURNING id"
            ).fetchone()[0]  # type: ignore[index]
        )
        conn.execute(
            _invoice_sql(),
            (customer, "INV-USD-1", dt.date(2026, 11, 1), None, "USD", 100, 15, 115, json.dumps(item)),
        )
    relay_process(database_url, topic_prefix, kafka_bootstrap)
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    zoho = SimView(zoho_sim)
    async with LiveSync(settings):
        cust_zoho = await wait_for(
            lambda: _one(database_url, "SELECT zoho_billing_customer_id FROM customers"), timeout=60
        )
        await wait_for(lambda: _one(database_url, "SELECT zoho_billing_invoice_id FROM customer_invoices"))
        assert zoho.customer(cust_zoho)["currency_code"] == "USD"

        # An update of the customer never sends the default currency (ZAR) over the one it was created in.
        _exec(database_url, "UPDATE customers SET phone = '+1 555 0100' WHERE id = %s", customer)
        await wait_for(lambda: zoho.customer(cust_zoho).get("phone") == "+1 555 0100", timeout=30)
        assert zoho.customer(cust_zoho)["currency_code"] == "USD"

        # An invoice in another currency gets one dead letter saying why, and no call.
        _insert_invoice(database_url, customer, "INV-EUR-1", item, "EUR")
        await wait_for(
            lambda: (
                _one(
                    database_url,
                    "SELECT zoho_sync_status FROM customer_invoices WHERE invoice_number = 'INV-EUR-1'",
                )
                == "failed"
            ),
            timeout=30,
        )
        settled = await _quiet_and_unchanged(zoho_sim, _writes(zoho_sim))
    assert settled == {
        "POST /customers": 1,
        "POST /items": 1,
        "POST /invoices": 1,
        "POST /invoices/{id}/converttoopen": 1,
        "PUT /customers/{id}": 1,
    }
    letters = await _dead_letters(kafka_bootstrap, settings.dlq_topic)
    assert len(letters) == 1
    reason = dict(letters[0].headers)["__connect.errors.exception.message"].decode()
    assert "EUR" in reason and "USD" in reason
    assert [i["currency_code"] for i in zoho.invoices()] == ["USD"]
