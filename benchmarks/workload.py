"""Synthetic source histories: rows in PostgreSQL plus the exact Debezium events that produced them.

A `History` applies creates, updates and deletes to in-memory rows and records, for each change, the
event Debezium's JsonConverter would write (schemas.enable=false, decimal.handling.mode=string, the
shape of tests/fixtures/debezium and tests/support.py), with increasing LSNs. `load()` then writes the
final rows to PostgreSQL with COPY, so write-backs and invoice->customer lookups find them.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg

from consumer.model.events import EntityType
from consumer.pipeline.codec.encode import encode_event

CUSTOMERS = "customers"
INVOICES = "customer_invoices"
_JSON_COLUMNS = {"billing_address", "line_items"}
CUSTOMER_COLUMNS = (
    "id account_number email first_name last_name company_name phone account_type billing_address status "
    "notes created_at updated_at"
).split()
INVOICE_COLUMNS = (
    "id customer_id invoice_number invoice_date due_date currency subtotal vat_amount total_amount status "
    "line_items created_at updated_at"
).split()
CITIES = ("Cape Town", "Johannesburg", "Durban", "Pretoria", "Gqeberha", "Bloemfontein")


def envelope(
    prefix: str, table: str, op: str, row: dict[str, Any] | None, key_id: str, lsn: int, ts_ms: int
) -> tuple[str, bytes, bytes]:
    """One change event as the relay would publish it (the project's one encoder)."""
    entity_type = _entity(table)
    key, value = encode_event(entity_type, op, row, key_id=key_id, topic_prefix=prefix, lsn=lsn, ts_ms=ts_ms)
    return entity_type.topic(prefix), key, value


def customer_row(n: int, rng: random.Random, **fields: Any) -> dict[str, Any]:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=n)
    business = rng.random() < 0.3
    return {
        "id": str(uuid.uuid4()),
        "account_number": f"CT-B-{n:07d}",
        "email": f"customer{n}@example.co.za",
        "first_name": f"First{n}",
        "last_name": f"Last{n}",
        "company_name": f"Company {n} (Pty) Ltd" if business else None,
        "phone": f"+27 21 555 {n % 10000:04d}",
        "account_type": "business" if business else "personal",
        "billing_address": {
            "street": f"{n} Main Rd",
            "city": rng.choice(CITIES),
            "zip": f"{8000 + n % 999}",
            "country": "South Africa",
        },
        "status": "active",
        "notes": None,
        "created_at": now,
        "updated_at": now,
    } | fields


def invoice_row(n: int, customer_id: str, rng: random.Random, **fields: Any) -> dict[str, Any]:
    quantity = rng.randint(1, 3)
    price = Decimal(rng.choice(("99.00", "249.00", "499.00", "1250.00")))
    subtotal = price * quantity
    vat = (subtotal * Decimal("0.15")).quantize(Decimal("0.01"))
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=n)
    return {
        "id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "invoice_number": f"INV-B-{n:07d}",
        "invoice_date": dt.date(2026, 11, 1),
        "due_date": dt.date(2026, 11, 30),
        "currency": "ZAR",
        "subtotal": subtotal,
        "vat_amount": vat,
        "total_amount": subtotal + vat,
        "status": "draft",
        "line_items": [{"description": "Monthly plan", "quantity": quantity, "unit_price": str(price)}],
        "created_at": now,
        "updated_at": now,
    } | fields


@dataclass
class History:
    """Source rows and the ordered change events that produced them."""

    prefix: str
    lsn: int = 50_000_000
    ts_ms: int = 1_767_225_600_000  # 2026-01-01
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[tuple[str, bytes, bytes | None]] = field(default_factory=list)
    deleted: dict[str, set[str]] = field(default_factory=lambda: {CUSTOMERS: set(), INVOICES: set()})

    def _table(self, table: str) -> dict[str, dict[str, Any]]:
        return self.customers if table == CUSTOMERS else self.invoices

    def _emit(self, table: str, op: str, row: dict[str, Any] | None, key_id: str) -> None:
        self.lsn += 100
        self.ts_ms += 10
        self.events.append(envelope(self.prefix, table, op, row, key_id, self.lsn, self.ts_ms))

    def create(self, table: str, row: dict[str, Any]) -> str:
        self._table(table)[row["id"]] = row
        self._emit(table, "c", row, row["id"])
        return row["id"]

    def update(self, table: str, row_id: str, **changes: Any) -> None:
        row = self._table(table)[row_id]
        row.update(changes)
        row["updated_at"] = row["updated_at"] + dt.timedelta(seconds=1)
        self._emit(table, "u", row, row_id)

    def delete(self, table: str, row_id: str) -> None:
        self._table(table).pop(row_id)
        self.deleted[table].add(row_id)
        self._emit(table, "d", None, row_id)
        topic = _entity(table).topic(self.prefix)
        self.events.append((topic, json.dumps({"id": row_id}).encode(), None))  # the tombstone

    def poison(self, table: str, key: bytes, value: bytes) -> None:
        self.events.append((_entity(table).topic(self.prefix), key, value))

    def load(self, database_url: str) -> None:
        """Write the final rows with COPY (customers first: invoices reference them)."""
        with psycopg.connect(database_url) as conn, conn.cursor() as cur:
            for table, columns, rows in (
                (CUSTOMERS, CUSTOMER_COLUMNS, self.customers.values()),
                (INVOICES, INVOICE_COLUMNS, self.invoices.values()),
            ):
                with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(
                            [json.dumps(row[c]) if c in _JSON_COLUMNS else row[c] for c in columns]
                        )


def bulk_history(
    prefix: str,
    customers: int,
    updates_per_customer: int,
    invoices: int,
    updates_per_invoice: int,
    seed: int = 7,
) -> History:
    """Customers created in order; their updates and the invoices spread at random over the rest.

    The update of an entity lands anywhere after its create, as in a real history where a customer
    is edited weeks later; so a replay can only fold updates that are close together.
    """
    rng = random.Random(seed)
    history = History(prefix)
    steps: list[tuple[float, str, int]] = []
    for n in range(customers):
        steps.append((n / customers, "create_customer", n))
        for _ in range(updates_per_customer):
            steps.append((rng.uniform(n / customers, 1.0), "update_customer", n))
    for m in range(invoices):
        n = rng.randrange(customers)
        at = rng.uniform(n / customers, 1.0)
        steps.append((at, "create_invoice", m * customers + n))
        for _ in range(updates_per_invoice):
            steps.append((rng.uniform(at, 1.0), "update_invoice", m))
    steps.sort(key=lambda s: (s[0], s[1] != "create_customer", s[1] != "create_invoice"))
    customer_ids: list[str] = [""] * customers
    invoice_ids: list[str] = [""] * invoices
    pending_invoice_updates: dict[int, int] = {}
    for _, kind, n in steps:
        if kind == "create_customer":
            customer_ids[n] = history.create(CUSTOMERS, customer_row(n, rng))
        elif kind == "update_customer":
            history.update(CUSTOMERS, customer_ids[n], phone=f"+27 82 {rng.randrange(10**7):07d}")
        elif kind == "create_invoice":
            m, c = divmod(n, customers)
            invoice_ids[m] = history.create(INVOICES, invoice_row(m, customer_ids[c], rng))
            for _ in range(pending_invoice_updates.pop(m, 0)):
                history.update(INVOICES, invoice_ids[m], due_date=dt.date(2026, 12, rng.randint(1, 31)))
        elif kind == "update_invoice":
            if invoice_ids[n]:
                history.update(INVOICES, invoice_ids[n], due_date=dt.date(2026, 12, rng.randint(1, 31)))
            else:  # sorted before its create by a tie: apply right after the create
                pending_invoice_updates[n] = pending_invoice_updates.get(n, 0) + 1
    return history


def _entity(table: str) -> EntityType:
    return next(entity for entity in EntityType if entity.table == table)
