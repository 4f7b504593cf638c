"""Write-backs to the source rows: queued durably with the outcome, applied apart with a lock timeout.

The outcome's transaction only queues the write-back (`zoho_pending_write_back`), so a source row held by
an application transaction never blocks other outcomes or the offset commit. A held row waits its turn; a
row the table refuses is set apart with its error: it never holds back the rest, nor is dropped unseen.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from consumer.entities.registry import spec_of
from consumer.model.events import EntityType
from consumer.pipeline.durability.gathered import Gathering
from consumer.pipeline.durability.source_reads import as_uuid

log = structlog.get_logger(__name__)

RETRY_SECONDS: Final = 2.0  # how often the queue is looked at when nothing else applies it
# How long a wake-up waits for more write-backs before applying: one transaction then carries the
# write-backs of many outcomes (a backfill queues hundreds a second), at 50 ms of delay to the source row.
GATHER_SECONDS: Final = 0.05
BATCH_SIZE: Final = 500  # write-backs applied in one transaction
# A refused write-back waits 30 s, then twice as long after each refusal, at most an hour: a fixed schema
# is picked up without an operator, and a row that stays refused costs one statement an hour.
REFUSED_FIRST_PAUSE: Final = "30 seconds"
REFUSED_LONGEST_PAUSE: Final = "1 hour"
# Every value zoho-cdc writes to a source row's `zoho_sync_status` (`zoho-cdc doctor` checks the column
# accepts each of them: the first integration failed on a CHECK constraint that did not).
SYNC_STATUSES: Final = ("synced", "failed")


@dataclass(frozen=True, slots=True)
class WriteBack:
    """The `zoho_*` columns to set on the source row.

    A write-back is itself streamed back by Debezium, so it writes only when a value changes:
    `zoho_last_synced_at` moves only when Zoho was called (`called`), and the status and id are
    written only when they differ from what the row holds.
    """

    entity_type: EntityType
    entity_id: str
    zoho_id: str | None
    sync_status: str  # one of SYNC_STATUSES
    called: bool = True  # Zoho accepted a call for this entity just now


# Queued in the outcome's transaction; a newer write-back of the same row replaces an older one,
# keeping "Zoho was called" and the id it learned.
QUEUE_SQL: Final = (
    "INSERT INTO zoho_pending_write_back (entity_type, entity_id, zoho_id, sync_status, called)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (entity_type, entity_id) DO UPDATE SET"
    " zoho_id = COALESCE(EXCLUDED.zoho_id, zoho_pending_write_back.zoho_id),"
    " sync_status = EXCLUDED.sync_status,"
    " called = EXCLUDED.called OR zoho_pending_write_back.called,"
    " queued_at = now(), refused = NULL, refusals = 0, retry_after = NULL"  # new values: try at once
)


def queue_rows(write_backs: Sequence[WriteBack]) -> list[tuple[Any, ...]]:
    return [(w.entity_type.value, w.entity_id, w.zoho_id, w.sync_status, w.called) for w in write_backs]


@functools.cache
def _update_sql(entity_type: EntityType) -> str:
    table, id_column = entity_type.table, spec_of(entity_type).write_back_id_column
    return (
        f"UPDATE {table} AS t SET {id_column} = COALESCE(v.zoho_id, t.{id_column}),"
        " zoho_sync_status = v.status,"
        " zoho_last_synced_at = CASE WHEN v.called THEN now() ELSE t.zoho_last_synced_at END"
        " FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::bool[]) AS v(id, zoho_id, status, called)"
        " WHERE t.id = v.id AND (v.called OR t.zoho_sync_status IS DISTINCT FROM v.status"
        f" OR (v.zoho_id IS NOT NULL AND t.{id_column} IS DISTINCT FROM v.zoho_id))"
    )


def write_back_statement(entity_type: EntityType) -> str:
    """The UPDATE that applies a batch of write-backs to the entity's table (`zoho-cdc doctor` plans it
    with EXPLAIN, never running it, to prove the source's columns take what it sets)."""
    return _update_sql(entity_type)


@functools.cache
def _free_rows_sql(entity_type: EntityType) -> str:
    # Rows another transaction holds are skipped, not waited for: they stay queued for a later pass.
    # NO KEY: the write-back changes no key, so an invoice being inserted for the customer (its foreign
    # key holds the customer row FOR KEY SHARE) does not hold the customer's write-back back.
    return f"SELECT id FROM {entity_type.table} WHERE id = ANY(%s::uuid[]) FOR NO KEY UPDATE SKIP LOCKED"


@functools.cache
def _existing_rows_sql(entity_type: EntityType) -> str:
    return f"SELECT id FROM {entity_type.table} WHERE id = ANY(%s::uuid[])"


# Only the version applied: a newer one queued meanwhile (a later queued_at) stays for the next pass.
_DONE_SQL: Final = (
    "DELETE FROM zoho_pending_write_back p"
    " USING unnest(%s::text[], %s::text[], %s::timestamptz[]) AS d(entity_type, entity_id, queued_at)"
    " WHERE p.entity_type = d.entity_type AND p.entity_id = d.entity_id AND p.queued_at = d.queued_at"
)
_REFUSED_SQL: Final = (
    "UPDATE zoho_pending_write_back p SET refused = d.error, refusals = p.refusals + 1,"
    f" retry_after = now() + least(interval '{REFUSED_LONGEST_PAUSE}',"
    f" interval '{REFUSED_FIRST_PAUSE}' * power(2, least(p.refusals, 20)))"
    " FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::text[])"
    " AS d(entity_type, entity_id, queued_at, error)"
    " WHERE p.entity_type = d.entity_type AND p.entity_id = d.entity_id AND p.queued_at = d.queued_at"
)
_HELD_SQL: Final = (
    "UPDATE zoho_pending_write_back SET attempts = attempts + 1"
    " WHERE entity_type = %s AND entity_id = ANY(%s::text[])"
)


@dataclass(frozen=True, slots=True)
class _Queued:
    entity_type: str
    entity_id: str
    zoho_id: str | None
    status: str
    called: bool
    queued_at: Any
    row_id: uuid.UUID | None = field(init=False)  # the source row's key; None for an id no source row has

    def __post_init__(self) -> None:
        object.__setattr__(self, "row_id", as_uuid(self.entity_id))  # parsed once, read four times


class WriteBackPass(NamedTuple):
    """What one pass over the queue did."""

    applied: int  # written to the source row (or nothing left to write: the row is gone)
    held: int  # the row is locked by another transaction: tried again on the next pass
    refused: int  # the table refused the row: set apart with its error, tried again after a pause


class WriteBackQueue:
    """Applies queued write-backs to the source rows; one per store, run in the background.

    Applied right after each commit and every few seconds, a batch at a time with one statement per
    table: rows an application transaction holds are skipped (`FOR NO KEY UPDATE SKIP LOCKED`) and tried
    again later. A row the table refuses (a CHECK, a trigger, a length limit) is found by halving the
    statement (`_update_isolating`) and retried after a growing pause."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
        self._applying = asyncio.Lock()  # one batch at a time in this process (the loop, `close`, tests)
        # Pokes gathered for a pause, then one pass; a pass every few seconds even when none comes.
        self._pokes: Gathering[None] = Gathering(
            self._pass, pause=GATHER_SECONDS, every=RETRY_SECONDS, name="write-backs"
        )

    def poke(self) -> None:
        """Something was queued: apply it soon (starts the background task on first use)."""
        self._pokes.add(None)

    async def close(self) -> None:
        await self._pokes.close()

    async def _pass(self, _pokes: list[None]) -> None:
        try:
            done = await self.apply_pending()
        except psycopg.Error as exc:  # the database is away: the queue is durable, try again later
            log.warning("write-backs postponed", error=str(exc))
            return
        except Exception:  # noqa: BLE001  # a bug must not end write-backs for the process's lifetime
            log.exception("write-back pass failed; the queue is durable, trying again later")
            return
        if done.applied + done.refused and sum(done) >= BATCH_SIZE:
            self.poke()  # a full batch: more may be queued (a backfill's), go on at once

    async def apply_pending(self, limit: int = BATCH_SIZE) -> WriteBackPass:
        """Apply up to `limit` queued write-backs (refused ones only once their pause is over).

        One statement per table for the whole batch, not one per row: rows an application transaction
        holds are skipped (`SKIP LOCKED`) and stay queued, so a held row delays only itself; a row the
        table refuses is set apart (see `_update_isolating`), so it delays nothing."""
        async with self._applying, self._pool.connection() as conn, conn.transaction():
            # Queue rows another process is applying are skipped too: instances sharing the queue
            # take disjoint batches.
            rows = await (
                await conn.execute(
                    "SELECT entity_type, entity_id, zoho_id, sync_status, called, queued_at"
                    " FROM zoho_pending_write_back WHERE retry_after IS NULL OR retry_after <= now()"
                    " ORDER BY queued_at LIMIT %s FOR UPDATE SKIP LOCKED",
                    (limit,),
                )
            ).fetchall()
            by_type: dict[str, list[_Queued]] = {}
            for row in rows:
                by_type.setdefault(row[0], []).append(_Queued(*row))
            held = refused = 0
            for entity_type, queued in by_type.items():
                table_held, table_refused = await _apply_table(conn, EntityType(entity_type), queued)
                held, refused = held + table_held, refused + table_refused
        done = WriteBackPass(len(rows) - held - refused, held, refused)
        if held:
            log.warning("write-backs waiting for locked source rows", locked=held, applied=done.applied)
        return done


async def _apply_table(
    conn: psycopg.AsyncConnection[Any], entity_type: EntityType, queued: list[_Queued]
) -> tuple[int, int]:
    """Apply one table's queued write-backs in one transaction; returns how many rows were held and
    how many refused."""
    ids = [q.row_id for q in queued if q.row_id is not None]
    free = {r[0] for r in await (await conn.execute(_free_rows_sql(entity_type), (ids,))).fetchall()}
    busy = [i for i in ids if i not in free]
    if busy:  # not free: held by another transaction, or gone (then there is nothing to write back)
        busy = [r[0] for r in await (await conn.execute(_existing_rows_sql(entity_type), (busy,))).fetchall()]
    held_ids = set(busy)
    apply = [q for q in queued if q.row_id is not None and q.row_id in free]
    refused = await _update_isolating(conn, entity_type, apply)
    refused_rows = {id(q) for q, _ in refused}
    done = [q for q in queued if q.row_id not in held_ids and id(q) not in refused_rows]
    held = [q for q in queued if q.row_id in held_ids]
    if done:
        await conn.execute(
            _DONE_SQL,
            ([q.entity_type for q in done], [q.entity_id for q in done], [q.queued_at for q in done]),
        )
    if held:
        await conn.execute(_HELD_SQL, (entity_type.value, [q.entity_id for q in held]))
    if refused:
        await conn.execute(
            _REFUSED_SQL,
            (
                [q.entity_type for q, _ in refused],
                [q.entity_id for q, _ in refused],
                [q.queued_at for q, _ in refused],
                [error for _, error in refused],
            ),
        )
        for q, error in refused:
            log.error(
                "write-back refused by the source table", entity=f"{q.entity_type}:{q.entity_id}", error=error
            )
    return len(held), len(refused)


async def _update_isolating(
    conn: psycopg.AsyncConnection[Any], entity_type: EntityType, rows: list[_Queued]
) -> list[tuple[_Queued, str]]:
    """Write these rows in one statement; when the table refuses it, halve under savepoints until the
    refused rows stand alone. Returns each refused row with the database's error.

    Only errors a row can cause are isolated: a lost connection, a lock or statement timeout or a
    deadlock (`OperationalError`) is no row's fault and postpones the whole pass."""
    if not rows:
        return []
    try:
        async with conn.transaction():  # a savepoint: a refusal undoes this statement only
            await conn.execute(
                _update_sql(entity_type),
                (
                    [q.row_id for q in rows],
                    [q.zoho_id for q in rows],
                    [q.status for q in rows],
                    [q.called for q in rows],
                ),
            )
    except psycopg.OperationalError:
        raise
    except psycopg.DatabaseError as exc:
        if len(rows) == 1:
            return [(rows[0], f"{type(exc).__name__}: {exc.diag.message_primary or exc}")]
        half = len(rows) // 2
        return [
            *await _update_isolating(conn, entity_type, rows[:half]),
            *await _update_isolating(conn, entity_type, rows[half:]),
        ]
    return []
