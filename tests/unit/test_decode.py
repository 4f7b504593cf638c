"""Specification of `decode_event` against real Debezium 3.6.3 events and edge cases."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.model.events import UNAVAILABLE_PLACEHOLDER, ChangeEvent, DecodeError, EntityType, Op
from consumer.pipeline.codec.decode import decode_event

FIXTURES = Path(__file__).parent.parent / "fixtures" / "debezium"
PREFIX = "billing"
CUSTOMERS = f"{PREFIX}.public.customers"
INVOICES = f"{PREFIX}.public.customer_invoices"
CUSTOMER_ID = "11111111-1111-1111-1111-111111111111"
INVOICE_ID = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"


def _lines(stem: str) -> list[dict[str, Any]]:
    text = (FIXTURES / f"{stem}.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


FILES = {
    stem: _lines(stem)
    for stem in ("events-plain", "events-schemas", "events-plain-toast", "events-schemas-toast")
}
ALL_LINES = [(stem, n) for stem, lines in FILES.items() for n in range(len(lines))]


def _enc(doc: Any) -> bytes | None:
    return None if doc is None else json.dumps(doc).encode()


def _decode_line(stem: str, n: int) -> ChangeEvent:
    line = FILES[stem][n]
    return decode_event(line["topic"], _enc(line["key"]), _enc(line["value"]), topic_prefix=PREFIX)


# --- the captured fixtures -----------------------------------------------------------------


@pytest.mark.parametrize(("stem", "n"), ALL_LINES, ids=[f"{s}:{n + 1}" for s, n in ALL_LINES])
def test_every_captured_event_decodes_with_consistent_shape(stem: str, n: int) -> None:
    line = FILES[stem][n]
    event = _decode_line(stem, n)
    assert event.entity_type is (EntityType.CUSTOMER if line["topic"] == CUSTOMERS else EntityType.INVOICE)
    key = line["key"].get("payload", line["key"])
    assert event.entity_id == key["id"]
    if event.op in (Op.DELETE, Op.TOMBSTONE):
        assert event.row is None
    else:
        assert event.row is not None and event.row["id"] == event.entity_id
        assert UNAVAILABLE_PLACEHOLDER not in event.row.values()
    if event.op is not Op.TOMBSTONE:
        assert (
            isinstance(event.lsn, int)
            and isinstance(event.tx_id, int)
            and isinstance(event.source_ts_ms, int)
        )
        assert event.version == (event.lsn, 0)


@pytest.mark.parametrize(
    ("plain", "schemas"), [("events-plain", "events-schemas"), ("events-plain-toast", "events-schemas-toast")]
)
def test_plain_and_schema_envelopes_of_the_same_changes_decode_to_equal_rows(
    plain: str, schemas: str
) -> None:
    assert len(FILES[plain]) == len(FILES[schemas])
    for n in range(len(FILES[plain])):
        a, b = _decode_line(plain, n), _decode_line(schemas, n)
        assert (a.entity_type, a.entity_id, a.op, a.unavailable, a.snapshot) == (
            b.entity_type,
            b.entity_id,
            b.op,
            b.unavailable,
            b.snapshot,
        ), f"line {n + 1}"
        assert a.row == b.row, f"line {n + 1}"


@pytest.mark.parametrize("stem", ["events-plain", "events-schemas"])
def test_snapshot_invoice_has_decimal_amounts_dates_and_parsed_line_items(stem: str) -> None:
    event = _decode_line(stem, 3)
    assert event.op is Op.READ and event.snapshot
    row = event.row
    assert row is not None
    assert row["subtotal"] == Decimal("869.57") and isinstance(row["subtotal"], Decimal)
    assert row["vat_amount"] == Decimal("130.43")
    assert row["total_amount"] == Decimal("1000.00")
    assert row["invoice_date"] == dt.date(2025, 11, 1) and type(row["invoice_date"]) is dt.date
    assert row["due_date"] == dt.date(2025, 11, 15)
    assert row["line_items"] == [
        {"quantity": 1, "unit_price": 869.57, "description": "Fibre 100Mbps - November"}
    ]
    assert row["created_at"] == dt.datetime(2026, 11, 24, 23, 52, 35, 931715, tzinfo=dt.UTC)
    assert row["created_at"].tzinfo is not None
    assert row["currency"] == "ZAR"


@pytest.mark.parametrize("stem", ["events-plain", "events-schemas"])
def test_customer_jsonb_address_is_parsed_and_null_columns_stay_none(stem: str) -> None:
    row = _decode_line(stem, 0).row
    assert row is not None
    assert row["billing_address"] == {
        "zip": "8001",
        "city": "Cape Town",
        "street": "1 Main Rd",
        "country": "South Africa",
    }
    assert row["company_name"] is None and row["zoho_billing_customer_id"] is None


@pytest.mark.parametrize("stem", ["events-plain", "events-schemas"])
def test_snapshot_flag_follows_source_snapshot_enum(stem: str) -> None:
    flags = [_decode_line(stem, n).snapshot for n in range(len(FILES[stem]))]
    # lines 1-4 are the initial snapshot ("first", "true", "last_in_data_collection", "last")
    assert flags == [True] * 4 + [False] * (len(flags) - 4)


@pytest.mark.parametrize("stem", ["events-plain-toast", "events-schemas-toast"])
def test_toast_placeholder_column_is_absent_from_row_and_listed_unavailable(stem: str) -> None:
    event = _decode_line(stem, 1)
    assert event.op is Op.UPDATE
    assert event.unavailable == frozenset({"notes"})
    assert event.row is not None and "notes" not in event.row
    assert event.row["email"] == "nomvula@example.co.za"
    full = _decode_line(stem, 0)
    assert full.unavailable == frozenset() and len(full.row["notes"]) > 8000  # type: ignore[index]


@pytest.mark.parametrize("stem", ["events-plain", "events-schemas"])
def test_deletes_trust_only_the_key_and_tombstones_follow(stem: str) -> None:
    events = [_decode_line(stem, n) for n in range(9, 13)]
    assert [e.op for e in events] == [Op.DELETE, Op.TOMBSTONE, Op.DELETE, Op.TOMBSTONE]
    qa_bot = "33333333-3333-3333-3333-333333333333"
    assert [e.entity_id for e in events] == [INVOICE_ID, INVOICE_ID, qa_bot, qa_bot]
    assert all(e.row is None and e.unavailable == frozenset() for e in events)
    assert events[1].lsn is None and events[1].version == (0, 0)


@pytest.mark.parametrize("stem", ["events-plain-toast", "events-schemas-toast"])
def test_created_invoice_without_due_date(stem: str) -> None:
    event = _decode_line(stem, 2)
    assert event.op is Op.CREATE and event.row is not None
    assert event.row["due_date"] is None
    assert event.row["total_amount"] == Decimal("115.00")


# --- hand-made variants ----------------------------------------------------------------------


def _customer_after(**overrides: Any) -> dict[str, Any]:
    row = dict(FILES["events-plain"][0]["value"]["after"])
    row.update(overrides)
    return row


def _envelope(
    after: dict[str, Any] | None, op: str = "u", before: Any = None, **source: Any
) -> dict[str, Any]:
    return {
        "before": before,
        "after": after,
        "source": {"lsn": 100, "txId": 7, "ts_ms": 1, "snapshot": "false", **source},
        "op": op,
    }


def _decode(value: Any, key: Any = {"id": CUSTOMER_ID}, topic: str = CUSTOMERS) -> ChangeEvent:  # noqa: B006
    return decode_event(topic, _enc(key), _enc(value), topic_prefix=PREFIX)


def test_missing_key_falls_back_to_the_id_in_after() -> None:
    event = decode_event(CUSTOMERS, None, _enc(_envelope(_customer_after())), topic_prefix=PREFIX)
    assert event.entity_id == CUSTOMER_ID


def test_missing_key_on_delete_falls_back_to_the_id_in_before() -> None:
    value = _envelope(None, op="d", before={"id": CUSTOMER_ID, "account_number": ""})
    event = decode_event(CUSTOMERS, b"null", _enc(value), topic_prefix=PREFIX)
    assert (event.op, event.entity_id, event.row) == (Op.DELETE, CUSTOMER_ID, None)


def test_json_null_value_is_a_tombstone() -> None:
    event = decode_event(CUSTOMERS, _enc({"id": CUSTOMER_ID}), b"null", topic_prefix=PREFIX)
    assert event.op is Op.TOMBSTONE and event.entity_id == CUSTOMER_ID


def test_source_lsn_tx_and_commit_time_are_carried() -> None:
    event = _decode(_envelope(_customer_after(), lsn=42, txId=9, ts_ms=1234, snapshot="incremental"))
    assert (event.lsn, event.tx_id, event.source_ts_ms, event.snapshot) == (42, 9, 1234, True)
    assert event.version == (42, 0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1000.00", Decimal("1000.00")),
        ("-12.50", Decimal("-12.50")),
        ("AYag", Decimal("1000.00")),  # precise without schema: scale 2 of numeric(12,2)
        ("/w==", Decimal("-0.01")),  # signed two's complement
        ("AA==", Decimal("0.00")),
        (869.57, Decimal("869.57")),  # double mode
        (12, Decimal("12")),
    ],
)
def test_schemaless_numeric_columns_decode_every_decimal_mode(raw: Any, expected: Decimal) -> None:
    after = {"id": INVOICE_ID, "subtotal": raw}
    row = _decode(_envelope(after), key={"id": INVOICE_ID}, topic=INVOICES).row
    assert row is not None and row["subtotal"] == expected and isinstance(row["subtotal"], Decimal)


def _invoice_schema_value(after: dict[str, Any], fields: list[dict[str, Any]]) -> dict[str, Any]:
    row_schema = {"type": "struct", "optional": True, "fields": fields}
    schema = {
        "type": "struct",
        "fields": [{**row_schema, "field": "before"}, {**row_schema, "field": "after"}],
    }
    return {"schema": schema, "payload": _envelope(after)}


def test_variable_scale_decimal_struct_and_explicit_scale_are_honoured() -> None:
    fields = [
        {"type": "string", "field": "id"},
        {"type": "struct", "name": "io.debezium.data.VariableScaleDecimal", "field": "subtotal"},
        {
            "type": "bytes",
            "name": "org.apache.kafka.connect.data.Decimal",
            "parameters": {"scale": "3"},
            "field": "vat_amount",
        },
        {"type": "double", "field": "total_amount"},
    ]
    after = {
        "id": INVOICE_ID,
        "subtotal": {
            "scale": 4,
            "value": base64.b64encode((-123456).to_bytes(3, "big", signed=True)).decode(),
        },
        "vat_amount": "AYag",
        "total_amount": 1.5,
    }
    row = _decode(_invoice_schema_value(after, fields), key={"id": INVOICE_ID}, topic=INVOICES).row
    assert row is not None
    assert row["subtotal"] == Decimal("-12.3456")
    assert row["vat_amount"] == Decimal("100.000")
    assert row["total_amount"] == Decimal("1.5")


def test_placeholder_in_a_bytes_column_is_unavailable_too() -> None:
    fields = [
        {"type": "string", "field": "id"},
        {"type": "bytes", "field": "blob"},
    ]
    after = {"id": INVOICE_ID, "blob": base64.b64encode(UNAVAILABLE_PLACEHOLDER.encode()).decode()}
    event = _decode(_invoice_schema_value(after, fields), key={"id": INVOICE_ID}, topic=INVOICES)
    assert event.unavailable == frozenset({"blob"}) and "blob" not in event.row  # type: ignore[operator]


def test_unknown_columns_pass_through_unchanged() -> None:
    row = _decode(_envelope(_customer_after(loyalty_tier=3))).row
    assert row is not None and row["loyalty_tier"] == 3


# --- malformed input ------------------------------------------------------------------------

GOOD_VALUE = _envelope(_customer_after())
GOOD_KEY = _enc({"id": CUSTOMER_ID})

MALFORMED: list[tuple[str, str, bytes | None, bytes | None, str]] = [
    ("not-json", CUSTOMERS, GOOD_KEY, b"{not json", "value is not JSON"),
    ("invalid-utf8", CUSTOMERS, GOOD_KEY, b"\xff\xfe\x00", "value is not JSON"),
    ("json-array", CUSTOMERS, GOOD_KEY, b"[1, 2]", "not an object"),
    ("unknown-op", CUSTOMERS, GOOD_KEY, _enc({**GOOD_VALUE, "op": "x"}), "unknown op 'x'"),
    ("truncate-op", CUSTOMERS, GOOD_KEY, _enc({**GOOD_VALUE, "op": "t"}), "unknown op 't'"),
    ("message-op", CUSTOMERS, GOOD_KEY, _enc({**GOOD_VALUE, "op": "m"}), "unknown op 'm'"),
    (
        "missing-op",
        CUSTOMERS,
        GOOD_KEY,
        _enc({k: v for k, v in GOOD_VALUE.items() if k != "op"}),
        "missing op",
    ),
    ("op-not-string", CUSTOMERS, GOOD_KEY, _enc({**GOOD_VALUE, "op": 1}), "op is a JSON number"),
    ("key-without-id", CUSTOMERS, _enc({"account_number": "x"}), _enc(GOOD_VALUE), "missing key field id"),
    ("key-not-json", CUSTOMERS, b"{", _enc(GOOD_VALUE), "key is not JSON"),
    # a lone surrogate is valid JSON text but no UTF-8 string: PostgreSQL could never store it
    (
        "lone-surrogate",
        CUSTOMERS,
        GOOD_KEY,
        _enc(_envelope(_customer_after(first_name="\ud800"))),
        "not JSON",
    ),
    ("key-lone-surrogate", CUSTOMERS, b'{"id": "\\udfff"}', _enc(GOOD_VALUE), "key is not JSON"),
    (
        "nan-literal",
        INVOICES,
        _enc({"id": INVOICE_ID}),
        b'{"op": "c", "after": {"subtotal": NaN}}',
        "not JSON",
    ),
    ("key-id-not-string", CUSTOMERS, _enc({"id": 5}), _enc(GOOD_VALUE), "key field id is not"),
    ("tombstone-without-key", CUSTOMERS, None, None, "tombstone without a key"),
    (
        "no-key-no-id",
        CUSTOMERS,
        None,
        _enc(_envelope(None, op="d", before=None)),
        "missing key field id",
    ),
    ("wrong-topic", "billing.public.orders", GOOD_KEY, _enc(GOOD_VALUE), "not a synced table topic"),
    ("other-prefix", "other.public.customers", GOOD_KEY, _enc(GOOD_VALUE), "not a synced table topic"),
    ("after-is-list", CUSTOMERS, GOOD_KEY, _enc({**GOOD_VALUE, "after": [1]}), "array 'after'"),
    ("update-without-after", CUSTOMERS, GOOD_KEY, _enc({**GOOD_VALUE, "after": None}), "null 'after'"),
    (
        "after-id-not-string",
        CUSTOMERS,
        None,
        _enc(_envelope(_customer_after(id=17))),
        "column id is a JSON number",
    ),
    (
        "key-and-row-disagree",
        CUSTOMERS,
        _enc({"id": "99999999-9999-9999-9999-999999999999"}),
        _enc(GOOD_VALUE),
        "differs from row id",
    ),
    (
        "bad-base64",
        INVOICES,
        _enc({"id": INVOICE_ID}),
        _enc(_envelope({"id": INVOICE_ID, "subtotal": "A*=="})),
        "column subtotal is neither a decimal string nor base64",
    ),
    (
        "nan-amount",
        INVOICES,
        _enc({"id": INVOICE_ID}),
        _enc(_envelope({"id": INVOICE_ID, "total_amount": "NaN"})),
        "column total_amount is not a finite number",
    ),
    (
        "bad-jsonb",
        CUSTOMERS,
        GOOD_KEY,
        _enc(_envelope(_customer_after(billing_address="{oops"))),
        "column billing_address holds malformed JSON",
    ),
    (
        "date-not-int",
        INVOICES,
        _enc({"id": INVOICE_ID}),
        _enc(_envelope({"id": INVOICE_ID, "invoice_date": [1]})),
        "column invoice_date is a JSON array",
    ),
    (
        "date-out-of-range",
        INVOICES,
        _enc({"id": INVOICE_ID}),
        _enc(_envelope({"id": INVOICE_ID, "invoice_date": 10**9})),
        "column invoice_date is not a valid date",
    ),
    (
        "bad-timestamp",
        CUSTOMERS,
        GOOD_KEY,
        _enc(_envelope(_customer_after(updated_at="yesterday"))),
        "column updated_at is not an ISO-8601 timestamp",
    ),
    (
        "lsn-not-int",
        CUSTOMERS,
        GOOD_KEY,
        _enc(_envelope(_customer_after(), lsn="12")),
        "source.lsn is not an integer",
    ),
    (
        "schema-without-scale",
        INVOICES,
        _enc({"id": INVOICE_ID}),
        _enc(
            _invoice_schema_value(
                {"id": INVOICE_ID, "subtotal": "AA=="},
                [{"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "field": "subtotal"}],
            )
        ),
        "Decimal schema without a scale",
    ),
]


@pytest.mark.parametrize(
    ("topic", "key", "value", "reason"),
    [m[1:] for m in MALFORMED],
    ids=[m[0] for m in MALFORMED],
)
def test_malformed_input_raises_decode_error_with_a_reason(
    topic: str, key: bytes | None, value: bytes | None, reason: str
) -> None:
    with pytest.raises(DecodeError) as info:
        decode_event(topic, key, value, topic_prefix=PREFIX)
    assert reason in info.value.reason
    assert str(info.value) == info.value.reason


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    topic=st.sampled_from([CUSTOMERS, INVOICES, "x"]),
    key=st.none() | st.binary(max_size=64),
    value=st.none() | st.binary(max_size=256),
)
def test_random_bytes_never_raise_anything_but_decode_error(
    topic: str, key: bytes | None, value: bytes | None
) -> None:
    try:
        decode_event(topic, key, value, topic_prefix=PREFIX)
    except DecodeError:
        pass


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
_columns = st.sampled_from(
    ["id", "subtotal", "invoice_date", "line_items", "billing_address", "created_at", "email", "other"]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    topic=st.sampled_from([CUSTOMERS, INVOICES]),
    after=st.none() | st.dictionaries(_columns, _json, max_size=6),
    op=st.sampled_from(["c", "r", "u", "d", "t", None]),
    key=st.none() | _json,
    source=_json,
)
def test_random_json_shapes_never_raise_anything_but_decode_error(
    topic: str, after: Any, op: Any, key: Any, source: Any
) -> None:
    value = {"before": after, "after": after, "op": op, "source": source}
    try:
        decode_event(topic, _enc(key), _enc(value), topic_prefix=PREFIX)
    except DecodeError:
        pass


_schema_names = st.sampled_from(
    [
        "org.apache.kafka.connect.data.Decimal",
        "io.debezium.data.VariableScaleDecimal",
        "io.debezium.time.Date",
        "io.debezium.time.ZonedTimestamp",
        "io.debezium.data.Json",
    ]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    column=st.sampled_from(["id", "subtotal", "invoice_date", "line_items", "created_at", "other"]),
    name=_schema_names | _json,
    type_=st.sampled_from(["bytes", "string", "double", "struct"]) | _json,
    parameters=_json,
    raw=_json | st.sampled_from(["AYag", "/w==", "1.5", UNAVAILABLE_PLACEHOLDER]),
)
def test_random_column_schemas_never_raise_anything_but_decode_error(
    column: str, name: Any, type_: Any, parameters: Any, raw: Any
) -> None:
    field = {"field": column, "name": name, "type": type_, "parameters": parameters}
    value = _invoice_schema_value({"id": INVOICE_ID, column: raw}, [field])
    try:
        decode_event(INVOICES, None, _enc(value), topic_prefix=PREFIX)
    except DecodeError:
        pass


# Round trip: one generated invoice row, written as Debezium would in string mode without schemas
# and in precise mode with schemas, decodes to the same ChangeEvent.
_INVOICE_SCHEMA = FILES["events-schemas"][3]["value"]["schema"]
_INVOICE_SCHEMA_KEY = FILES["events-schemas"][3]["key"]["schema"]
_amounts = st.decimals(min_value=Decimal("-9999999999.99"), max_value=Decimal("9999999999.99"), places=2)
_dates = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2200, 12, 31))
_line_items = st.lists(
    st.fixed_dictionaries(
        {
            "description": st.text(max_size=30),
            "quantity": st.integers(-5, 100),
            "unit_price": st.integers(-(10**6), 10**6),
        }
    ),
    max_size=3,
)


def _precise(amount: Decimal) -> str:
    unscaled = int(amount.scaleb(2))
    return base64.b64encode(unscaled.to_bytes(unscaled.bit_length() // 8 + 1, "big", signed=True)).decode()


def _days(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    invoice_id=st.uuids().map(str),
    subtotal=_amounts,
    vat=_amounts,
    total=_amounts,
    invoice_date=_dates,
    due_date=st.none() | _dates,
    items=_line_items,
    status=st.sampled_from(["draft", "sent", "paid", "void"]),
    op=st.sampled_from(["c", "r", "u"]),
    lsn=st.integers(0, 2**62),
)
def test_plain_string_mode_and_schema_precise_mode_decode_to_the_same_event(
    invoice_id: str,
    subtotal: Decimal,
    vat: Decimal,
    total: Decimal,
    invoice_date: dt.date,
    due_date: dt.date | None,
    items: list[dict[str, Any]],
    status: str,
    op: str,
    lsn: int,
) -> None:
    common = {
        "id": invoice_id,
        "customer_id": str(uuid.UUID(int=7)),
        "invoice_number": "INV-1",
        "invoice_date": _days(invoice_date),
        "due_date": None if due_date is None else _days(due_date),
        "currency": "ZAR",
        "status": status,
        "line_items": json.dumps(items),
        "created_at": "2026-11-24T23:52:35.931715Z",
        "updated_at": "2026-11-24T23:52:35Z",
        "zoho_billing_invoice_id": None,
        "zoho_sync_status": None,
        "zoho_last_synced_at": None,
    }
    plain_row = {
        **common,
        "subtotal": f"{subtotal:.2f}",
        "vat_amount": f"{vat:.2f}",
        "total_amount": f"{total:.2f}",
    }
    precise_row = {
        **common,
        "subtotal": _precise(subtotal),
        "vat_amount": _precise(vat),
        "total_amount": _precise(total),
    }
    source = {"lsn": lsn, "txId": 1, "ts_ms": 2, "snapshot": "false"}
    plain = {"before": None, "after": plain_row, "source": source, "op": op}
    schemas = {
        "schema": _INVOICE_SCHEMA,
        "payload": {"before": None, "after": precise_row, "source": source, "op": op},
    }
    key_plain = {"id": invoice_id}
    key_schemas = {"schema": _INVOICE_SCHEMA_KEY, "payload": key_plain}

    a = decode_event(INVOICES, _enc(key_plain), _enc(plain), topic_prefix=PREFIX)
    b = decode_event(INVOICES, _enc(key_schemas), _enc(schemas), topic_prefix=PREFIX)
    assert a == b
    assert a.row is not None
    assert (a.row["subtotal"], a.row["vat_amount"], a.row["total_amount"]) == (subtotal, vat, total)
    assert a.row["invoice_date"] == invoice_date and a.row["due_date"] == due_date
    assert a.row["line_items"] == items
    # schemaless precise mode (base64 without a schema) decodes with the source scale too
    c = decode_event(INVOICES, _enc(key_plain), _enc({**plain, "after": precise_row}), topic_prefix=PREFIX)
    assert c == a


# --- numerics of any size (issue 23 a: a huge one used to raise ValueError and stop the process) ---------


def _b64_of(unscaled: int) -> str:
    return base64.b64encode(unscaled.to_bytes(unscaled.bit_length() // 8 + 1, "big", signed=True)).decode()


def test_a_precise_numeric_beyond_pythons_digit_limit_decodes_exactly_when_postgres_could_hold_it() -> None:
    unscaled = -(7**9000)  # 7,606 digits: str() of it raises ValueError under Python's 4,300-digit limit
    after = {"id": INVOICE_ID, "subtotal": _b64_of(unscaled)}
    row = _decode(_envelope(after), key={"id": INVOICE_ID}, topic=INVOICES).row
    assert row is not None
    assert row["subtotal"].as_tuple() == (1, Decimal(unscaled).as_tuple().digits, -2)


def test_the_reported_2000_byte_numeric_decodes_and_mapping_refuses_it_as_no_zoho_amount() -> None:
    from consumer.entities.invoices.payload import invoice_payload
    from consumer.model.plan import MappingError

    raw = base64.b64encode(b"\x7f" + b"\xff" * 1999).decode()  # about 4,800 digits
    row = _decode(_envelope({"id": INVOICE_ID, "subtotal": raw}), key={"id": INVOICE_ID}, topic=INVOICES).row
    assert row is not None and row["subtotal"].adjusted() > 4_000
    with pytest.raises(MappingError, match="subtotal is about 1e4.*, beyond what a Zoho amount holds"):
        invoice_payload({**row, "line_items": []}, "4815000000044")


@pytest.mark.parametrize(
    "make_after",
    [
        # more than PostgreSQL's 131,072 integer digits, as a decimal string and as base64
        lambda: {"subtotal": "9" * 131_075 + ".00"},
        lambda: {"subtotal": _b64_of(10**131_080)},
        lambda: {"subtotal": "1e999999999"},
        lambda: {"subtotal": "1e-999999"},
    ],
    ids=["131075-digit string", "131080-digit base64", "huge exponent", "tiny exponent"],
)
def test_a_numeric_no_postgres_row_holds_is_a_decode_error_naming_the_column(make_after: Any) -> None:
    after = {"id": INVOICE_ID, **make_after()}
    with pytest.raises(DecodeError, match="column subtotal has more digits than any PostgreSQL numeric"):
        _decode(_envelope(after), key={"id": INVOICE_ID}, topic=INVOICES)


def test_huge_numerics_in_schema_decimal_and_variable_scale_structs_are_decode_errors() -> None:
    huge = base64.b64encode(b"\x01" + b"\x00" * 60_000).decode()  # about 144,500 digits
    fields = [
        {"type": "string", "field": "id"},
        {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}},
        {"type": "struct", "name": "io.debezium.data.VariableScaleDecimal", "field": "subtotal"},
    ]
    fields[1]["field"] = "vat_amount"
    for after in (
        {"id": INVOICE_ID, "vat_amount": huge},
        {"id": INVOICE_ID, "subtotal": {"scale": 2, "value": huge}},
        {"id": INVOICE_ID, "subtotal": {"scale": 20_000, "value": "AYag"}},
    ):
        with pytest.raises(DecodeError, match="more digits than any PostgreSQL numeric holds"):
            _decode(_invoice_schema_value(after, fields), key={"id": INVOICE_ID}, topic=INVOICES)


_DECIMAL_SUBTOTAL = {
    "type": "bytes",
    "name": "org.apache.kafka.connect.data.Decimal",
    "parameters": {"scale": "2"},
    "field": "subtotal",
}


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(min_size=1, max_size=70_000), schema=st.booleans())
def test_any_base64_numeric_decodes_exactly_or_is_a_decode_error(data: bytes, schema: bool) -> None:
    raw = base64.b64encode(data).decode()
    if schema:
        fields = [_DECIMAL_SUBTOTAL]
        value = _invoice_schema_value({"id": INVOICE_ID, "subtotal": raw}, fields)
    else:
        value = _envelope({"id": INVOICE_ID, "subtotal": raw})
    try:
        row = _decode(value, key={"id": INVOICE_ID}, topic=INVOICES).row
    except DecodeError as exc:
        assert "subtotal" in exc.reason
        return
    assert row is not None
    unscaled = Decimal(int.from_bytes(data, "big", signed=True)).as_tuple()
    assert row["subtotal"].as_tuple() == (unscaled.sign, unscaled.digits, -2)


def test_an_exception_no_check_foresaw_becomes_a_decode_error_not_an_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import consumer.pipeline.codec.decode as decode_module

    def broken(*_: Any) -> Any:
        raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")

    monkeypatch.setattr(decode_module, "decode_row", broken)
    after = {"id": INVOICE_ID, "subtotal": "1.00"}
    with pytest.raises(DecodeError, match=r"message cannot be read \(ValueError: Exceeds the limit"):
        _decode(_envelope(after), key={"id": INVOICE_ID}, topic=INVOICES)
