"""`seed` loads consistent, realistic rows and is idempotent (no JVM needed)."""

from __future__ import annotations

import json
from decimal import Decimal

import psycopg

from consumer.local.seed import seed


def test_seed_inserts_13_customers_and_20_invoices_once(database_url):
    first = seed(database_url)
    second = seed(database_url)
    assert (first.customers_inserted, first.invoices_inserted) == (13, 20)
    assert (second.customers_inserted, second.invoices_inserted) == (0, 0)
    assert (second.customers_total, second.invoices_total) == (13, 20)


def test_seed_rows_cover_the_edge_cases_the_sync_must_handle(database_url):
    seed(database_url)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT account_number, email, company_name, account_type FROM customers"
        ).fetchall()
    assert sum(1 for r in rows if r[1] is None) == 1
    assert sum(1 for r in rows if r[3] == "internal_test") == 1
    assert {r[3] for r in rows} == {"personal", "business", "internal_test"}
    assert all((r[2] is not None) == (r[3] == "business") for r in rows)
    assert all(r[0].startswith("CT-2025-000") for r in rows)


def test_seed_rows_carry_the_lifecycle_zoho_must_follow(database_url):
    seed(database_url)
    with psycopg.connect(database_url) as conn:
        invoices = dict(conn.execute("SELECT status, count(*) FROM customer_invoices GROUP BY 1").fetchall())
        closed = conn.execute(
            "SELECT c.account_type, array_agg(i.status) FROM customers c"
            " JOIN customer_invoices i ON i.customer_id = c.id WHERE c.status = 'closed' GROUP BY 1"
        ).fetchall()
    assert invoices == {"draft": 6, "sent": 6, "paid": 6, "void": 2}
    assert closed == [("business", ["paid"])]  # one closed account, its last invoice paid


def test_seed_invoice_amounts_add_up_with_15_percent_vat(database_url):
    seed(database_url)
    with psycopg.connect(database_url) as conn:
        invoices = conn.execute(
            "SELECT subtotal, vat_amount, total_amount, line_items, currency, status FROM customer_invoices"
        ).fetchall()
    assert {i[5] for i in invoices} == {"draft", "sent", "paid", "void"}
    for subtotal, vat, total, items, currency, _ in invoices:
        lines = items if isinstance(items, list) else json.loads(items)
        assert subtotal == sum(Decimal(li["unit_price"]) * li["quantity"] for li in lines)
        assert vat == (subtotal * Decimal("0.15")).quantize(Decimal("0.01"))
        assert total == subtotal + vat and currency == "ZAR"
