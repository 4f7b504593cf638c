"""Test helpers: write source rows to PostgreSQL and emit the Debezium events they would produce.

Events are built in the exact shape of the captured fixtures (JsonConverter, schemas.enable=false,
decimal.handling.mode=string), so consumer tests do not need the JVM; the relay's own tests and the
end-to-end tests cover the real Debezium path.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from decimal import Decimal
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer
from psycopg.rows import dict_row

from consumer.model.events import EntityType
from consumer.pipeline.codec.encode import encode_event

_LSN = itertools.count(40_000_000, 1000)

_ENTITY = {"customers": EntityType.CUSTOMER, "customer_invoices": EntityType.INVOICE}


def envelope(
    topic_prefix: str,
    table: str,
    op: str,
    row: dict[str, Any] | None,
    key_id: str,
    lsn: int | None = None,
    snapshot: str = "false",
) -> tuple[str, bytes, bytes]:
    entity_type = _ENTITY[table]
    key, value = encode_event(
        entity_type,
        op,
        row,
        key_id=key_id,
        topic_prefix=topic_prefix,
        lsn=lsn if lsn is not None else next(_LSN),
        snapshot=snapshot,
    )
    return entity_type.topic(topic_prefix), key, value


class Source:
    """The source tables of one test database, plus the Debezium events their changes produce."""

    def __init__(self, database_url: str, bootstrap: str, topic_prefix: str) -> None:
        self.database_url = database_url
        self.bootstrap = bootstrap
        self.prefix = topic_prefix
        self.pending: list[tuple[str, bytes, bytes | None]] = []

    def _row(self, table: str, row_id: str) -> dict[str, Any]:
        with psycopg.connect(self.database_url) as conn:
            cur = conn.cursor(row_factory=dict_row)
            cur.execute(f"SELECT * FROM {table} WHERE id = %s", (row_id,))  # noqa: S608 - test tables only
            row = cur.fetchone()
        assert row is not None
        return row

    def insert_customer(self, n: int, **fields: Any) -> str:
        values = {
            "account_number": f"CT-2025-{n:05d}",
            "email": f"customer{n}@example.co.za",
            "first_name": f"First{n}",
            "last_name": f"Last{n}",
            "phone": f"+27 21 555 {n:04d}",
            "account_type": "personal",
            "billing_address": json.dumps(
                {"street": f"{n} Main Rd", "city": "Cape Town", "zip": "8001", "country": "South Africa"}
            ),
        } | fields
        return self._insert("customers", values)

    def insert_invoice(self, customer_id: str, number: str, **fields: Any) -> str:
        values = {
            "customer_id": customer_id,
            "invoice_number": number,
            "invoice_date": dt.date(2026, 11, 1),
            "due_date": dt.date(2026, 11, 30),
            "currency": "ZAR",
            "subtotal": Decimal("100.00"),
            "vat_amount": Decimal("15.00"),
            "total_amount": Decimal("115.00"),
            "status": "sent",
            "line_items": json.dumps(
                [{"description": "Monthly plan", "quantity": 1, "unit_price": "100.00"}]
            ),
        } | fields
        return self._insert("customer_invoices", values)

    def _insert(self, table: str, values: dict[str, Any]) -> str:
        """Insert a row, queue the create event Debezium would emit for it, and return its id."""
        cols = ", ".join(values)
        marks = ", ".join(["%s"] * len(values))
        with psycopg.connect(self.database_url) as conn:
            row_id = conn.execute(
                f"INSERT INTO {table} ({cols}) VALUES ({marks}) RETURNING id",  # noqa: S608 - test tables only
                list(values.values()),
            ).fetchone()[0]  # type: ignore[index]
        self.emit(table, "c", str(row_id))
        return str(row_id)

    def update(self, table: str, row_id: str, **fields: Any) -> None:
        sets = ", ".join(f"{c} = %s" for c in fields)
        with psycopg.connect(self.database_url) as conn:
            conn.execute(f"UPDATE {table} SET {sets} WHERE id = %s", [*fields.values(), row_id])  # noqa: S608
        self.emit(table, "u", row_id)

    def delete(self, table: str, row_id: str) -> None:
        with psycopg.connect(self.database_url) as conn:
            conn.execute(f"DELETE FROM {table} WHERE id = %s", (row_id,))  # noqa: S608
        topic, key, value = envelope(self.prefix, table, "d", None, row_id)
        self.pending.append((topic, key, value))
        self.pending.append((topic, key, None))  # the tombstone

    def emit(self, table: str, op: str, row_id: str) -> None:
        topic, key, value = envelope(self.prefix, table, op, self._row(table, row_id), row_id)
        self.pending.append((topic, key, value))

    def emit_raw(self, table: str, key: bytes | None, value: bytes | None) -> None:
        self.pending.append((f"{self.prefix}.public.{table}", key or b"", value))

    async def flush(self) -> int:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=False)
        await producer.start()
        try:
            for topic, key, value in self.pending:
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()
        sent, self.pending = len(self.pending), []
        return sent

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def sql_value(database_url: str, sql: str, *params: Any) -> Any:
    """The first column of the first row a query returns, or None (one connection per call)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
    return row[0] if row else None


def sql_exec(database_url: str, sql: str, *params: Any) -> None:
    """Run one statement in its own committed transaction, as an application would."""
    with psycopg.connect(database_url) as conn:
        conn.execute(sql, params)  # type: ignore[arg-type]
