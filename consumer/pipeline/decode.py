"""Decode one Kafka message written by Debezium's JSON converter into a `ChangeEvent`.

Pure: bytes in, a `ChangeEvent` or a `DecodeError` (one-sentence reason, for the DLQ) out; no
other exception escapes `decode_event`. Both converter shapes are accepted (schemas.enable=false:
bare payload; true: `{"schema":..., "payload":...}`), for key and value, and numerics in every
`decimal.handling.mode` (string, precise, double). The TOAST placeholder never reaches a row.

When the message carries no schema, the column kinds of the source schema
(each entity spec's `columns`, from `consumer/sql/source_schema.sql`) say how to read each value.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from consumer.entities.registry import entity_for_topic, spec_of
from consumer.pipeline.events import (
    UNAVAILABLE,
    UNAVAILABLE_PLACEHOLDER,
    ChangeEvent,
    ColumnKind,
    DecodeError,
    EntityType,
    Op,
)

#: Scale of every numeric column in the source schema (numeric(12,2)). Without a schema, a
#: base64 ("precise") numeric is decoded with this scale: the message itself does not say.
SOURCE_NUMERIC_SCALE: Final = 2

_DECIMAL = "org.apache.kafka.connect.data.Decimal"
_VARIABLE_SCALE_DECIMAL = "io.debezium.data.VariableScaleDecimal"
_DATE_NAMES = frozenset({"io.debezium.time.Date", "org.apache.kafka.connect.data.Date"})
_ZONED_TIMESTAMP = "io.debezium.time.ZonedTimestamp"
_JSON = "io.debezium.data.Json"

# Binary columns carry the placeholder as base64 of its bytes.
_PLACEHOLDER_B64 = base64.b64encode(UNAVAILABLE_PLACEHOLDER.encode()).decode()
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_OPS = {"c": Op.CREATE, "r": Op.READ, "u": Op.UPDATE, "d": Op.DELETE}


#: Longer ids are not row keys (uuid is 36); the limit keeps them well inside a btree index entry.
MAX_ID_CHARS: Final = 512


def decode_event(topic: str, key: bytes | None, value: bytes | None, *, topic_prefix: str) -> ChangeEvent:
    """Decode one Kafka message from a Debezium table topic.

    A null value (or JSON `null`) is a tombstone and needs the key. A missing key falls back to
    the `id` in `after`/`before`. Raises only `DecodeError`.
    """
    entity = entity_for_topic(topic, topic_prefix=topic_prefix)
    key_id = _key_id(key)
    payload, schema = (None, None) if value is None else _unwrap(_parse_json(value, "value"), "value")
    if payload is None:
        if key_id is None:
            raise DecodeError("tombstone without a key id")
        return ChangeEvent(entity, key_id, Op.TOMBSTONE, None, frozenset(), None, None, False, None)
    if not isinstance(payload, dict):
        raise DecodeError(f"value payload is a JSON {_json_type(payload)}, not an object")

    op = _op(payload)
    fields = _row_fields(schema)
    source = payload.get("source")
    if source is None:
        source = {}
    elif not isinstance(source, dict):
        raise DecodeError(f"source is a JSON {_json_type(source)}, not an object")

    row: dict[str, Any] | None = None
    unavailable: frozenset[str] = frozenset()
    if op is Op.DELETE:
        row_id = _image_id(payload.get("before"), "before")
    else:
        after = payload.get("after")
        if not isinstance(after, dict):
            raise DecodeError(f"op {op.value!r} has {_json_type(after)} 'after', expected an object")
        row, unavailable = _decode_row(entity, after, fields)
        if unavailable:
            row, unavailable = _fill_from_before(entity, row, unavailable, payload.get("before"), fields)
        row_id = _image_id(after, "after")

    if key_id is not None and row_id is not None and key_id != row_id:
        raise DecodeError(f"key id {key_id!r} differs from row id {row_id!r}")
    entity_id = key_id if key_id is not None else row_id
    if entity_id is None:
        raise DecodeError("missing key field id (no key and no id in the row)")

    return ChangeEvent(
        entity_type=entity,
        entity_id=entity_id,
        op=op,
        row=row,
        unavailable=unavailable,
        lsn=_source_int(source, "lsn"),
        tx_id=_source_int(source, "txId"),
        snapshot=source.get("snapshot") not in (None, "false", False),
        source_ts_ms=_source_int(source, "ts_ms"),
    )


# --- envelope -----------------------------------------------------------------------------


def _parse_json(data: bytes, what: str) -> Any:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError, TypeError):
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
            raise DecodeError(f"{what} schema is a JSON {_json_type(schema)}, not an object")
        return doc["payload"], schema
    return doc, None


def _key_id(key: bytes | None) -> str | None:
    if key is None or key == b"":
        return None
    payload, _ = _unwrap(_parse_json(key, "key"), "key")
    if payload is None:
        return None
    if not isinstance(payload, dict):
        raise DecodeError(f"key is a JSON {_json_type(payload)}, not an object")
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
        raise DecodeError(f"op is a JSON {_json_type(raw)}, not a string")
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


def decode_column(
    name: str, raw: Any, field_schema: Mapping[str, Any] | None, kind: ColumnKind | None
) -> Any:
    """One column value: the schema's logical type decides when present, else the column kind.

    Returns `UNAVAILABLE` for the TOAST placeholder; raises DecodeError naming the column.
    """
    if raw is None:
        return None
    if raw == UNAVAILABLE_PLACEHOLDER:
        return UNAVAILABLE
    logical = field_schema.get("name") if field_schema else None
    if not isinstance(logical, str):
        logical = None
    if field_schema and field_schema.get("type") == "bytes" and raw == _PLACEHOLDER_B64:
        return UNAVAILABLE
    if logical == _DECIMAL:
        return _decimal_with_scale(name, raw, _schema_scale(name, field_schema or {}))
    if logical == _VARIABLE_SCALE_DECIMAL:
        return _variable_scale_decimal(name, raw)
    by_logical = _BY_LOGICAL_TYPE.get(logical) if logical else None
    if by_logical is not None:
        return by_logical(name, raw)
    if kind is ColumnKind.NUMERIC:
        return _decimal_with_scale(name, raw, SOURCE_NUMERIC_SCALE)
    by_kind = _BY_KIND.get(kind) if kind else None
    if by_kind is not None:
        return by_kind(name, raw)
    if kind is ColumnKind.TEXT and not isinstance(raw, str):
        raise DecodeError(f"column {name} is a JSON {_json_type(raw)}, expected a string")
    return raw


def _schema_scale(name: str, field_schema: Mapping[str, Any]) -> int:
    params = field_schema.get("parameters")
    raw = params.get("scale") if isinstance(params, dict) else None
    try:
        return int(raw)  # the JSON converter writes parameters as strings
    except (TypeError, ValueError):
        raise DecodeError(f"column {name} has a Decimal schema without a scale") from None


def _decimal_with_scale(name: str, raw: Any, scale: int) -> Decimal:
    """A numeric in any decimal.handling.mode; `scale` applies to base64 unscaled integers only.

    Debezium's string mode writes numeric(p,s) with s > 0 as plain digits with a decimal point
    ("1000.00"); base64 never contains a '.', so a string with a point is a decimal string and
    any other string is tried as base64 first (an all-digit base64 value must not be misread).
    """
    if isinstance(raw, bool):
        raise DecodeError(f"column {name} is a boolean, expected a number")
    if isinstance(raw, int | float):
        return _finite(name, str(raw))  # double mode / decimal.format=NUMERIC
    if not isinstance(raw, str):
        raise DecodeError(f"column {name} is a JSON {_json_type(raw)}, expected a number")
    if "." not in raw:
        unscaled = _b64_int(raw)
        if unscaled is not None:
            return _scaled(unscaled, scale)
    return _finite(name, raw)


def _b64_int(raw: str) -> int | None:
    """Big-endian two's-complement integer from base64 (signed: refunds are negative), or None."""
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return None
    return int.from_bytes(data, "big", signed=True)


def _scaled(unscaled: int, scale: int) -> Decimal:
    # Built from the digit tuple: exact for any size, unlike scaleb() under the 28-digit context.
    digits = tuple(int(d) for d in str(abs(unscaled)))
    return Decimal((1 if unscaled < 0 else 0, digits, -scale))


def _finite(name: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        raise DecodeError(f"column {name} is neither a decimal string nor base64") from None
    if not value.is_finite():
        raise DecodeError(f"column {name} is not a finite number")
    return value


def _variable_scale_decimal(name: str, raw: Any) -> Decimal:
    if not isinstance(raw, dict):
        raise DecodeError(f"column {name} is not a VariableScaleDecimal struct")
    scale, value = raw.get("scale"), raw.get("value")
    if isinstance(scale, bool) or not isinstance(scale, int) or not isinstance(value, str):
        raise DecodeError(f"column {name} is not a VariableScaleDecimal struct")
    unscaled = _b64_int(value)
    if unscaled is None:
        raise DecodeError(f"column {name} has bad base64 in its VariableScaleDecimal")
    return _scaled(unscaled, scale)


def _date(name: str, raw: Any) -> dt.date:
    try:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return dt.date.fromordinal(_EPOCH_ORDINAL + raw)
        if isinstance(raw, str):  # time.precision.mode=isostring: "2025-11-01Z"
            return dt.date.fromisoformat(raw.removesuffix("Z"))
    except (ValueError, OverflowError):
        raise DecodeError(f"column {name} is not a valid date") from None
    raise DecodeError(f"column {name} is a JSON {_json_type(raw)}, expected days since epoch")


def _timestamptz(name: str, raw: Any) -> dt.datetime:
    if not isinstance(raw, str):
        raise DecodeError(f"column {name} is a JSON {_json_type(raw)}, expected an ISO-8601 timestamp")
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise DecodeError(f"column {name} is not an ISO-8601 timestamp") from None
    # ZonedTimestamp is always zoned (GMT); a bare one can only mean UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _jsonb(name: str, raw: Any) -> Any:
    if isinstance(raw, dict | list):
        return raw  # already parsed by an upstream transform
    if not isinstance(raw, str):
        raise DecodeError(f"column {name} is a JSON {_json_type(raw)}, expected JSON text")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise DecodeError(f"column {name} holds malformed JSON") from None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


#: Readers by the schema's logical type name, and (when a message has no schema) by column kind.
_BY_LOGICAL_TYPE: Final[Mapping[str, Callable[[str, Any], Any]]] = {
    **{date_name: _date for date_name in _DATE_NAMES},
    _ZONED_TIMESTAMP: _timestamptz,
    _JSON: _jsonb,
}
_BY_KIND: Final[Mapping[ColumnKind, Callable[[str, Any], Any]]] = {
    ColumnKind.DATE: _date,
    ColumnKind.TIMESTAMPTZ: _timestamptz,
    ColumnKind.JSONB: _jsonb,
}
