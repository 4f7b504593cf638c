"""The statements of one group commit: sync-log rows, entity-map rows, cleared intents, queued write-backs.

A small group goes as one pipeline: every statement and the commit in one exchange with PostgreSQL.
A replay settles thousands of records at once (`superseded`, `unchanged`). COPY sends them for a
third of the CPU of one INSERT per row, but cannot skip a row that is already logged (a redelivered
record). Many rows are copied straight into the log inside a savepoint; only when one of them is
logged already are they copied again into a per-session temporary table and moved on with
`ON CONFLICT DO NOTHING`, in the caller's transaction. (Straight in costs PostgreSQL a third less:
0.32 s instead of 0.47 s for 35,000 rows on the benchmark machine.)
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg.types.json import Jsonb

from consumer.model.events import EntityType
from consumer.pipeline.effects.write_back import QUEUE_SQL, WriteBack, queue_rows

if TYPE_CHECKING:
    from consumer.pipeline.durability.store import EntityUpdate, OutcomeRow

_COLUMNS: Final = (
    "consumer_group, topic, kafka_partition, kafka_offset, entity_type, entity_id, outcome, operation,"
    " zoho_id, http_status, attempts, error, duration_ms, source_lsn, source_ts_ms"
)
_ON_CONFLICT: Final = " ON CONFLICT (consumer_group, topic, kafka_partition, kafka_offset) DO NOTHING"
_INSERT_ROW: Final = (
    f"INSERT INTO zoho_sync_log ({_COLUMNS}) VALUES ({', '.join(['%s'] * 15)})" + _ON_CONFLICT
)
# Only the copied columns (no defaults): a LIKE copy would tie the session's table to the log's sequence.
_INCOMING: Final = (
    "CREATE TEMP TABLE IF NOT EXISTS zoho_sync_log_incoming (consumer_group text, topic text,"
    " kafka_partition integer, kafka_offset bigint, entity_type text, entity_id text, outcome text,"
    " operation text, zoho_id text, http_status integer, attempts integer, error text, duration_ms integer,"
    " source_lsn bigint, source_ts_ms bigint) ON COMMIT DELETE ROWS"
)
_MOVE_IN: Final = (
    f"INSERT INTO zoho_sync_log ({_COLUMNS}) SELECT {_COLUMNS} FROM zoho_sync_log_incoming" + _ON_CONFLICT
)
COPY_FROM_ROWS: Final = 64  # below this, the temporary table's statements cost more than they save


def _values(o: OutcomeRow) -> tuple[Any, ...]:
    return (
        o.consumer_group,
        o.topic,
        o.partition,
        o.offset,
        o.entity_type,
        o.entity_id,
        o.outcome,
        o.operation,
        o.zoho_id,
        o.http_status,
        o.attempts,
        (o.error or None) and o.error[:2000],
        o.duration_ms,
        o.source_lsn,
        o.source_ts_ms,
    )


async def write_outcomes(cur: psycopg.AsyncCursor[Any], outcomes: Sequence[OutcomeRow]) -> None:
    """Insert the rows inside the caller's transaction; a row already logged is left as it is."""
    rows = [_values(o) for o in outcomes]
    if len(rows) < COPY_FROM_ROWS:
        await cur.executemany(_INSERT_ROW, rows)
        return
    try:  # straight into the log, as nearly always none is logged yet; a savepoint undoes it if one is
        async with cur.connection.transaction():
            async with cur.copy(f"COPY zoho_sync_log ({_COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    await copy.write_row(row)
        return
    except psycopg.errors.UniqueViolation:
        pass  # a redelivered record is in the log already: copy again, skipping the rows already there
    await cur.execute(_INCOMING)
    async with cur.copy(f"COPY zoho_sync_log_incoming ({_COLUMNS}) FROM STDIN") as copy:
        for row in rows:
            await copy.write_row(row)
    await cur.execute(_MOVE_IN)


# A write from an older source position than the row holds (a bulk check or a reconcile beside the live
# sync) must not put back an older state: it only fills what the row lacks (an id it learned). Positions
# are compared only when both are known (a snapshot read has none: see `entity_map.position`).
_OLDER: Final = "EXCLUDED.last_lsn < zoho_entity_map.last_lsn"


def _newer_wins(column: str) -> str:
    """The write's value, or the stored one where the write has none; for an older write, the reverse."""
    return (
        f" {column} = CASE WHEN {_OLDER} THEN COALESCE(zoho_entity_map.{column}, EXCLUDED.{column})"
        f" ELSE COALESCE(EXCLUDED.{column}, zoho_entity_map.{column}) END,"
    )


def _newer_sets(column: str) -> str:
    """The write's value, even none; an older write leaves the stored one."""
    return f" {column} = CASE WHEN {_OLDER} THEN zoho_entity_map.{column} ELSE EXCLUDED.{column} END,"


# The store's organisation is the first value of every row: the map is one per Zoho organisation.
_ENTITY_MAP_UPSERT: Final = (
    "INSERT INTO zoho_entity_map (organization_id, entity_type, entity_id, zoho_id, payload_hash, last_lsn,"
    " zoho_status, natural_key, source_row, rejected_digest, currency_code, replay_memo, zoho_ahead,"
    " updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())"
    " ON CONFLICT (organization_id, entity_type, entity_id) DO UPDATE SET"
    + _newer_wins("zoho_id")
    + _newer_sets("payload_hash")
    + " last_lsn = GREATEST(EXCLUDED.last_lsn, zoho_entity_map.last_lsn),"
    + _newer_wins("zoho_status")
    + _newer_wins("natural_key")
    + _newer_wins("source_row")
    + _newer_sets("rejected_digest")
    + _newer_wins("currency_code")
    + _newer_sets("replay_memo")
    + _newer_sets("zoho_ahead")
    + " updated_at = now()"
)


def _entity_values(organization_id: str, e: EntityUpdate) -> tuple[Any, ...]:
    return (
        organization_id,
        e.entity_type.value,
        e.entity_id,
        e.zoho_id,
        e.payload_hash,
        e.last_lsn,
        e.zoho_status,
        e.natural_key,
        None if e.source_row is None else Jsonb(e.source_row),
        e.rejected_digest,
        e.currency_code,
        e.replay_memo,
        e.zoho_ahead,
    )


async def write_group(
    conn: psycopg.AsyncConnection[Any],
    organization_id: str,
    outcomes: Sequence[OutcomeRow],
    entities: Sequence[EntityUpdate],
    cleared_intents: Sequence[tuple[EntityType, str]],
    write_backs: Sequence[WriteBack],
) -> None:
    """One group's rows in one transaction: durable when this returns, nothing of it when it raises."""
    pipelined = len(outcomes) < COPY_FROM_ROWS  # COPY cannot run in a pipeline
    async with conn.pipeline() if pipelined else nullcontext(), conn.transaction(), conn.cursor() as cur:
        if outcomes:
            await write_outcomes(cur, outcomes)
        if entities:
            await cur.executemany(_ENTITY_MAP_UPSERT, [_entity_values(organization_id, e) for e in entities])
        if cleared_intents:
            await cur.executemany(
                "DELETE FROM zoho_sync_intent"
                " WHERE organization_id = %s AND entity_type = %s AND entity_id = %s",
                [(organization_id, t.value, i) for t, i in cleared_intents],
            )
        if write_backs:
            await cur.executemany(QUEUE_SQL, queue_rows(write_backs))
