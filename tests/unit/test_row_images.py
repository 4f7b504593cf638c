"""Partial images are merged, never sent as they are: filling, coalescing, remembering and digests."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from consumer.model.events import ChangeEvent, EntityType, Op
from consumer.pipeline.codec.decode import decode_event
from consumer.pipeline.decision.row_images import (
    coalesce,
    fill_unavailable,
    is_partial,
    recalled,
    remembered,
    state_digest,
)
from tests.unit.test_mapping import FIXTURES, INVOICE_ROW

INVOICE_ID = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"


def _event(
    op: Op, row: dict[str, Any] | None, unavailable: frozenset[str] = frozenset(), lsn: int = 1
) -> ChangeEvent:
    if row is not None:
        row = {k: v for k, v in row.items() if k not in unavailable}
    return ChangeEvent(EntityType.INVOICE, INVOICE_ID, op, row, unavailable, lsn, 1, False, 1)


PARTIAL = frozenset({"line_items"})


def test_a_partial_image_takes_the_missing_columns_from_a_known_full_image():
    partial = _event(Op.UPDATE, {**INVOICE_ROW, "status": "sent"}, PARTIAL)
    assert is_partial(partial)
    filled = fill_unavailable(partial, INVOICE_ROW)
    assert not is_partial(filled)
    assert filled.row == {**INVOICE_ROW, "status": "sent"}
    assert fill_unavailable(partial, None) is partial  # nothing known: still partial


def test_a_full_image_followed_by_a_partial_one_coalesces_into_the_whole_newest_state():
    full = _event(Op.CREATE, INVOICE_ROW, lsn=1)
    partial = _event(Op.UPDATE, {**INVOICE_ROW, "due_date": dt.date(2027, 1, 1)}, PARTIAL, lsn=2)
    merged = coalesce([full, partial])
    assert merged.lsn == 2 and not merged.unavailable
    assert merged.row is not None
    assert merged.row["line_items"] == INVOICE_ROW["line_items"]
    assert merged.row["due_date"] == dt.date(2027, 1, 1)


def test_a_delete_breaks_the_chain_so_a_later_partial_image_stays_partial():
    events = [
        _event(Op.CREATE, INVOICE_ROW),
        _event(Op.DELETE, None),
        _event(Op.UPDATE, INVOICE_ROW, PARTIAL),
    ]
    assert coalesce(events).unavailable == PARTIAL
    assert coalesce(events[:2]).op is Op.DELETE


_values = st.one_of(st.none(), st.text(max_size=5), st.integers(-5, 5))


@st.composite
def _chains(draw: Any) -> list[ChangeEvent]:
    columns = ["status", "subtotal", "line_items", "due_date"]
    events = []
    for n in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from([Op.CREATE, Op.UPDATE, Op.UPDATE, Op.DELETE]))
        if op is Op.DELETE:
            events.append(_event(op, None, lsn=n))
            continue
        row = {"id": INVOICE_ID, **{c: draw(_values) for c in columns}}
        missing = frozenset(draw(st.sets(st.sampled_from(columns))))
        events.append(_event(op, row, missing, lsn=n))
    return events


@given(_chains())
def test_coalescing_is_the_newest_event_with_each_missing_column_from_the_latest_image_that_had_it(events):
    merged = coalesce(events)
    newest = events[-1]
    assert (merged.op, merged.lsn) == (newest.op, newest.lsn)
    if newest.row is None:
        assert merged.row is None
        return
    assert merged.row is not None
    # Only images after the last delete describe the row that exists now.
    last_delete = max((i for i, e in enumerate(events) if e.row is None), default=-1)
    chain = events[last_delete + 1 :]
    for column in {"id", "status", "subtotal", "line_items", "due_date"}:
        holders = [e for e in chain if e.row is not None and column in e.row]
        if column in newest.row:
            assert merged.row[column] == newest.row[column]
        elif holders:
            assert merged.row[column] == holders[-1].row[column]  # type: ignore[index]
        else:
            assert column in merged.unavailable and column not in merged.row
    assert set(merged.row).isdisjoint(merged.unavailable)


def test_remembered_rows_come_back_as_the_decoder_s_values():
    row = {
        **INVOICE_ROW,
        "subtotal": Decimal("1200.50"),
        "invoice_date": dt.date(2026, 11, 1),
        "line_items": [{"description": "x", "quantity": 1, "unit_price": "1.00"}],
        "notes": "not remembered",
    }
    stored = json.loads(json.dumps(remembered(EntityType.INVOICE, row)))  # as jsonb gives it back
    back = recalled(stored)
    assert back is not None and "notes" not in back
    assert back["subtotal"] == Decimal("1200.50") and back["invoice_date"] == dt.date(2026, 11, 1)
    assert back["line_items"] == row["line_items"]
    assert recalled(None) is None


@given(
    st.dictionaries(
        st.sampled_from(["status", "subtotal", "due_date", "line_items", "notes", "zoho_sync_status"]),
        st.one_of(
            st.none(),
            st.text(max_size=4),
            st.decimals(allow_nan=False, allow_infinity=False, places=2),
            st.dates(),
            st.lists(st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), max_size=2),
        ),
    )
)
def test_remembering_round_trips_every_decoded_value_kind(row):
    stored = json.loads(json.dumps(remembered(EntityType.INVOICE, row)))
    back = recalled(stored) or {}
    assert back == {k: v for k, v in row.items() if k not in ("notes", "zoho_sync_status")}


def test_the_state_digest_ignores_columns_the_mapping_does_not_read():
    base = state_digest(EntityType.INVOICE, INVOICE_ROW)
    echo = {**INVOICE_ROW, "zoho_sync_status": "failed", "zoho_billing_invoice_id": "9", "updated_at": "now"}
    assert state_digest(EntityType.INVOICE, echo) == base
    assert state_digest(EntityType.INVOICE, {**INVOICE_ROW, "status": "paid"}) != base


def _decoded(stem: str, n: int) -> ChangeEvent:
    line = json.loads((FIXTURES / f"{stem}.jsonl").read_text().splitlines()[n])
    key, value = json.dumps(line["key"]).encode(), json.dumps(line["value"]).encode()
    return decode_event(line["topic"], key, value, topic_prefix="billing")


def test_the_captured_toast_update_is_made_whole_from_the_full_image_before_it():
    """Both captured shapes: an email update whose TOASTed `notes` is a placeholder, after notes changed."""
    for stem in ("events-plain-toast", "events-schemas-toast"):
        full, partial = _decoded(stem, 0), _decoded(stem, 1)
        assert partial.unavailable == {"notes"} and full.row is not None
        # notes is not mapped: the image is whole for the mapping, and its digest is that of the row.
        assert not is_partial(partial)
        merged = coalesce([full, partial])
        assert merged.row is not None and not merged.unavailable
        assert merged.row["notes"] == full.row["notes"]
        assert merged.row["email"] == partial.row["email"]  # type: ignore[index]


def test_replica_identity_full_fills_the_placeholder_from_before():
    before = {"id": INVOICE_ID, "line_items": [{"description": "a", "quantity": 1, "unit_price": "2.00"}]}
    after = {"id": INVOICE_ID, "status": "paid", "line_items": "__debezium_unavailable_value"}
    value = json.dumps({"before": before, "after": after, "op": "u", "source": {"lsn": 5}}).encode()
    event = decode_event("billing.public.customer_invoices", None, value, topic_prefix="billing")
    assert not event.unavailable
    assert event.row is not None and event.row["line_items"] == before["line_items"]
