"""Decode one Kafka message written by Debezium's JSON converter into a `ChangeEvent`.

Pure: bytes in, a `ChangeEvent` or a `DecodeError` (one-sentence reason, for the DLQ) out; no other
exception escapes `decode_event`. Both converter shapes (schemas on or off, key and value) and numerics
in every `decimal.handling.mode` (string, precise, double) are accepted; no row holds the TOAST placeholder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import orjson

from consumer.entities.registry import entity_for_topic
from consumer.model.events import (
    UNAVAILABLE_PLACEHOLDER,
    ChangeEvent,
    ChangeSummary,
    DecodeError,
    EntityType,
    Op,
)
from consumer.pipeline.codec.column_values import PLACEHOLDER_B64
from consumer.pipeline.codec.envelope import (
    MAX_ID_CHARS,
    OPS,
    entity_id,
    image_id,
    is_snapshot_read,
    open_envelope,
    source_int,
)
from consumer.pipeline.codec.rows import decode_row, fill_from_before

_T = TypeVar("_T")


def decode_event(topic: str, key: bytes | None, value: bytes | None, *, topic_prefix: str) -> ChangeEvent:
    """Decode one Kafka message from a Debezium table topic; raises only `DecodeError`.

    A null value (or JSON `null`) is a tombstone and needs the key. A missing key falls back to the `id`
    in `after`/`before`. Without a schema in the message, each column's kind in the entity spec (`columns`,
    from `consumer/sql/source_schema.sql`) says how to read its value. Parsed with orjson (a replay parses
    every record twice), which refuses what no PostgreSQL row can hold (lone surrogates, NaN, Infinity):
    DecodeErrors too. An integer beyond 64 bits becomes a float; no column of the source schema holds one."""
    return _only_decode_errors(_decode_event, topic, key, value, topic_prefix)


def _only_decode_errors(read: Callable[..., _T], *args: Any) -> _T:
    """`read(*args)`, with any failure no check foresaw turned into a DecodeError: it is still the
    message's, a dead letter, never a process exit (which the same record would repeat on every restart,
    its offset never moving)."""
    try:
        return read(*args)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"message cannot be read ({type(exc).__name__}: {exc})") from exc


def _decode_event(topic: str, key: bytes | None, value: bytes | None, topic_prefix: str) -> ChangeEvent:
    entity, key_id, op, payload, fields, source = open_envelope(topic, key, value, topic_prefix)
    if op is Op.TOMBSTONE:
        assert key_id is not None  # a tombstone without one is refused
        return ChangeEvent(entity, key_id, op, None, frozenset(), None, None, False, None)
    row: dict[str, Any] | None = None
    unavailable: frozenset[str] = frozenset()
    if op is Op.DELETE:
        row_id = image_id(payload.get("before"), "before")
    else:
        after = payload["after"]
        row, unavailable = decode_row(entity, after, fields)
        if unavailable:
            row, unavailable = fill_from_before(entity, row, unavailable, payload.get("before"), fields)
        row_id = image_id(after, "after")
    return ChangeEvent(
        entity_type=entity,
        entity_id=entity_id(key_id, row_id),
        op=op,
        row=row,
        unavailable=unavailable,
        lsn=source_int(source, "lsn"),
        tx_id=source_int(source, "txId"),
        snapshot=is_snapshot_read(source),
        source_ts_ms=source_int(source, "ts_ms"),
    )


def summarize_change(
    topic: str, key: bytes | None, value: bytes | None, *, topic_prefix: str
) -> ChangeSummary:
    """What `decode_event` would say of a message's entity, op and source position, without decoding
    its row: a replay needs only that of most records.

    Only an image that may hold the TOAST placeholder is decoded in full, to tell whether it is whole.
    Raises only `DecodeError`, and only for messages `decode_event` refuses too (one with an unreadable
    column value passes here and fails there)."""
    return _only_decode_errors(_summarize_change, topic, key, value, topic_prefix)


def _summarize_change(topic: str, key: bytes | None, value: bytes | None, topic_prefix: str) -> ChangeSummary:
    summary = _summary_of_common_shape(entity_for_topic(topic, topic_prefix=topic_prefix), key, value)
    if summary is not None:
        return summary
    entity, key_id, op, payload, _, source = open_envelope(topic, key, value, topic_prefix)
    if op is Op.TOMBSTONE:
        assert key_id is not None  # a tombstone without one is refused
        return ChangeSummary(entity, key_id, op, None, None, True, False)
    if op is Op.DELETE:
        row_id = image_id(payload.get("before"), "before")
    else:
        after = payload["after"]
        row_id = image_id(after, "after")
        if _may_hold_placeholder(after):
            return ChangeSummary.of(decode_event(topic, key, value, topic_prefix=topic_prefix))
    source_int(source, "txId")  # checked as decode_event checks it
    return ChangeSummary(
        entity,
        entity_id(key_id, row_id),
        op,
        source_int(source, "lsn"),
        source_int(source, "ts_ms"),
        True,
        is_snapshot_read(source),
    )


def _summary_of_common_shape(
    entity: EntityType, key: bytes | None, value: bytes | None
) -> ChangeSummary | None:
    """The summary of a message in the shape nearly every one has (key `{"id": ...}`, a bare payload with
    a known op, a whole image, integer or null source fields), read with fewer steps; None for any other
    message, which the general reading then reads (and refuses, when it must)."""
    read = _common_shape(entity, key, value)
    return None if read is None else read[0]


def summarize_whole(
    topic: str, key: bytes | None, value: bytes | None, *, topic_prefix: str
) -> tuple[ChangeSummary, Mapping[str, Any]] | None:
    """A message of the common shape (`_summary_of_common_shape`) that is not a delete: its summary and
    its raw `after` image (column values as Debezium sent them, not decoded); None for any other."""
    read = _common_shape(entity_for_topic(topic, topic_prefix=topic_prefix), key, value)
    if read is None or read[0].op is Op.DELETE:
        return None
    return read  # type: ignore[return-value]  # a change other than a delete has its image


def _common_shape(
    entity: EntityType, key: bytes | None, value: bytes | None
) -> tuple[ChangeSummary, Mapping[str, Any] | None] | None:
    if not key or value is None or b"\\u0000" in key or b"\\u0000" in value:
        return None
    try:
        key_doc, doc = orjson.loads(key), orjson.loads(value)
    except ValueError:
        return None
    if type(key_doc) is not dict or type(doc) is not dict or len(key_doc) != 1 or "payload" in doc:
        return None
    key_id, raw_op, source = key_doc.get("id"), doc.get("op"), doc.get("source")
    op = OPS.get(raw_op) if type(raw_op) is str else None
    if op is None or type(source) is not dict or not _plain_id(key_id):
        return None
    image = doc.get("before" if op is Op.DELETE else "after")
    if op is not Op.DELETE and (type(image) is not dict or _may_hold_placeholder(image)):
        return None
    row_id = image.get("id") if type(image) is dict else None
    lsn, ts_ms = source.get("lsn"), source.get("ts_ms")
    tx_id = source.get("txId")
    if row_id is not None and row_id != key_id:
        return None
    if not (_int_or_none(lsn) and _int_or_none(ts_ms) and _int_or_none(tx_id)):
        return None
    summary = ChangeSummary(entity, key_id, op, lsn, ts_ms, True, is_snapshot_read(source))
    return summary, (image if op is not Op.DELETE else None)


def _plain_id(raw: Any) -> bool:
    return type(raw) is str and 0 < len(raw) <= MAX_ID_CHARS and raw.isprintable()


def _int_or_none(value: Any) -> bool:
    return value is None or type(value) is int


def _may_hold_placeholder(after: Mapping[str, Any]) -> bool:
    """True when a column of `after` may be the TOAST placeholder (plain, or base64 for a bytes column:
    only the schema tells, so the full decode decides). A scan of the parsed values: the raw bytes
    would miss a placeholder spelt with \\u escapes."""
    columns = after.values()
    return UNAVAILABLE_PLACEHOLDER in columns or PLACEHOLDER_B64 in columns
