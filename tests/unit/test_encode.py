"""`encode_event` is the exact inverse of `decode_event` for the source schema's columns."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from consumer.model.events import EntityType, Op
from consumer.pipeline.codec.decode import decode_event
from consumer.pipeline.codec.encode import encode_event

amounts = st.decimals(min_value=Decimal("-9999999999.99"), max_value=Decimal("9999999999.99"), places=2)
# Row text as PostgreSQL can hold it: never a NUL character (decode refuses one as a poison record) and
# never a lone surrogate (not UTF-8: no text column holds one, and orjson refuses it as JSON).
texts = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=20
)
moments = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1)).map(
    lambda d: d.replace(tzinfo=dt.UTC, microsecond=0)
)


@given(
    amounts,
    amounts,
    st.dates(min_value=dt.date(1971, 1, 1)),
    st.one_of(st.none(), st.dates()),
    texts,
    moments,
    st.lists(st.dictionaries(st.sampled_from(["description", "quantity"]), st.integers(0, 9)), max_size=3),
)
def test_an_encoded_invoice_decodes_to_the_same_row(subtotal, total, day, due, number, moment, items) -> None:
    row = {
        "id": str(uuid.uuid4()),
        "customer_id": str(uuid.uuid4()),
        "invoice_number": number,
        "invoice_date": day,
        "due_date": due,
        "currency": "ZAR",
        "subtotal": subtotal,
        "vat_amount": Decimal("0.00"),
        "total_amount": total,
        "status": "sent",
        "line_items": items,
        "created_at": moment,
        "updated_at": moment,
    }
    key, value = encode_event(EntityType.INVOICE, "c", row, key_id=row["id"], topic_prefix="p", lsn=7)
    event = decode_event(EntityType.INVOICE.topic("p"), key, value, topic_prefix="p")
    assert event.op is Op.CREATE and event.lsn == 7
    assert dict(event.row) == row  # type: ignore[arg-type]


def test_an_encoded_customer_delete_carries_only_the_key() -> None:
    key, value = encode_event(EntityType.CUSTOMER, "d", None, key_id="11111111-1111-1111-1111-111111111111")
    event = decode_event(EntityType.CUSTOMER.topic("zoho-cdc"), key, value, topic_prefix="zoho-cdc")
    assert event.op is Op.DELETE and event.row is None
    assert event.entity_id == "11111111-1111-1111-1111-111111111111"
