"""`summarize_change` says what `decode_event` says of a record's entity, op and source position, without
decoding its row; and the replay index built from summaries gives every record the role it had when the
first pass decoded everything."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.model.events import (
    UNAVAILABLE_PLACEHOLDER,
    ChangeSummary,
    DecodeError,
    EntityType,
    Op,
)
from consumer.pipeline.codec.decode import decode_event, summarize_change
from consumer.pipeline.codec.encode import encode_event
from consumer.pipeline.replay.index import ReplayIndex

PREFIX = "billing"
CUSTOMERS = f"{PREFIX}.public.customers"
INVOICES = f"{PREFIX}.public.customer_invoices"
FIXTURE_DIRS = [
    Path(__file__).parent.parent / "fixtures" / "debezium",
    Path("/work/shared/fixtures/debezium"),
]
ESCAPED_PLACEHOLDER = "".join(f"\\u{ord(c):04x}" for c in UNAVAILABLE_PLACEHOLDER)  # as JSON text


def _fixture_records() -> list[tuple[str, str, bytes | None, bytes | None]]:
    seen: dict[tuple[Any, ...], str] = {}
    for folder in FIXTURE_DIRS:
        for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
            for n, line in enumerate(path.read_text().splitlines()):
                if line.strip():
                    doc = json.loads(line)
                    record = (doc["topic"], _enc(doc["key"]), _enc(doc["value"]))
                    seen.setdefault(record, f"{folder.parent.parent.name}/{path.stem}:{n + 1}")
    return [(name, *record) for record, name in seen.items()]


def _enc(doc: Any) -> bytes | None:
    return None if doc is None else json.dumps(doc).encode()


def _outcome(read: Any, topic: str, key: bytes | None, value: bytes | None) -> ChangeSummary | str:
    try:
        got = read(topic, key, value, topic_prefix=PREFIX)
    except DecodeError:
        return "DecodeError"
    return ChangeSummary.of(got) if read is decode_event else got


def assert_summary_agrees(topic: str, key: bytes | None, value: bytes | None) -> None:
    """A summary is what the full decode says; a refused summary means the full decode refuses too."""
    summary = _outcome(summarize_change, topic, key, value)
    decoded = _outcome(decode_event, topic, key, value)
    if summary == "DecodeError":
        assert decoded == "DecodeError"
    elif decoded != "DecodeError":
        assert summary == decoded


RECORDS = _fixture_records()


@pytest.mark.parametrize(("name", "topic", "key", "value"), RECORDS, ids=[r[0] for r in RECORDS])
def test_every_captured_event_summarizes_as_it_decodes(
    name: str, topic: str, key: bytes | None, value: bytes | None
) -> None:
    summary = summarize_change(topic, key, value, topic_prefix=PREFIX)
    assert summary == ChangeSummary.of(decode_event(topic, key, value, topic_prefix=PREFIX))


def test_the_captured_toast_events_are_summarized_not_whole() -> None:
    partial = [r for r in RECORDS if r[3] is not None and UNAVAILABLE_PLACEHOLDER.encode() in r[3]]
    assert partial, "the toast fixtures hold placeholders"
    for _, topic, key, value in partial:
        event = decode_event(topic, key, value, topic_prefix=PREFIX)
        assert summarize_change(topic, key, value, topic_prefix=PREFIX).whole is not event.unavailable


# --- whole or not: exactly when the after-image holds the placeholder -------------------------

CUSTOMER_ID = "11111111-1111-1111-1111-111111111111"
KEY = _enc({"id": CUSTOMER_ID})


def _customer(op: str = "u", before: dict[str, Any] | None = None, **after: Any) -> bytes:
    row = {"id": CUSTOMER_ID, "account_number": "CT-1", "notes": "n", **after}
    value = {"before": before, "after": row, "op": op, "source": {"lsn": 10, "txId": 1, "ts_ms": 5}}
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    ("value", "whole"),
    [
        (_customer(), True),
        (_customer(notes=UNAVAILABLE_PLACEHOLDER), False),
        # REPLICA IDENTITY FULL: `before` holds the unchanged value, so the image is made whole
        (_customer(notes=UNAVAILABLE_PLACEHOLDER, before={"notes": "kept"}), True),
        # the placeholder spelt with \u escapes is still the placeholder
        (_customer().replace(b'"notes": "n"', f'"notes": "{ESCAPED_PLACEHOLDER}"'.encode()), False),
        # a value that merely contains the placeholder's text is a real value
        (_customer(notes=f"see {UNAVAILABLE_PLACEHOLDER} here"), True),
        (_customer(notes="caf\u00e9 \u2013 escaped by json.dumps"), True),
        # base64 of the placeholder stands for it only in a bytes column (the schema says so)
        (_customer(notes=base64.b64encode(UNAVAILABLE_PLACEHOLDER.encode()).decode()), True),
    ],
    ids=["full", "placeholder", "filled-from-before", "escaped", "substring", "other-escapes", "b64-text"],
)
def test_an_image_is_not_whole_exactly_when_a_column_is_left_unavailable(value: bytes, whole: bool) -> None:
    summary = summarize_change(CUSTOMERS, KEY, value, topic_prefix=PREFIX)
    assert summary.whole is whole
    assert summary == ChangeSummary.of(decode_event(CUSTOMERS, KEY, value, topic_prefix=PREFIX))


def test_a_base64_placeholder_in_a_bytes_column_is_not_whole() -> None:
    b64 = base64.b64encode(UNAVAILABLE_PLACEHOLDER.encode()).decode()
    fields = [{"field": "id", "type": "string"}, {"field": "notes", "type": "bytes"}]
    schema = {"fields": [{"field": "after", "type": "struct", "fields": fields}]}
    payload = {"after": {"id": CUSTOMER_ID, "notes": b64}, "op": "u", "source": {"lsn": 3}}
    value = _enc({"schema": schema, "payload": payload})
    assert summarize_change(CUSTOMERS, KEY, value, topic_prefix=PREFIX).whole is False


# --- keys and ids -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "entity_id", "op"),
    [
        (
            _enc({"schema": {"type": "struct"}, "payload": {"id": "k-1"}}),
            _customer(id="k-1"),
            "k-1",
            Op.UPDATE,
        ),
        (None, _customer(id="row-1"), "row-1", Op.UPDATE),  # no key: the row's id
        (b"", _customer(op="c", id="row-2"), "row-2", Op.CREATE),
        (_enc({"id": "k-3"}), None, "k-3", Op.TOMBSTONE),
        (_enc({"id": "k-4"}), b"null", "k-4", Op.TOMBSTONE),
        (None, _enc({"op": "d", "before": {"id": "gone"}, "after": None}), "gone", Op.DELETE),
    ],
    ids=["schema-key", "no-key", "empty-key", "tombstone", "json-null", "delete-without-key"],
)
def test_the_entity_id_is_the_key_id_else_the_row_id(
    key: bytes | None, value: bytes | None, entity_id: str, op: Op
) -> None:
    summary = summarize_change(CUSTOMERS, key, value, topic_prefix=PREFIX)
    assert (summary.entity_type, summary.entity_id, summary.op) == (EntityType.CUSTOMER, entity_id, op)
    assert summary == ChangeSummary.of(decode_event(CUSTOMERS, key, value, topic_prefix=PREFIX))


@pytest.mark.parametrize(
    ("topic", "key", "value"),
    [
        (CUSTOMERS, KEY, b"{not json"),
        (CUSTOMERS, KEY, _customer(op="x")),
        (CUSTOMERS, _enc({"id": "other"}), _customer()),  # key and row disagree
        (CUSTOMERS, _enc({"no": "id"}), _customer()),
        (CUSTOMERS, None, None),
        ("billing.public.orders", KEY, _customer()),
        (CUSTOMERS, KEY, _customer().replace(b'"txId": 1', b'"txId": "1"')),
        (CUSTOMERS, KEY, _customer().replace(b'"notes": "n"', b'"notes": "\\u0000"')),
    ],
    ids=["not-json", "bad-op", "ids-disagree", "key-without-id", "bare-tombstone", "topic", "tx", "nul"],
)
def test_a_record_decode_refuses_for_its_envelope_is_refused_by_the_summary_too(
    topic: str, key: bytes | None, value: bytes | None
) -> None:
    with pytest.raises(DecodeError):
        decode_event(topic, key, value, topic_prefix=PREFIX)
    with pytest.raises(DecodeError):
        summarize_change(topic, key, value, topic_prefix=PREFIX)


# --- properties -------------------------------------------------------------------------------

_text = st.text(max_size=12)
_column_value = (
    st.none()
    | _text
    | st.just(UNAVAILABLE_PLACEHOLDER)
    | st.just(base64.b64encode(UNAVAILABLE_PLACEHOLDER.encode()).decode())
    | st.integers(-5, 5)
)
_ids = st.sampled_from(["a", "b", CUSTOMER_ID, ""]) | _text


@st.composite
def customer_records(draw: st.DrawFn) -> tuple[str, bytes | None, bytes | None]:
    """Customer events as the encoder writes them, with placeholders, escapes, odd keys and ids."""
    entity_id = draw(_ids)
    op = draw(st.sampled_from(["c", "r", "u", "d"]))
    row = {"id": draw(st.sampled_from([entity_id, "other"])) if draw(st.booleans()) else entity_id}
    for column in draw(st.lists(st.sampled_from(["email", "notes", "phone", "status"]), max_size=3)):
        row[column] = draw(_column_value)
    key, value = encode_event(
        EntityType.CUSTOMER,
        op,
        row,
        key_id=entity_id,
        topic_prefix=PREFIX,
        lsn=draw(st.none() | st.integers(0, 9)),
    )
    doc = json.loads(value)
    if draw(st.booleans()):  # REPLICA IDENTITY FULL: `before` holds old values
        doc["before"] = {c: draw(_text) for c in row if draw(st.booleans())}
    shape = draw(st.sampled_from(["plain", "schema-key", "no-key", "tombstone"]))
    if shape == "schema-key":
        key = _enc({"schema": {"type": "struct"}, "payload": {"id": entity_id}}) or b""
    if shape == "no-key":
        key = None
    raw_value: bytes | None = json.dumps(doc, ensure_ascii=draw(st.booleans())).encode()
    if shape == "tombstone":
        raw_value = None
    return CUSTOMERS, key, raw_value


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(record=customer_records())
def test_generated_events_summarize_as_they_decode(record: tuple[str, bytes | None, bytes | None]) -> None:
    assert_summary_agrees(*record)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    topic=st.sampled_from([CUSTOMERS, INVOICES]),
    after=st.none()
    | st.dictionaries(st.sampled_from(["id", "notes", "subtotal", "line_items"]), _json, max_size=3),
    before=_json,
    op=st.sampled_from(["c", "r", "u", "d", "t", None]),
    key=st.none() | _json,
    source=_json,
)
def test_random_envelopes_summarize_as_they_decode(
    topic: str, after: Any, before: Any, op: Any, key: Any, source: Any
) -> None:
    value = {"before": before, "after": after, "op": op, "source": source}
    assert_summary_agrees(topic, _enc(key), _enc(value))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.none() | st.binary(max_size=40), value=st.none() | st.binary(max_size=120))
def test_random_bytes_summarize_as_they_decode(key: bytes | None, value: bytes | None) -> None:
    assert_summary_agrees(CUSTOMERS, key, value)


# --- the replay index built from summaries ----------------------------------------------------


def _old_index_entry(topic: str, key: bytes | None, value: bytes | None) -> ChangeSummary | None:
    """What the first pass indexed before summaries: the fully decoded event, or nothing."""
    try:
        return ChangeSummary.of(decode_event(topic, key, value, topic_prefix=PREFIX))
    except DecodeError:
        return None


def _new_index_entry(topic: str, key: bytes | None, value: bytes | None) -> ChangeSummary | None:
    try:
        return summarize_change(topic, key, value, topic_prefix=PREFIX)
    except DecodeError:
        return None


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[int, bytes | None, bytes | None]]:
    """A backlog of a few customers over two partitions: updates, partial images, deletes, tombstones,
    LSNs missing or out of arrival order, and records no decoder accepts."""
    out: list[tuple[int, bytes | None, bytes | None]] = []
    for _ in range(draw(st.integers(1, 25))):
        entity_id = draw(st.sampled_from(["c1", "c2", "c3"]))
        kind = draw(st.sampled_from(["u", "u", "partial", "c", "d", "tombstone", "garbage"]))
        lsn = draw(st.none() | st.integers(1, 30))
        row = {"id": entity_id, "phone": draw(_text)}
        if kind == "partial":
            row["notes"] = UNAVAILABLE_PLACEHOLDER
        op = "u" if kind == "partial" else kind
        key, value = encode_event(
            EntityType.CUSTOMER,
            op if op in "cud" else "u",
            row,
            key_id=entity_id,
            topic_prefix=PREFIX,
            lsn=lsn,
        )
        if kind == "tombstone":
            value = None
        if kind == "garbage":
            value = draw(st.sampled_from([b"{oops", b'{"op": "x"}', b"[]"]))
        out.append((draw(st.integers(0, 1)), key, value))
    return out


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories())
def test_the_index_built_from_summaries_gives_every_record_its_old_role(
    history: list[tuple[int, bytes | None, bytes | None]],
) -> None:
    offsets = {0: 0, 1: 0}
    positioned = []
    for partition, key, value in history:
        positioned.append((partition, offsets[partition], key, value))
        offsets[partition] += 1
    old, new = ReplayIndex(), ReplayIndex()
    for partition, offset, key, value in positioned:
        for index, entry in ((old, _old_index_entry), (new, _new_index_entry)):
            change = entry(CUSTOMERS, key, value)
            if change is not None:
                index.add(change, CUSTOMERS, partition, offset)
    assert (len(old), old.records) == (len(new), new.records)
    for partition, offset, key, value in positioned:  # the second pass asks in arrival order
        change = _old_index_entry(CUSTOMERS, key, value)
        if change is None or change.op is Op.TOMBSTONE:
            continue
        entity = (change.entity_type.value, change.entity_id)
        assert old.role(entity, CUSTOMERS, partition, offset) == new.role(
            entity, CUSTOMERS, partition, offset
        )


def test_a_record_with_an_unreadable_column_is_indexed_and_left_to_the_full_decode() -> None:
    """The summary does not read column values: such a record takes its place in the index and its full
    decode (when it is applied) dead-letters it with the column's reason."""
    value = _customer(updated_at="yesterday")
    summary = summarize_change(CUSTOMERS, KEY, value, topic_prefix=PREFIX)
    assert (summary.entity_id, summary.op, summary.lsn, summary.whole) == (CUSTOMER_ID, Op.UPDATE, 10, True)
    with pytest.raises(DecodeError, match="column updated_at is not an ISO-8601 timestamp"):
        decode_event(CUSTOMERS, KEY, value, topic_prefix=PREFIX)
