"""The Debezium converter's envelope around a row: key id, op, `source` position and field schemas.

Both converter shapes are read (schemas.enable=false: bare payload; true: `{"schema":..., "payload":...}`),
for key and value. Every check raises `DecodeError` with a one-sentence reason; ids are non-empty,
printable and at most `MAX_ID_CHARS` long, and no text holds a NUL (no PostgreSQL row can).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from consumer.entities.registry import entity_for_topic
from consumer.model.events import DecodeError, EntityType, Op
from consumer.pipeline.codec.column_values import json_type

OPS: Final = {"c": Op.CREATE, "r": Op.READ, "u": Op.UPDATE, "d": Op.DELETE}


#: Longer ids are not row keys (uuid is 36); the limit keeps them well inside a btree index entry.
MAX_ID_CHARS: Final = 512


def open_envelope(
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


def entity_id(key_id: str | None, row_id: str | None) -> str:
    """The entity's id: the key's, else the row's; both present must agree."""
    if key_id is not None and row_id is not None and key_id != row_id:
        raise DecodeError(f"key id {key_id!r} differs from row id {row_id!r}")
    found = key_id if key_id is not None else row_id
    if found is None:
        raise DecodeError("missing key field id (no key and no id in the row)")
    return found


def is_snapshot_read(source: Mapping[str, Any]) -> bool:
    """True for a snapshot read (`source.snapshot` true, first, last, incremental...; absent or false
    for a streamed change)."""
    return source.get("snapshot") not in (None, "false", False)


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


def image_id(image: Any, which: str) -> str | None:
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
        return OPS[raw]
    except KeyError:
        raise DecodeError(f"unknown op {raw!r}") from None


def source_int(source: Mapping[str, Any], name: str) -> int | None:
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
