"""The in-memory source database: PostgreSQL's constraints, and Debezium's events of every change.

Every event is decoded with the pipeline's own decoder, so the stream is the real format."""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal
from typing import Any

import pytest
from psycopg import errors

from consumer.model.events import UNAVAILABLE_PLACEHOLDER, ChangeEvent, EntityType, Op
from consumer.pipeline.codec.decode import decode_event
from simulation.database.source import MemorySource, WriteBackRefused
from simulation.database.store import MemoryStore
from simulation.database.tables import MemoryDatabase

LONG = "n" * 2001  # longer than the toast threshold


class FakeBroker:
    """The one method the source uses of `simulation.kafka.MemoryBroker`."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None, int]] = []

    def append(
        self, topic: str, key: bytes | None, value: bytes | None, *, headers: Any = (), timestamp_ms: int
    ) -> tuple[int, int]:
        self.records.append((topic, key, value, timestamp_ms))
        return 0, len(self.records) - 1

    def events(self) -> list[ChangeEvent]:
        return [decode_event(t, k, v, topic_prefix="zoho-cdc") for t, k, v, _ in self.records]

    def after(self, n: int) -> dict[str, Any]:
        value = self.records[n][2]
        assert value is not None
        return json.loads(value)["after"]  # type: ignore[no-any-return]


def world(seed: int = 7) -> tuple[MemorySource, FakeBroker]:
    broker = FakeBroker()
    return MemorySource(broker, random.Random(seed)), broker


def customer(source: MemorySource, number: str = "CT-1", **more: Any) -> str:
    return source.insert("customers", {"account_number": number, "first_name": "Nomvula", **more})


def invoice(source: MemorySource, customer_id: str, number: str = "INV-1", **more: Any) -> str:
    row = {
        "customer_id": customer_id,
        "invoice_number": number,
        "invoice_date": dt.date(2026, 12, 1),
        "subtotal": Decimal("100"),
        "vat_amount": Decimal("15"),
        "total_amount": Decimal("115"),
        "line_items": [{"quantity": 1, "unit_price": 100, "description": "x"}],
        **more,
    }
    return source.insert("customer_invoices", row)


def test_an_insert_streams_a_create_that_decodes_to_the_stored_row() -> None:
    source, broker = world()
    cid = customer(source, billing_address={"zip": "8001", "city": "Cape Town"})
    iid = invoice(source, cid)
    [c, i] = broker.events()
    assert (c.op, c.entity_type, c.entity_id) == (Op.CREATE, EntityType.CUSTOMER, cid)
    assert c.row == source.row("customers", cid)
    assert i.row == source.row("customer_invoices", iid)
    assert i.row is not None and i.row["total_amount"] == Decimal("115.00") and i.row["currency"] == "ZAR"
    assert broker.records[0][0] == "zoho-cdc.public.customers"
    assert broker.records[1][0] == "zoho-cdc.public.customer_invoices"


def test_each_change_has_a_higher_lsn_than_the_last() -> None:
    source, broker = world()
    cid = customer(source)
    source.update("customers", cid, phone="1")
    source.update("customers", cid, phone="2")
    lsns = [e.lsn for e in broker.events()]
    assert all(lsn is not None for lsn in lsns) and lsns == sorted(set(lsns))  # type: ignore[type-var]


def test_an_update_leaving_a_toasted_text_column_alone_streams_the_placeholder() -> None:
    source, broker = world()
    cid = customer(source, notes=LONG)
    source.update("customers", cid, email="n@example.co.za")
    assert broker.after(1)["notes"] == UNAVAILABLE_PLACEHOLDER  # as Debezium writes it (fixtures: toast)
    update = broker.events()[1]
    assert update.unavailable == frozenset({"notes"}) and "notes" not in (update.row or {})
    assert source.row("customers", cid)["notes"] == LONG  # type: ignore[index]


def test_toasted_jsonb_columns_stream_the_placeholder_as_plain_text() -> None:
    source, broker = world()
    items = [{"description": "d" * 50, "quantity": 1, "unit_price": 1}] * 40
    cid = customer(source, billing_address={"street": "s" * 2100})
    invoice(source, cid, line_items=items)
    source.update("customers", cid, phone="1")
    source.update("customer_invoices", source.rows("customer_invoices")[0]["id"], status="sent")
    assert broker.after(2)["billing_address"] == UNAVAILABLE_PLACEHOLDER
    assert broker.after(3)["line_items"] == UNAVAILABLE_PLACEHOLDER
    events = broker.events()
    assert events[2].unavailable == {"billing_address"} and events[3].unavailable == {"line_items"}


def test_a_short_value_or_a_named_column_is_streamed_whole() -> None:
    source, broker = world()
    cid = customer(source, notes="short")
    source.update("customers", cid, phone="1")
    source.update("customers", cid, notes=LONG)
    source.update("customers", cid, notes=LONG, phone="2")  # named: PostgreSQL logs the value anew
    assert [e.unavailable for e in broker.events()] == [frozenset()] * 4
    assert broker.after(3)["notes"] == LONG


def test_a_delete_streams_the_delete_then_a_tombstone() -> None:
    source, broker = world()
    cid = customer(source)
    assert source.delete("customers", cid)
    assert [e.op for e in broker.events()] == [Op.CREATE, Op.DELETE, Op.TOMBSTONE]
    assert broker.records[2][2] is None and broker.records[2][1] == broker.records[1][1]
    assert source.row("customers", cid) is None and not source.delete("customers", cid)


def test_a_snapshot_reads_every_row_at_one_position() -> None:
    source, broker = world()
    ids = [customer(source, f"CT-{n}") for n in range(3)]
    assert source.snapshot("customers") == 3
    reads = broker.events()[3:]
    assert [e.op for e in reads] == [Op.READ] * 3 and all(e.snapshot for e in reads)
    assert [e.entity_id for e in reads] == ids and len({e.lsn for e in reads}) == 1


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda s, c: customer(s, "CT-1"), errors.UniqueViolation),
        (lambda s, c: s.insert("customers", {"first_name": "no number"}), errors.NotNullViolation),
        (lambda s, c: customer(s, "CT-2", status="gone"), errors.CheckViolation),
        (
            lambda s, c: invoice(s, "0b2a3b2c-0000-4000-8000-000000000000", "INV-2"),
            errors.ForeignKeyViolation,
        ),
        (lambda s, c: s.delete("customers", c), errors.ForeignKeyViolation),
        (lambda s, c: s.update("customers", c, nickname="x"), errors.UndefinedColumn),
        (lambda s, c: s.update("customers", c, account_number="CT-9"), errors.UniqueViolation),
    ],
)
def test_a_change_the_constraints_refuse_leaves_table_and_stream_unchanged(change: Any, error: type) -> None:
    source, broker = world()
    cid = customer(source)
    invoice(source, cid)  # the customer has an invoice: it cannot be deleted
    customer(source, "CT-9")
    before = (source.rows("customers"), source.rows("customer_invoices"), len(broker.records))
    with pytest.raises(error):
        change(source, cid)
    assert (source.rows("customers"), source.rows("customer_invoices"), len(broker.records)) == before


def test_ids_are_drawn_from_the_seed() -> None:
    assert customer(world(3)[0]) == customer(world(3)[0]) != customer(world(4)[0])


def test_a_write_back_updates_only_when_a_value_changes_or_zoho_was_called() -> None:
    source, broker = world()
    cid = customer(source, notes=LONG)
    column = "zoho_billing_customer_id"
    assert source.write_back(EntityType.CUSTOMER, cid, column, "Z1", "synced", called=True)
    assert not source.write_back(EntityType.CUSTOMER, cid, column, "Z1", "synced", called=False)
    assert not source.write_back(EntityType.CUSTOMER, cid, column, None, "synced", called=False)
    assert source.write_back(EntityType.CUSTOMER, cid, column, None, "failed", called=False)
    row = source.row("customers", cid)
    assert row is not None and (row[column], row["zoho_sync_status"]) == ("Z1", "failed")  # id kept
    echoes = broker.events()[1:]
    assert len(echoes) == 2 and all(e.unavailable == {"notes"} for e in echoes)  # a normal UPDATE
    assert echoes[0].row["zoho_last_synced_at"] is not None  # type: ignore[index]
    assert echoes[1].row["zoho_last_synced_at"] == echoes[0].row["zoho_last_synced_at"]  # type: ignore[index]


def test_a_refused_write_back_raises_and_changes_nothing() -> None:
    source, broker = world()
    cid = customer(source)
    source.refusing[cid] = "CheckViolation: zoho_sync_status"
    with pytest.raises(WriteBackRefused):
        source.write_back(EntityType.CUSTOMER, cid, "zoho_billing_customer_id", "Z1", "synced", called=True)
    assert source.row("customers", cid)["zoho_sync_status"] is None  # type: ignore[index]
    assert len(broker.records) == 1


async def test_the_stores_source_reads_are_shaped_as_the_source_reader_gives_them() -> None:
    source, _ = world()
    store = MemoryStore(MemoryDatabase(source), pauses=False)
    await store.open()
    cid = customer(source)
    invoice(source, cid, currency="US")  # char(3): stored padded, read back stripped
    upper = cid.upper()
    assert set(await store.source.rows(EntityType.CUSTOMER, [upper, "not-a-uuid"])) == {upper}  # as asked
    assert await store.source_row(EntityType.CUSTOMER, "not-a-uuid") is None
    assert await store.first_child_value(EntityType.INVOICE, "customer_id", "currency", cid) == "US"
    row = await store.source_row(EntityType.CUSTOMER, cid)
    assert row is not None and row["id"] == cid
    row["first_name"] = "changed by the caller"
    assert (await store.source_row(EntityType.CUSTOMER, cid))["first_name"] == "Nomvula"  # type: ignore[index]
