"""End to end with the real Debezium relay: PostgreSQL rows become Zoho records, and back."""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pytest

from tests.consumer.harness import LiveSync, SimView, settings_for, wait_for
from tests.support import sql_exec as _exec
from tests.support import sql_value as _one

pytestmark = pytest.mark.relay


async def test_rows_changed_in_postgres_reach_zoho_through_the_real_relay_and_write_back(
    database_url, kafka_bootstrap, topic_prefix, zoho_settings, zoho_sim, relay_process
):
    # A row that exists before the relay starts arrives as a snapshot read.
    _exec(
        database_url,
        "INSERT INTO customers (account_number, email, first_name, last_name, company_name, billing_address)"
        " VALUES ('CT-2025-00042', 'ops@acme.co.za', 'Thandi', 'Nkosi', 'Acme (Pty) Ltd', %s)",
        json.dumps({"street": "1 Long St", "city": "Cape Town", "zip": "8001", "country": "South Africa"}),
    )
    relay_process(database_url, topic_prefix, kafka_bootstrap)
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    zoho = SimView(zoho_sim)
    async with LiveSync(settings):
        cust_zoho = await wait_for(
            lambda: _one(database_url, "SELECT zoho_billing_customer_id FROM customers"), timeout=60
        )
        assert zoho.customer(cust_zoho)["display_name"] == "Acme (Pty) Ltd"

        # Streamed changes: an invoice insert, a customer update, an invoice void, a customer delete.
        customer_id = _one(database_url, "SELECT id FROM customers")
        _exec(
            database_url,
            "INSERT INTO customer_invoices (customer_id, invoice_number, invoice_date, due_date, subtotal,"
            " vat_amount, total_amount, status, line_items)"
            " VALUES (%s, 'INV-42-1', %s, %s, 200, 30, 230, 'sent', %s)",
            customer_id,
            dt.date(2026, 11, 1),
            dt.date(2026, 11, 30),
            json.dumps([{"description": "Support plan", "quantity": 2, "unit_price": "100.00"}]),
        )
        inv_zoho = await wait_for(
            lambda: _one(database_url, "SELECT zoho_billing_invoice_id FROM customer_invoices"), timeout=30
        )
        invoice = zoho.invoice(inv_zoho)
        assert invoice["customer_id"] == cust_zoho
        assert float(invoice["total"]) == 230.0

        _exec(database_url, "UPDATE customers SET phone = '+27 21 555 0199' WHERE id = %s", customer_id)
        await wait_for(lambda: zoho.customer(cust_zoho).get("phone") == "+27 21 555 0199", timeout=30)

        _exec(database_url, "UPDATE customer_invoices SET status = 'void'")
        await wait_for(lambda: zoho.invoice(inv_zoho)["status"] == "void", timeout=30)

        _exec(database_url, "DELETE FROM customer_invoices")
        _exec(database_url, "DELETE FROM customers")
        await wait_for(lambda: zoho.customer(cust_zoho)["status"] == "inactive", timeout=30)

    assert len(zoho.customers()) == 1 and len(zoho.invoices()) == 1
    assert zoho.duplicates() == {}
    # Every record the relay produced has exactly one outcome.
    with psycopg.connect(database_url) as conn:
        dupes = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM zoho_sync_log"
            " GROUP BY consumer_group, topic, kafka_partition, kafka_offset HAVING count(*) > 1) d"
        ).fetchone()[0]  # type: ignore[index]
    assert dupes == 0
