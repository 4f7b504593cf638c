"""Realistic sample rows for the local stack: 13 South-African customers and 20 ZAR invoices.

The rows carry the lifecycle Zoho must follow: invoices draft, sent, paid and void, and one closed
customer (whose one invoice is paid). Idempotent: rows are keyed by account_number / invoice_number
(ON CONFLICT DO NOTHING), so running it twice changes nothing and emits no change events the second
time. Amounts are consistent:
subtotal = sum(quantity * unit_price), VAT = 15 % of subtotal rounded to cents, total = subtotal + VAT.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import psycopg

VAT_RATE = Decimal("0.15")
CENT = Decimal("0.01")


@dataclass(frozen=True)
class SeedSummary:
    """How many rows the seed inserted (0 when they were already there)."""

    customers_inserted: int
    invoices_inserted: int
    customers_total: int
    invoices_total: int


def _address(street: str, city: str, province: str, code: str) -> dict[str, str]:
    return {"street": street, "city": city, "province": province, "zip": code, "country": "South Africa"}


# (first, last, company, email, phone, account_type, address)
CUSTOMERS: list[tuple[str, str, str | None, str | None, str | None, str, dict[str, str] | None]] = [
    (
        "Thandi",
        "Nkosi",
        None,
        "thandi.nkosi@example.co.za",
        "+27 82 555 0101",
        "personal",
        _address("12 Florida Rd", "Durban", "KwaZulu-Natal", "4001"),
    ),
    (
        "Pieter",
        "Botha",
        "Botha Boerdery (Pty) Ltd",
        "accounts@bothaboerdery.example.co.za",
        "+27 21 555 0102",
        "business",
        _address("3 Wine Route", "Stellenbosch", "Western Cape", "7600"),
    ),
    (
        "Sipho",
        "Dlamini",
        None,
        "sipho.dlamini@example.co.za",
        "+27 83 555 0103",
        "personal",
        _address("45 Vilakazi St", "Soweto", "Gauteng", "1804"),
    ),
    (
        "Annelie",
        "van der Merwe",
        "Karoo Koffie CC",
        "annelie@karookoffie.example.co.za",
        "+27 23 555 0104",
        "business",
        _address("8 Church St", "Graaff-Reinet", "Eastern Cape", "6280"),
    ),
    (
        "Lerato",
        "Mokoena",
        None,
        None,
        "+27 72 555 0105",
        "personal",  # no email on file
        _address("221 Jan Smuts Ave", "Johannesburg", "Gauteng", "2196"),
    ),
    (
        "Ashwyn",
        "Pillay",
        "Pillay Spice Traders",
        "ashwyn@pillayspice.example.co.za",
        "+27 31 555 0106",
        "business",
        _address("99 Grey St", "Durban", "KwaZulu-Natal", "4001"),
    ),
    (
        "Naledi",
        "Khumalo",
        None,
        "naledi.k@example.co.za",
        None,
        "personal",
        _address("17 Long St", "Cape Town", "Western Cape", "8001"),
    ),
    (
        "Johan",
        "Pretorius",
        "Pretorius Logistics",
        "finance@pretoriuslogistics.example.co.za",
        "+27 12 555 0108",
        "business",
        _address("5 Church Sq", "Pretoria", "Gauteng", "0002"),
    ),
    ("Zanele", "Mthembu", None, "zanele.mthembu@example.co.za", "+27 84 555 0109", "personal", None),
    (
        "Fatima",
        "Essop",
        "Essop & Daughters Attorneys",
        "billing@essoplaw.example.co.za",
        "+27 21 555 0110",
        "business",
        _address("1 Adderley St", "Cape Town", "Western Cape", "8000"),
    ),
    (
        "Kagiso",
        "Molefe",
        None,
        "kagiso.molefe@example.co.za",
        "+27 76 555 0111",
        "personal",
        _address("30 Nelson Mandela Dr", "Mahikeng", "North West", "2745"),
    ),
    (
        "Riaan",
        "Coetzee",
        "Coetzee Solar Installations",
        "riaan@coetzeesolar.example.co.za",
        "+27 51 555 0112",
        "business",
        _address("14 Nelson Mandela Dr", "Bloemfontein", "Free State", "9301"),
    ),
    ("QA", "Robot", None, "qa-bot@example.co.za", None, "internal_test", None),  # must never reach Zoho
]

PRODUCTS = [
    ("Fibre 50 Mbps monthly", Decimal("649.00")),
    ("Fibre 100 Mbps monthly", Decimal("899.00")),
    ("Router rental", Decimal("99.00")),
    ("Installation fee", Decimal("1250.00")),
    ("Static IP address", Decimal("150.00")),
    ("Premium support hours", Decimal("450.00")),
]
STATUSES = ("draft", "sent", "paid")
#: Invoices (by position) void in the source: never sent to Zoho (none is created only to be voided).
VOID_INVOICES = frozenset({6, 13})
#: The closed account: its last invoice is paid, and it is inactive in Zoho.
CLOSED_CUSTOMER = 12


def account_number(index: int) -> str:
    return f"CT-2025-{index:05d}"


def invoice_rows(start: date = date(2025, 3, 1)) -> list[dict[str, object]]:
    """20 invoices spread over the first 12 customers (not the internal test account)."""
    rows = []
    for n in range(20):
        customer = n % 12 + 1
        items = [PRODUCTS[n % 2]]
        if n % 3 == 0:
            items.append(PRODUCTS[2])
        if n % 5 == 0:
            items.append(PRODUCTS[3 + n % 3])
        line_items = [
            {"description": desc, "quantity": 1 + (n + i) % 2 * (n % 3), "unit_price": str(price)}
            for i, (desc, price) in enumerate(items)
        ]
        subtotal = sum((Decimal(li["unit_price"]) * li["quantity"] for li in line_items), Decimal("0.00"))
        vat = (subtotal * VAT_RATE).quantize(CENT, rounding=ROUND_HALF_UP)
        invoice_date = start + timedelta(days=7 * n)
        rows.append(
            {
                "account_number": account_number(customer),
                "invoice_number": f"INV-2025-{n + 1:04d}",
                "invoice_date": invoice_date,
                "due_date": invoice_date + timedelta(days=30),
                "subtotal": subtotal.quantize(CENT),
                "vat_amount": vat,
                "total_amount": (subtotal + vat).quantize(CENT),
                "status": "void" if n in VOID_INVOICES else STATUSES[n % 3],
                "line_items": json.dumps(line_items),
            }
        )
    return rows


def seed(database_url: str) -> SeedSummary:
    """Insert the sample customers and invoices if missing; one transaction."""
    customers_inserted = invoices_inserted = 0
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        for i, (first, last, company, email, phone, account_type, address) in enumerate(CUSTOMERS, start=1):
            cur = conn.execute(
                "INSERT INTO customers (account_number, email, first_name, last_name, company_name, phone,"
                " account_type, billing_address, status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (account_number) DO NOTHING",
                (
                    account_number(i),
                    email,
                    first,
                    last,
                    company,
                    phone,
                    account_type,
                    json.dumps(address) if address else None,
                    "closed" if i == CLOSED_CUSTOMER else "active",
                ),
            )
            customers_inserted += cur.rowcount
        for row in invoice_rows():
            cur = conn.execute(
                "INSERT INTO customer_invoices (customer_id, invoice_number, invoice_date, due_date,"
                " currency, subtotal, vat_amount, total_amount, status, line_items)"
                " SELECT id, %(invoice_number)s, %(invoice_date)s, %(due_date)s, 'ZAR', %(subtotal)s,"
                " %(vat_amount)s, %(total_amount)s, %(status)s, %(line_items)s"
                " FROM customers WHERE account_number = %(account_number)s"
                " ON CONFLICT (invoice_number) DO NOTHING",
                row,
            )
            invoices_inserted += cur.rowcount
        customers_total = conn.execute("SELECT count(*) FROM customers").fetchone()[0]  # type: ignore[index]
        invoices_total = conn.execute("SELECT count(*) FROM customer_invoices").fetchone()[0]  # type: ignore[index]
    return SeedSummary(customers_inserted, invoices_inserted, customers_total, invoices_total)
