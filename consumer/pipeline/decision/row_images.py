"""Full and partial row images: filling TOAST placeholders, folding queued events, remembering rows.

A partial image (an unchanged TOASTed column sent as a placeholder) is never mapped as it is: its missing
columns come from the last full image known for the entity (a queued earlier event, the row remembered,
the current source row), so state, digest and Zoho call are the whole row's. Pure functions, no I/O.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from consumer.entities.registry import spec_of
from consumer.model.events import ChangeEvent, EntityType


def fill_unavailable(event: ChangeEvent, known: Mapping[str, Any] | None) -> ChangeEvent:
    """`event` with its unavailable columns taken from `known` (a full image of an earlier state).

    An unavailable column is one the change left unchanged, so the earlier value is the value at
    this event. Columns `known` lacks stay unavailable.
    """
    if event.row is None or not event.unavailable or not known:
        return event
    filled = {c: known[c] for c in event.unavailable if c in known}
    if not filled:
        return event
    return replace(event, row={**event.row, **filled}, unavailable=event.unavailable - filled.keys())


def coalesce(events: Sequence[ChangeEvent]) -> ChangeEvent:
    """One event standing for a key's queued events, oldest first: the newest state, made whole.

    The newest event wins, but a partial image in the chain takes its unavailable columns from
    the images before it, so a full image followed by a partial one sends the full state. A
    delete (or tombstone) breaks the chain: nothing before it describes a row that exists now.
    """
    if not events:
        raise ValueError("nothing to coalesce")
    merged = events[0]
    for event in events[1:]:
        if event.row is None or merged.row is None:
            merged = event
        else:
            merged = fill_unavailable(event, _known_part(merged))
    return merged


def _known_part(event: ChangeEvent) -> Mapping[str, Any]:
    assert event.row is not None
    return {c: v for c, v in event.row.items() if c not in event.unavailable}


def is_partial(event: ChangeEvent) -> bool:
    """True when a column the mapping reads is unavailable in this image."""
    return bool(event.unavailable & spec_of(event.entity_type).remembered_columns)


def is_whole(event: ChangeEvent) -> bool:
    """An image of a row that exists with every column the mapping reads."""
    return event.row is not None and not is_partial(event)


# --- remembering rows -------------------------------------------------------------------------


def remembered(entity_type: EntityType, row: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a row zoho-cdc keeps: the columns the mapping reads, JSON-ready and typed.

    Each value is stored as `[tag, value]` so Decimals, dates and timestamps come back as the
    same Python values the decoder produces (a jsonb value is tagged too, so it can never be
    mistaken for a tagged scalar).
    """
    columns = spec_of(entity_type).remembered_columns
    return {c: _tagged(row[c]) for c in sorted(columns) if c in row}


def recalled(stored: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The row `remembered` stored, back as decoded values; None when nothing was stored."""
    if not stored:
        return None
    return {column: _untagged(value) for column, value in stored.items()}


def state_digest(entity_type: EntityType, row: Mapping[str, Any]) -> str:
    """A digest of the mapped source state of one row (the remembered columns only).

    Two images with the same digest map to the same Zoho payload, whatever other columns
    (notes, updated_at, our own zoho_* write-back) differ.
    """
    text = json.dumps(remembered(entity_type, row), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _tagged(value: Any) -> list[Any]:
    if isinstance(value, Decimal):
        return ["decimal", _plain_decimal(value)]
    if isinstance(value, dt.datetime):
        return ["datetime", value.isoformat()]
    if isinstance(value, dt.date):
        return ["date", value.isoformat()]
    return ["json", value]


def _plain_decimal(value: Decimal) -> str:
    """The exact value without trailing zeros (Decimal.normalize rounds to 28 digits, losing cents)."""
    if not value:
        return "0"
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _untagged(value: Any) -> Any:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError("not a remembered value")
    tag, raw = value
    if tag == "decimal":
        return Decimal(raw)
    if tag == "datetime":
        return dt.datetime.fromisoformat(raw)
    if tag == "date":
        return dt.date.fromisoformat(raw)
    if tag == "json":
        return raw
    raise ValueError(f"unknown remembered tag {tag!r}")
