"""The source tables' rules, as PostgreSQL enforces them (`/work/shared/fixtures/source-schema.sql`).

Pure: a row in, the row PostgreSQL would store out (defaults filled, numerics rounded to their scale,
`char(3)` padded, jsonb re-ordered as jsonb prints it), or the psycopg error PostgreSQL would raise.
Which value is "toasted" (stored out of line, so an UPDATE that leaves it alone streams a placeholder)
is decided here too.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import psycopg
from psycopg import errors

from connectors import clock
from consumer.entities.registry import spec_of
from consumer.model.events import ColumnKind, EntityType

# The brief's stand-in for PostgreSQL's TOAST threshold (about 2 KB): a longer value is stored out of line.
TOAST_CHARS: Final = 2000
_CENT: Final = Decimal("0.01")
_NUMERIC_LIMIT: Final = Decimal(10) ** 10  # numeric(12,2): ten digits before the point


def _now() -> dt.datetime:
    return clock.utc_now()


@dataclass(frozen=True)
class TableRules:
    """One source table: its columns (in table order), defaults and constraints."""

    entity: EntityType
    not_null: tuple[str, ...]
    defaults: Mapping[str, Callable[[], Any]]
    allowed: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # CHECK (column IN (...))
    unique: tuple[str, ...] = ()
    references: Mapping[str, str] = field(default_factory=dict)  # column -> table it references
    uuid_columns: tuple[str, ...] = ("id",)
    chars: Mapping[str, int] = field(default_factory=dict)  # char(n) columns
    toastable: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.entity.table

    @property
    def kinds(self) -> Mapping[str, ColumnKind]:
        return spec_of(self.entity).columns


TABLES: Final[dict[str, TableRules]] = {
    "customers": TableRules(
        entity=EntityType.CUSTOMER,
        not_null=("id", "account_number", "account_type", "status", "created_at", "updated_at"),
        defaults={
            "account_type": lambda: "personal",
            "status": lambda: "active",
            "created_at": _now,
            "updated_at": _now,
        },
        allowed={
            "account_type": ("personal", "business", "internal_test"),
            "status": ("active", "suspended", "closed"),
        },
        unique=("account_number",),
        toastable=("notes", "billing_address"),
    ),
    "customer_invoices": TableRules(
        entity=EntityType.INVOICE,
        not_null=(
            "id",
            "customer_id",
            "invoice_number",
            "invoice_date",
            "currency",
            "subtotal",
            "vat_amount",
            "total_amount",
            "status",
            "line_items",
            "created_at",
            "updated_at",
        ),
        defaults={
            "currency": lambda: "ZAR",
            "vat_amount": lambda: Decimal("0"),
            "status": lambda: "draft",
            "line_items": list,
            "created_at": _now,
            "updated_at": _now,
        },
        allowed={"status": ("draft", "sent", "paid", "void")},
        unique=("invoice_number",),
        references={"customer_id": "customers"},
        uuid_columns=("id", "customer_id"),
        chars={"currency": 3},
        toastable=("line_items",),
    ),
}


def stored_row(rules: TableRules, row: Mapping[str, Any]) -> dict[str, Any]:
    """The whole row as PostgreSQL stores it: every column in table order, defaults filled.

    Raises the psycopg error PostgreSQL would (an unknown column, a NULL in a NOT NULL column, a value
    outside a CHECK list, a value of the wrong type); uniqueness and references need the table: see
    `MemorySource`."""
    unknown = sorted(set(row) - set(rules.kinds))
    if unknown:
        raise errors.UndefinedColumn(f'column "{unknown[0]}" of relation "{rules.name}" does not exist')
    stored = {}
    for column in rules.kinds:
        value = row[column] if column in row else _default(rules, column)
        stored[column] = stored_value(rules, column, value)
    return stored


def _default(rules: TableRules, column: str) -> Any:
    make = rules.defaults.get(column)
    return None if make is None else make()


def stored_value(rules: TableRules, column: str, value: Any) -> Any:
    """One column's value as stored, or the error PostgreSQL would raise for it."""
    if value is None:
        if column in rules.not_null:
            raise errors.NotNullViolation(
                f'null value in column "{column}" of relation "{rules.name}" violates not-null constraint'
            )
        return None
    allowed = rules.allowed.get(column)
    if allowed is not None and value not in allowed:
        raise errors.CheckViolation(
            f'new row for relation "{rules.name}" violates check constraint on {column}'
        )
    if column in rules.uuid_columns:
        return _uuid_text(column, value)
    return _typed(rules, column, rules.kinds[column], value)


def _typed(rules: TableRules, column: str, kind: ColumnKind, value: Any) -> Any:
    if kind is ColumnKind.NUMERIC:
        return _numeric(column, value)
    if kind is ColumnKind.DATE:
        if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
            raise errors.DatatypeMismatch(f"column {column} is of type date")
        return value
    if kind is ColumnKind.TIMESTAMPTZ:
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            raise errors.DatatypeMismatch(f"column {column} is of type timestamptz (an aware datetime)")
        return value.astimezone(dt.UTC)
    if kind is ColumnKind.JSONB:
        return as_jsonb(column, value)
    return _text(column, value, rules.chars.get(column))


def _text(column: str, value: Any, width: int | None) -> str:
    if not isinstance(value, str):
        raise errors.DatatypeMismatch(f"column {column} is of type text")
    if "\x00" in value:
        raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    if width is not None:
        if len(value.rstrip(" ")) > width:
            raise errors.StringDataRightTruncation(f"value too long for type character({width})")
        return value.ljust(width)
    return value


def _uuid_text(column: str, value: Any) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise errors.InvalidTextRepresentation(f'invalid input syntax for type uuid: "{value}"') from None


def _numeric(column: str, value: Any) -> Decimal:
    try:
        number = Decimal(str(value)).quantize(_CENT)
    except InvalidOperation:
        raise errors.InvalidTextRepresentation(f"invalid input syntax for type numeric in {column}") from None
    if not number.is_finite() or abs(number) >= _NUMERIC_LIMIT:
        raise errors.NumericValueOutOfRange(f"numeric field overflow in {column}")
    return number


def as_jsonb(column: str, value: Any) -> Any:
    """The value as jsonb gives it back: object keys ordered shortest first, then bytewise."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise errors.InvalidTextRepresentation(f"column {column}: value is not JSON") from None
    return _jsonb_order(json.loads(text))


def _jsonb_order(value: Any) -> Any:
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return {k: _jsonb_order(value[k]) for k in keys}
    if isinstance(value, list):
        return [_jsonb_order(v) for v in value]
    return value


def is_toasted(rules: TableRules, column: str, value: Any) -> bool:
    """True when the value is stored out of line (longer than `TOAST_CHARS` as text)."""
    if value is None or column not in rules.toastable:
        return False
    text = value if isinstance(value, str) else json.dumps(value)
    return len(text) > TOAST_CHARS
