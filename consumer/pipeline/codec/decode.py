"""Decode one Kafka message written by Debezium's JSON converter into a `ChangeEvent`.

Pure: bytes in, a `ChangeEvent` or a `DecodeError` (one-sentence reason, for the DLQ) out; no
other exception escapes `decode_event`. Both converter shapes are accepted (schemas.enable=false:
bare payload; true: `{"schema":..., "payload":...}`), for key and value, and numerics in every
`decimal.handling.mode` (string, precise, double). The TOAST placeholder never reaches a row.

When the message carries no schema, the column kinds of the source schema
(each entity spec's `columns`, from `consumer/sql/source_schema.sql`) say how to read each value.

Messages are parsed with orjson (a replay parses every record twice). It refuses what json let
through but no PostgreSQL row can hold (lone surrogates, NaN, Infinity): those are DecodeErrors too.
An integer literal beyond 64 bits becomes a float; no column of the source schema can hold one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import orjson

from consumer.entities.registry import entity_for_topic, spec_of
from consumer.entities.spec import EntitySpec
from consumer.model.events import (
    UNAVAILABLE,
    UNAVAILABLE_PLACEHOLDER,
    ChangeEvent,
    ChangeSummary,
    DecodeError,
    EntityType,
    Op,
)
from consumer.pipeline.codec.column_values import (
    PLACEHOLDER_B64,
    Reader,
    decode_column,
    json_type,
    reader_of_kind,
)

_T = TypeVar("_T")

_OPS = {"c": Op.CREATE, "r": Op.READ, "u": Op.UPDATE, "d": Op.DELETE}


#: Longer ids are not row keys (uuid is 36); the limit keeps them well inside a btree index entry.
MAX_ID_CHARS: Final = 512


def decode_event(topic: str, key: bytes | None, value: bytes | None, *, topic_prefix: str) -> ChangeEvent:
    """Decode one Kafka message from a Debezium table topic.

    A null value (or JSON `null`) is a tombstone and needs the key. A missing key falls back to
    the `id` in `after`/`before`. Raises only `DecodeError`.
    """
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
    entity, key_id, op, payload, fields, source = _open(topic, key, value, topic_prefix)
    if op is Op.TOMBSTONE:
        assert key_id is not None  # a tombstone without one is refused
        return ChangeEvent(entity, key_id, op, None, frozenset(), None, None, False, None)
    row: dict[str, Any] | None = None
    unavailable: frozenset[str] = frozenset()
    if op is Op.DELETE:
        row_id = _image_id(payload.get("before"), "before")
    else:
        after = payload["after"]
        row, unavailable = _decode_row(entity, after, fields)
        if unavailable:
            row, unavailable = _fill_from_before(entity, row, unavailable, payload.get("before"), fields)
        row_id = _image_id(after, "after")
    return ChangeEvent(
        entity_type=entity,
        entity_id=_entity_id(key_id, row_id),
        op=op,
        row=row,
        unavailable=unavailable,
        lsn=_source_int(source, "lsn"),
        tx_id=_source_int(source, "txId"),
        snapshot=_is_snapshot_read(source),
        source_ts_ms=_source_int(source, "ts_ms"),
    )


def _is_snapshot_read(source: Mapping[str, Any]) -> bool:
    """True for a snapshot read (`source.snapshot` true, first, last, incremental...; absent or false
    for a streamed change)."""
    return source.get("snapshot") not in (None, "false", False)


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
    entity, key_id, op, payload, _, source = _open(topic, key, value, topic_prefix)
    if op is Op.TOMBSTONE:
        assert key_id is not None  # a tombstone without one is refused
        return ChangeSummary(entity, key_id, op, None, None, True, False)
    if op is Op.DELETE:
        row_id = _image_id(payload.get("before"), "before")
    else:
        after = payload["after"]
        row_id = _image_id(after, "after")
        if _may_hold_placeholder(after):
            return ChangeSummary.of(decode_event(topic, key, value, topic_prefix=topic_prefix))
    _source_int(source, "txId")  # checked as decode_event checks it
    return ChangeSummary(
        entity,
        _entity_id(key_id, row_id),
        op,
        _source_int(source, "lsn"),
        _source_int(source, "ts_ms"),
        True,
        _is_snapshot_read(source),
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
    op = _OPS.get(raw_op) if type(raw_op) is str else None
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
    summary = ChangeSummary(entity, key_id, op, lsn, ts_ms, True, _is_snapshot_read(source))
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


def _open(
    topic: str, key: bytes | None, value: bytes | None, topic_prefix: str
) -> tuple[EntityType, str | None, Op, dict[str, Any], Mapping[str, Mapping[str, Any]], Mapping[str, Any]]:
    """The envelope both readings share: entity, key id, op, payload (with an object `after` unless
    the op is a delete), the row's field schemas and `source`. A tombstone comes with its key id."""
    entity = entity_for_topic(topic, topic_prefix=topic_prefix)
    key_id = _key_id(key)
    payload, schema = (None, None) if value is None else _unwrap(_parse_json(value, "value"), "value")
    if payload is None:
        if key_id is None:
            raise DecodeError("tombstone without a key id")
        return entity, key_id, Op.TOMBSTONE, {}, {}, {}
    if not isinstance(payload, dict):
        raise DecodeError(f"value payload is a JSON {json_type(payload)}, not an object")
    op = _op(payload)
    fields = _row_fields(schema)
    source = payload.get("source")
    if source is None:
        source = {}
    elif not isinstance(source, dict):
        raise DecodeError(f"source is a JSON {json_type(source)}, not an object")
    if op is not Op.DELETE and not isinstance(payload.get("after"), dict):
        after = payload.get("after")
        raise DecodeError(f"op {op.value!r} has {json_type(after)} 'after', expected an object")
    return entity, key_id, op, payload, fields, source


def _entity_id(key_id: str | None, row_id: str | None) -> str:
    if key_id is not None and row_id is not None and key_id != row_id:
        raise DecodeError(f"key id {key_id!r} differs from row id {row_id!r}")
    entity_id = key_id if key_id is not None else row_id
    if entity_id is None:
        raise DecodeError("missing key field id (no key and no id in the row)")
    return entity_id


# --- envelope -----------------------------------------------------------------------------


def _parse_json(data: bytes, what: str) -> Any:
    try:
        doc = orjson.loads(data)
    except (ValueError, RecursionError, TypeError):  # orjson.JSONDecodeError is a ValueError
        raise DecodeError(f"{what} is not JSON") from None
    # PostgreSQL text and jsonb cannot hold NUL, so no real row has one; one here would fail every write.
    if b"\\u0000" in data and _holds_nul(doc):
        raise DecodeError(f"{what} holds a NUL character, which no PostgreSQL row can hold")
    return doc


def _holds_nul(doc: Any) -> bool:
    if isinstance(doc, str):
        return "\x00" in doc
    if isinstance(doc, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in doc.items())
    if isinstance(doc, list):
        return any(_holds_nul(v) for v in doc)
    return False


def _unwrap(doc: Any, what: str) -> tuple[Any, Mapping[str, Any] | None]:
    """Split a `{"schema", "payload"}` converter envelope; a bare payload has no schema."""
    if isinstance(doc, dict) and doc.keys() == {"schema", "payload"}:
        schema = doc["schema"]
        if schema is not None and not isinstance(schema, dict):
            raise DecodeError(f"{what} schema is a JSON {json_type(schema)}, not an object")
        return doc["payload"], schema
    return doc, None


def _key_id(key: bytes | None) -> str | None:
    if key is None or key == b"":
        return None
    payload, _ = _unwrap(_parse_json(key, "key"), "key")
    if payload is None:
        return None
    if not isinstance(payload, dict):
        raise DecodeError(f"key is a JSON {json_type(payload)}, not an object")
    if "id" not in payload:
        raise DecodeError("missing key field id")
    return _id_value(payload["id"], "key field id")


def _image_id(image: Any, which: str) -> str | None:
    if not isinstance(image, dict) or image.get("id") is None:
        return None
    return _id_value(image["id"], f"{which}.id")


def _id_value(raw: Any, what: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise DecodeError(f"{what} is not a non-empty string")
    if len(raw) > MAX_ID_CHARS:
        raise DecodeError(f"{what} is {len(raw)} characters long (at most {MAX_ID_CHARS})")
    if not raw.isprintable():
        raise DecodeError(f"{what} holds a control character")
    return raw


def _op(payload: Mapping[str, Any]) -> Op:
    if "op" not in payload:
        raise DecodeError("missing op")
    raw = payload["op"]
    if not isinstance(raw, str):
        raise DecodeError(f"op is a JSON {json_type(raw)}, not a string")
    try:
        return _OPS[raw]
    except KeyError:
        raise DecodeError(f"unknown op {raw!r}") from None


def _source_int(source: Mapping[str, Any], name: str) -> int | None:
    raw = source.get(name)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise DecodeError(f"source.{name} is not an integer")
    return raw


def _row_fields(schema: Mapping[str, Any] | None) -> Mapping[str, Mapping[str, Any]]:
    """Field schemas of the row struct (from `after`, else `before`), by column name."""
    if schema is None:
        return {}
    envelope_fields = schema.get("fields")
    if not isinstance(envelope_fields, list):
        raise DecodeError("value schema has no field list")
    by_name = _fields_by_name(envelope_fields)
    for image in ("after", "before"):
        row_schema = by_name.get(image)
        if row_schema is not None:
            columns = row_schema.get("fields")
            if not isinstance(columns, list):
                raise DecodeError(f"value schema of {image!r} has no field list")
            return _fields_by_name(columns)
    return {}


def _fields_by_name(fields: list[Any]) -> dict[str, Mapping[str, Any]]:
    return {f["field"]: f for f in fields if isinstance(f, dict) and isinstance(f.get("field"), str)}


# --- columns ------------------------------------------------------------------------------


def _decode_row(
    entity: EntityType, image: Mapping[str, Any], fields: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, Any], frozenset[str]]:
    if not fields:
        return _decode_schemaless_row(entity, image)
    kinds = spec_of(entity).columns
    row: dict[str, Any] = {}
    unavailable: set[str] = set()
    for name, raw in image.items():
        value = decode_column(name, raw, fields.get(name), kinds.get(name))
        if value is UNAVAILABLE:
            unavailable.add(name)
        else:
            row[name] = value
    return row, frozenset(unavailable)


def _decode_schemaless_row(
    entity: EntityType, image: Mapping[str, Any]
) -> tuple[dict[str, Any], frozenset[str]]:
    """`decode_column` without a schema, with each column's reader looked up once per entity."""
    readers = _readers(entity)
    row: dict[str, Any] = {}
    unavailable: set[str] = set()
    for name, raw in image.items():
        if raw is None:
            row[name] = None
        elif raw == UNAVAILABLE_PLACEHOLDER:
            unavailable.add(name)
        else:
            reader = readers.get(name)
            row[name] = raw if reader is None else reader(name, raw)
    return row, frozenset(unavailable)


_READERS: dict[EntityType, tuple[EntitySpec, dict[str, Reader]]] = {}


def _readers(entity: EntityType) -> dict[str, Reader]:
    """Each column's reader by the entity spec's column kinds (rebuilt when the spec is replaced)."""
    spec = spec_of(entity)
    cached = _READERS.get(entity)
    if cached is None or cached[0] is not spec:
        readers = {name: reader_of_kind(kind) for name, kind in spec.columns.items()}
        cached = _READERS[entity] = (spec, {n: r for n, r in readers.items() if r is not None})
    return cached[1]


def _fill_from_before(
    entity: EntityType,
    row: dict[str, Any],
    unavailable: frozenset[str],
    before: Any,
    fields: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, Any], frozenset[str]]:
    """Under REPLICA IDENTITY FULL `before` holds every old value: an unchanged TOASTed column is
    the same before and after the update, so its `before` value fills the placeholder."""
    if not isinstance(before, dict):
        return row, unavailable
    old, _ = _decode_row(entity, {c: before[c] for c in unavailable if c in before}, fields)
    return {**row, **old}, unavailable - old.keys()
