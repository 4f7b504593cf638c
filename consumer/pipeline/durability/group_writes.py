"""Group commits: the outcomes of concurrent workers written in one transaction.

A group is gathered for `GROUP_GATHER_SECONDS` (or until it holds `GROUP_FULL_ROWS` rows); each worker's
write returns once its rows are durable. A group failed by one bad item is written again item by item,
so only that item fails; a lost database fails the whole group (the caller retries).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from consumer.model.events import EntityType
from consumer.pipeline.durability.gathered import GatheredWrites, Waiter
from consumer.pipeline.durability.rows import EntityUpdate, OutcomeRow
from consumer.pipeline.effects.write_back import QUEUE_SQL, WriteBack, WriteBackQueue, queue_rows

# How long a group commit gathers outcomes. Longer than a read's pause: a worker waiting for its
# outcome holds no Zoho permit, only its key, and a group of a few dozen rows costs a group of a few
# per row; the outcome (and so the offset commit) is a few milliseconds later.
# Measured on the 50,000-event backfill: 2 ms -> 16.9 CPU s, 10 ms -> 15.5, 25 ms -> 14.8.
GROUP_GATHER_SECONDS = 0.02
# A group this large is written at once: waiting longer saves nothing, and a replay settling records in
# bulk would otherwise stall at its in-flight bound for a pause per group.
GROUP_FULL_ROWS = 500

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
    """Insert the rows inside the caller's transaction; a row already logged is left as it is.

    A small group is one pipelined exchange; a large one (a replay settles thousands of records at once)
    is copied in: COPY takes a third of the CPU of one INSERT per row, but cannot skip a row already
    logged (a redelivered record). So the rows are copied straight into the log inside a savepoint (about
    a third cheaper for PostgreSQL); only when one is logged already are they copied again into a
    per-session temporary table and moved on with `ON CONFLICT DO NOTHING`, in the caller's transaction."""
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
    # Decided from a row another process wrote since (its version moved on): Zoho's content is unknown.
    + " payload_hash = CASE WHEN zoho_entity_map.version <> %s::bigint THEN NULL"
    + f" WHEN {_OLDER} THEN zoho_entity_map.payload_hash ELSE EXCLUDED.payload_hash END,"
    + " last_lsn = GREATEST(EXCLUDED.last_lsn, zoho_entity_map.last_lsn),"
    + _newer_wins("zoho_status")
    + _newer_wins("natural_key")
    + _newer_wins("source_row")
    + _newer_sets("rejected_digest")
    + _newer_wins("currency_code")
    + _newer_sets("replay_memo")
    + _newer_sets("zoho_ahead")
    # Every write is a new version (a send planned from the old one is decided again); the write that
    # carries the lease of the send it records releases it (`consumer.pipeline.effects.write_lease`).
    + " version = zoho_entity_map.version + 1,"
    + " sending = CASE WHEN zoho_entity_map.sending = %s THEN NULL ELSE zoho_entity_map.sending END,"
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
        e.planned_version,
        e.lease,
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


@dataclass(frozen=True, slots=True)
class GroupItem:
    """One worker's outcome: its sync-log rows and the entity changes that go with them."""

    outcomes: tuple[OutcomeRow, ...]
    entity: EntityUpdate | None
    write_back: WriteBack | None
    clear_intent: tuple[EntityType, str] | None


class GroupCommit:
    """Writes the outcomes of concurrent workers together, one group (one transaction) at a time."""

    def __init__(
        self, pool: AsyncConnectionPool[Any], organization_id: str, write_backs: WriteBackQueue
    ) -> None:
        self._pool = pool
        self._organization_id = organization_id
        self._write_backs = write_backs
        self._groups: GatheredWrites[GroupItem] = GatheredWrites(
            self._write_group,
            pause=GROUP_GATHER_SECONDS,
            full_at=GROUP_FULL_ROWS,
            size=lambda item: len(item.outcomes),
        )

    async def record(self, item: GroupItem, *, at_once: bool = False) -> None:
        """Returns once the item is durable; `at_once` starts its group without waiting for others."""
        await self._groups.write(item, at_once=at_once)

    async def _write_group(self, group: list[Waiter[GroupItem]]) -> None:
        try:
            await self._write([waiter.item for waiter in group])
        except psycopg.OperationalError as exc:
            if not isinstance(exc, psycopg.errors.ProgramLimitExceeded):
                raise  # the database, not one item: the whole group fails
            await self._write_alone(group)
        except Exception:
            await self._write_alone(group)

    async def _write_alone(self, group: list[Waiter[GroupItem]]) -> None:
        """One item's content failed the group's transaction: write each apart, so only it fails."""
        for waiter in group:
            try:
                await self._write([waiter.item])
            except Exception as exc:
                waiter.fail(exc)
            else:
                waiter.done()

    async def _write(self, group: Sequence[GroupItem]) -> None:
        outcomes = [o for item in group for o in item.outcomes]
        entities = [item.entity for item in group if item.entity is not None]
        intents = [item.clear_intent for item in group if item.clear_intent is not None]
        write_backs = [item.write_back for item in group if item.write_back is not None]
        async with self._pool.connection() as conn:
            await write_group(conn, self._organization_id, outcomes, entities, intents, write_backs)
        if write_backs:
            self._write_backs.poke()
