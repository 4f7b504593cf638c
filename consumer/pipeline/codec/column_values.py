"""Column values: one Debezium-encoded value of a source column, decoded into a plain Python value.

The schema's logical type decides when the message carries one; else the column kind from the entity
spec. Numerics come in every `decimal.handling.mode` (string, precise base64, double). The TOAST
placeholder becomes `UNAVAILABLE`; anything unreadable is a `DecodeError` naming the column.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from consumer.model.events import UNAVAILABLE, UNAVAILABLE_PLACEHOLDER, ColumnKind, DecodeError

#: Scale of every numeric column in the source schema (numeric(12,2)). Without a schema, a
#: base64 ("precise") numeric is decoded with this scale: the message itself does not say.
SOURCE_NUMERIC_SCALE: Final = 2

_DECIMAL = "org.apache.kafka.connect.data.Decimal"
_VARIABLE_SCALE_DECIMAL = "io.debezium.data.VariableScaleDecimal"
_DATE_NAMES = frozenset({"io.debezium.time.Date", "org.apache.kafka.connect.data.Date"})
_ZONED_TIMESTAMP = "io.debezium.time.ZonedTimestamp"
_JSON = "io.debezium.data.Json"

#: PostgreSQL's numeric holds up to 131,072 digits before the decimal point and 16,383 after; a value
#: beyond that is no row's. The bit bound refuses a huge base64 value before any digit is computed.
PG_NUMERIC_MAX_INTEGER_DIGITS: Final = 131_072
PG_NUMERIC_MAX_SCALE: Final = 16_383
_MAX_NUMERIC_BITS: Final = 4 * (PG_NUMERIC_MAX_INTEGER_DIGITS + PG_NUMERIC_MAX_SCALE)  # > log2(10) a digit

# Binary columns carry the placeholder as base64 of its bytes.
PLACEHOLDER_B64 = base64.b64encode(UNAVAILABLE_PLACEHOLDER.encode()).decode()
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()

Reader = Callable[[str, Any], Any]  # (column name, raw JSON value) -> decoded value, or DecodeError


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
    if field_schema and field_schema.get("type") == "bytes" and raw == PLACEHOLDER_B64:
        return UNAVAILABLE
    if logical == _DECIMAL:
        return _decimal_with_scale(name, raw, _schema_scale(name, field_schema or {}))
    if logical == _VARIABLE_SCALE_DECIMAL:
        return _variable_scale_decimal(name, raw)
    by_logical = _BY_LOGICAL_TYPE.get(logical) if logical else None
    if by_logical is not None:
        return by_logical(name, raw)
    by_kind = reader_of_kind(kind)
    return raw if by_kind is None else by_kind(name, raw)


def reader_of_kind(kind: ColumnKind | None) -> Reader | None:
    """How a column of this kind is read when the message says nothing of it (None: as it is).

    `decode_event` looks these up once per entity, so a schemaless row costs a call per column."""
    return _BY_KIND.get(kind) if kind else None


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
        raise DecodeError(f"column {name} is a JSON {json_type(raw)}, expected a number")
    if "." not in raw:
        unscaled = _b64_int(raw)
        if unscaled is not None:
            return _scaled(name, unscaled, scale)
    return _finite(name, raw)


def _b64_int(raw: str) -> int | None:
    """Big-endian two's-complement integer from base64 (signed: refunds are negative), or None."""
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return None
    return int.from_bytes(data, "big", signed=True)


def _scaled(name: str, unscaled: int, scale: int) -> Decimal:
    # Decimal(int) is exact for any size and, unlike str(int), not bound by Python's 4,300-digit limit
    # for int-to-text conversion (a ValueError that once escaped as a crash, not a dead letter). The
    # digit tuple then takes the scale: exact, unlike scaleb() under the 28-digit context.
    if unscaled.bit_length() > _MAX_NUMERIC_BITS:
        raise DecodeError(f"column {name} has more digits than any PostgreSQL numeric holds")
    sign, digits, _ = Decimal(unscaled).as_tuple()
    return _held_by_postgres(name, Decimal((sign, digits, -scale)))


def _finite(name: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        raise DecodeError(f"column {name} is neither a decimal string nor base64") from None
    if not value.is_finite():
        raise DecodeError(f"column {name} is not a finite number")
    return _held_by_postgres(name, value)


def _held_by_postgres(name: str, value: Decimal) -> Decimal:
    """`value`, or a DecodeError when no PostgreSQL numeric holds it (so no source row sent it)."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    if value and (value.adjusted() >= PG_NUMERIC_MAX_INTEGER_DIGITS or exponent < -PG_NUMERIC_MAX_SCALE):
        raise DecodeError(f"column {name} has more digits than any PostgreSQL numeric holds")
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
    return _scaled(name, unscaled, scale)


def _source_numeric(name: str, raw: Any) -> Decimal:
    return _decimal_with_scale(name, raw, SOURCE_NUMERIC_SCALE)


def _text(name: str, raw: Any) -> str:
    if not isinstance(raw, str):
        raise DecodeError(f"column {name} is a JSON {json_type(raw)}, expected a string")
    return raw


def _date(name: str, raw: Any) -> dt.date:
    try:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return dt.date.fromordinal(_EPOCH_ORDINAL + raw)
        if isinstance(raw, str):  # time.precision.mode=isostring: "2025-11-01Z"
            return dt.date.fromisoformat(raw.removesuffix("Z"))
    except (ValueError, OverflowError):
        raise DecodeError(f"column {name} is not a valid date") from None
    raise DecodeError(f"column {name} is a JSON {json_type(raw)}, expected days since epoch")


def _timestamptz(name: str, raw: Any) -> dt.datetime:
    if not isinstance(raw, str):
        raise DecodeError(f"column {name} is a JSON {json_type(raw)}, expected an ISO-8601 timestamp")
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
        raise DecodeError(f"column {name} is a JSON {json_type(raw)}, expected JSON text")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise DecodeError(f"column {name} holds malformed JSON") from None


def json_type(value: Any) -> str:
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
    ColumnKind.TEXT: _text,
    ColumnKind.NUMERIC: _source_numeric,
    ColumnKind.DATE: _date,
    ColumnKind.TIMESTAMPTZ: _timestamptz,
    ColumnKind.JSONB: _jsonb,
}
