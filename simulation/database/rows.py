"""The rules the sync store's SQL applies to a row, as pure functions over plain dicts.

Each mirrors one statement: `logged_values` the sync-log INSERT (its CHECKs and the error's 2,000-char
cut), `merged_entity` the entity map's "newer wins" upsert (`group_writes._ENTITY_MAP_UPSERT`),
`queued_write_back` the write-back queue's merge (`write_back.QUEUE_SQL`) and `refusal_pause` the
backoff of a refused write-back (`write_back._REFUSED_SQL`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

import orjson
import psycopg
from psycopg import errors

from consumer.pipeline.durability.rows import OUTCOMES, EntityUpdate, OutcomeRow
from consumer.pipeline.effects.write_back import WriteBack
from simulation.database.source_tables import as_jsonb

# btree's largest index entry (PostgreSQL 15): a longer indexed entity id fails its statement.
# Approximate: PostgreSQL compresses a long value before it checks, so repetitive text may pass there.
INDEX_ROW_BYTES: Final = 2704
REFUSED_FIRST_PAUSE_S: Final = 30.0  # write_back.REFUSED_FIRST_PAUSE, in seconds
REFUSED_LONGEST_PAUSE_S: Final = 3600.0  # write_back.REFUSED_LONGEST_PAUSE

# The columns of the entity map and how the upsert sets each: "wins" keeps the newer write's value unless
# it has none (`_newer_wins`), "sets" takes the newer write's value even when none (`_newer_sets`).
_WINS: Final = ("zoho_id", "zoho_status", "natural_key", "source_row", "currency_code")
_SETS: Final = ("payload_hash", "rejected_digest", "replay_memo", "zoho_ahead")


def _text(value: Any) -> None:
    if isinstance(value, str) and "\x00" in value:
        raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")


def logged_values(row: OutcomeRow) -> OutcomeRow:
    """The sync-log row as stored (a copy), or the error the INSERT would raise."""
    for column in ("consumer_group", "topic", "entity_type", "outcome"):
        if getattr(row, column) is None:
            raise errors.NotNullViolation(f'null value in column "{column}" of relation "zoho_sync_log"')
    if row.entity_type == "":
        raise errors.CheckViolation("zoho_sync_log_entity_type_named")
    if row.outcome not in OUTCOMES:
        raise errors.CheckViolation("zoho_sync_log_outcome_check")
    if row.attempts is None or row.attempts < 0:
        raise errors.CheckViolation("zoho_sync_log_attempts_check")
    for value in (
        row.consumer_group,
        row.topic,
        row.entity_type,
        row.entity_id,
        row.operation,
        row.zoho_id,
        row.error,
    ):
        _text(value)
    if row.entity_id is not None and len(row.entity_id.encode()) > INDEX_ROW_BYTES:
        raise errors.ProgramLimitExceeded("index row size exceeds btree maximum for zoho_sync_log_entity")
    return replace(row, error=(row.error or None) and row.error[:2000])


def entity_values(update: EntityUpdate) -> dict[str, Any]:
    """The values the upsert inserts (or offers to the row it conflicts with)."""
    for value in (
        update.entity_id,
        update.zoho_id,
        update.payload_hash,
        update.zoho_status,
        update.natural_key,
        update.rejected_digest,
        update.currency_code,
        update.replay_memo,
        update.zoho_ahead,
    ):
        _text(value)
    if update.entity_type.value == "":
        raise errors.CheckViolation("zoho_entity_map_entity_type_named")
    source_row = None if update.source_row is None else as_jsonb("source_row", dict(update.source_row))
    return {
        "zoho_id": update.zoho_id,
        "payload_hash": update.payload_hash,
        "last_lsn": update.last_lsn,
        "zoho_status": update.zoho_status,
        "natural_key": update.natural_key,
        "source_row": source_row,
        "rejected_digest": update.rejected_digest,
        "currency_code": update.currency_code,
        "replay_memo": update.replay_memo,
        "zoho_ahead": update.zoho_ahead,
    }


def merged_entity(
    stored: Mapping[str, Any] | None,
    offered: dict[str, Any],
    lease: str | None = None,
    planned_version: int | None = None,
) -> dict[str, Any]:
    """The map row after `INSERT ... ON CONFLICT DO UPDATE` with the newer-wins rules.

    A write from an older source position than the row holds (both known) only fills what the row
    lacks; otherwise the write's values win, except that "wins" columns keep the stored value when the
    write has none. `last_lsn` is the greater of the two (GREATEST ignores NULL). Every update is a new
    `version`; the write lease is released when it is the one the write carries (`lease`); a write decided
    from an older version than the row's (`planned_version`) clears the payload hash."""
    if stored is None:
        return {**offered, "version": 0, "sending": None}
    old_lsn, new_lsn = stored["last_lsn"], offered["last_lsn"]
    older = old_lsn is not None and new_lsn is not None and new_lsn < old_lsn
    merged: dict[str, Any] = {}
    for column in _WINS:
        first, second = (stored[column], offered[column]) if older else (offered[column], stored[column])
        merged[column] = first if first is not None else second
    for column in _SETS:
        merged[column] = stored[column] if older else offered[column]
    known = [lsn for lsn in (old_lsn, new_lsn) if lsn is not None]
    merged["last_lsn"] = max(known) if known else None
    if planned_version is not None and stored["version"] != planned_version:
        merged["payload_hash"] = None
    merged["version"] = stored["version"] + 1
    merged["sending"] = None if lease is not None and stored["sending"] == lease else stored["sending"]
    return merged


def fresh(value: Any) -> Any:
    """A deep copy of a JSON value, as a new read of a jsonb column gives (orjson; json for big ints)."""
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError:
        return json.loads(json.dumps(value))


def queued_write_back(
    stored: Mapping[str, Any] | None, write_back: WriteBack, queued_at: float, order: int
) -> dict[str, Any]:
    """The queue row after `QUEUE_SQL`: the newer write-back replaces the older, keeping "Zoho was called"
    and the id it learned; a refusal is forgotten (new values are tried at once); attempts are kept."""
    if write_back.sync_status is None:
        raise errors.NotNullViolation(
            'null value in column "sync_status" of relation "zoho_pending_write_back"'
        )
    _text(write_back.zoho_id)
    _text(write_back.sync_status)
    old_id = stored["zoho_id"] if stored else None
    return {
        "zoho_id": write_back.zoho_id if write_back.zoho_id is not None else old_id,
        "sync_status": write_back.sync_status,
        "called": bool(write_back.called) or bool(stored and stored["called"]),
        "queued_at": queued_at,
        "order": order,  # ties of `queued_at` (one transaction's now()) in the order queued
        "attempts": stored["attempts"] if stored else 0,
        "refused": None,
        "refusals": 0,
        "retry_after": None,
    }


def refusal_pause(refusals: int) -> float:
    """Seconds before a refused write-back is tried again: 30 s doubling per earlier refusal, at most 1 h."""
    return min(REFUSED_LONGEST_PAUSE_S, REFUSED_FIRST_PAUSE_S * 2 ** min(refusals, 20))
