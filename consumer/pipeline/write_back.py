"""Write-backs to the source rows: queued durably with the outcome, applied apart with a lock timeout.

The outcome's transaction only queues the write-back (`zoho_pending_write_back`), so a source row
held by an application transaction never blocks other outcomes or the offset commit. The queue is
applied right after each commit and every few seconds, a batch at a time with one statement per table:
rows an application transaction holds are skipped (`FOR UPDATE SKIP LOCKED`) and tried again later,
the others go through.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from consumer.entities.registry import spec_of
from consumer.pipeline.events import EntityType
from consumer.pipeline.source_reads import as_uuid

log = structlog.get_logger("zoho_cdc.write_back")

RETRY_SECONDS: Final = 2.0  # how often the queue is looked at when nothing else applies it
# How long a wake-up waits for more write-backs before applying: one transaction then carries the
# write-backs of many outcomes (a backfill queues hundreds a second), at 50 ms of delay to the source row.
GATHER_SECONDS: Final = 0.05
BATCH_SIZE: Final = 500  # write-backs applied in one transaction
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
    " queued_at = now()"
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
    return f"SELECT id FROM {entity_type.table} WHERE id = ANY(%s::uuid[]) FOR UPDATE SKIP LOCKED"


@functools.cache
def _existing_rows_sql(entity_type: EntityType) -> str:
    return f"SELECT id FROM {entity_type.table} WHERE id = ANY(%s::uuid[])"


# Only the version applied: a newer one queued meanwhile (a later queued_at) stays for the next pass.
_DONE_SQL: Final = (
    "DELETE FROM zoho_pending_write_back p"
    " USING unnest(%s::text[], %s::text[], %s::timestamptz[]) AS d(entity_type, entity_id, queued_at)"
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


class WriteBackQueue:
    """Applies queued write-backs to the source rows; one per store, run in the background."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._applying = asyncio.Lock()  # one batch at a time in this process (the loop, `close`, tests)
        self._closing = False

    def poke(self) -> None:
        """Something was queued: apply it soon (starts the background task on first use)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="write-backs")
        self._wake.set()

    async def close(self) -> None:
        # The flag ends the loop even when the cancel is lost: Python 3.11's wait_for swallows a cancel
        # that arrives as the event it waits for is set (a poke just before close).
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), RETRY_SECONDS)
            except TimeoutError:
                pass
            else:
                await asyncio.sleep(GATHER_SECONDS)
            self._wake.clear()
            try:
                applied, held = await self.apply_pending()
            except psycopg.Error as exc:  # the database is away: the queue is durable, try again later
                log.warning("write-backs postponed", error=str(exc))
                continue
            if applied and applied + held >= BATCH_SIZE:
                self._wake.set()  # a full batch: more may be queued (a backfill's), go on at once

    async def apply_pending(self, limit: int = BATCH_SIZE) -> tuple[int, int]:
        """Apply up to `limit` queued write-backs; returns (applied, left locked).

        One statement per table for the whole batch, not one per row: rows an application transaction
        holds are skipped (`SKIP LOCKED`) and stay queued, so a held row delays only itself."""
        async with self._applying, self._pool.connection() as conn, conn.transaction():
            # Queue rows another process is applying are skipped too: instances sharing the queue
            # take disjoint batches.
            rows = await (
                await conn.execute(
                    "SELECT entity_type, entity_id, zoho_id, sync_status, called, queued_at"
                    " FROM zoho_pending_write_back ORDER BY queued_at LIMIT %s FOR UPDATE SKIP LOCKED",
                    (limit,),
                )
            ).fetchall()
            by_type: dict[str, list[_Queued]] = {}
            for row in rows:
                by_type.setdefault(row[0], []).append(_Queued(*row))
            held: list[_Queued] = []
            for entity_type, queued in by_type.items():
                held += await _apply_table(conn, EntityType(entity_type), queued)
        if held:
            log.warning(
                "write-backs waiting for locked source rows", locked=len(held), applied=len(rows) - len(held)
            )
        return len(rows) - len(held), len(held)


async def _apply_table(
    conn: psycopg.AsyncConnection[Any], entity_type: EntityType, queued: list[_Queued]
) -> list[_Queued]:
    """Apply one table's queued write-backs in one transaction; returns those whose rows are held."""
    ids = [q.row_id for q in queued if q.row_id is not None]
    free = {r[0] for r in await (await conn.execute(_free_rows_sql(entity_type), (ids,))).fetchall()}
    busy = [i for i in ids if i not in free]
    if busy:  # not free: held by another transaction, or gone (then there is nothing to write back)
        busy = [r[0] for r in await (await conn.execute(_existing_rows_sql(entity_type), (busy,))).fetchall()]
    held_ids = set(busy)
    apply = [q for q in queued if q.row_id is not None and q.row_id in free]
    if apply:
        await conn.execute(
            _update_sql(entity_type),
            (
                [q.row_id for q in apply],
                [q.zoho_id for q in apply],
                [q.status for q in apply],
                [q.called for q in apply],
            ),
        )
    done = [q for q in queued if q.row_id not in held_ids]
    held = [q for q in queued if q.row_id in held_ids]
    if done:
        await conn.execute(
            _DONE_SQL,
            ([q.entity_type for q in done], [q.entity_id for q in done], [q.queued_at for q in done]),
        )
    if held:
        await conn.execute(_HELD_SQL, (entity_type.value, [q.entity_id for q in held]))
    return held
