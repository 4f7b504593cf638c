"""Write-backs to the source rows: queued durably with the outcome, applied apart with a lock timeout.

The outcome's transaction only queues the write-back (`zoho_pending_write_back`), so a source row
held by an application transaction never blocks other outcomes or the offset commit. The queue is
applied right after each commit and every few seconds, one savepoint per row under a short
`lock_timeout`: a locked row is skipped and tried again later, the others go through.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from consumer.entities.registry import spec_of
from consumer.pipeline.events import EntityType

log = structlog.get_logger("zoho_cdc.write_back")

LOCK_TIMEOUT_MS: Final = 1000  # how long one write-back waits for a row another transaction holds
RETRY_SECONDS: Final = 2.0  # how often the queue is looked at when nothing else applies it


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
    sync_status: str  # 'synced' | 'failed'
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
        f"UPDATE {table} SET {id_column} = COALESCE(%(zoho_id)s::text, {id_column}),"
        " zoho_sync_status = %(status)s,"
        " zoho_last_synced_at = CASE WHEN %(called)s THEN now() ELSE zoho_last_synced_at END"
        " WHERE id = %(id)s AND (%(called)s OR zoho_sync_status IS DISTINCT FROM %(status)s"
        f" OR (%(zoho_id)s::text IS NOT NULL AND {id_column} IS DISTINCT FROM %(zoho_id)s::text))"
    )


# Only the version applied: a newer one queued meanwhile (a later queued_at) stays for the next pass.
_DONE_SQL: Final = (
    "DELETE FROM zoho_pending_write_back WHERE entity_type = %s AND entity_id = %s AND queued_at = %s"
)


class WriteBackQueue:
    """Applies queued write-backs to the source rows; one per store, run in the background."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        """Something was queued: apply it soon (starts the background task on first use)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="write-backs")
        self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), RETRY_SECONDS)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.apply_pending()
            except psycopg.Error as exc:  # the database is away: the queue is durable, try again later
                log.warning("write-backs postponed", error=str(exc))

    async def apply_pending(self, limit: int = 500) -> tuple[int, int]:
        """Apply up to `limit` queued write-backs; returns (applied, left locked)."""
        applied = locked = 0
        async with self._pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT entity_type, entity_id, zoho_id, sync_status, called, queued_at"
                    " FROM zoho_pending_write_back ORDER BY queued_at LIMIT %s",
                    (limit,),
                )
            ).fetchall()
            if not rows:
                return 0, 0
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'")
                for entity_type, entity_id, zoho_id, status, called, queued_at in rows:
                    try:
                        async with conn.transaction():  # a savepoint: a locked row fails alone
                            await self._apply_one(
                                conn, EntityType(entity_type), entity_id, zoho_id, status, called
                            )
                            await conn.execute(_DONE_SQL, (entity_type, entity_id, queued_at))
                        applied += 1
                    except psycopg.errors.LockNotAvailable:
                        locked += 1
                        await conn.execute(
                            "UPDATE zoho_pending_write_back SET attempts = attempts + 1"
                            " WHERE entity_type = %s AND entity_id = %s",
                            (entity_type, entity_id),
                        )
        if locked:
            log.warning("write-backs waiting for locked source rows", locked=locked, applied=applied)
        return applied, locked

    @staticmethod
    async def _apply_one(
        conn: psycopg.AsyncConnection[Any],
        entity_type: EntityType,
        entity_id: str,
        zoho_id: str | None,
        status: str,
        called: bool,
    ) -> None:
        try:
            row_id = uuid.UUID(entity_id)
        except ValueError:
            return  # not a source row id (the source tables key by uuid): nothing to write back
        params = {"zoho_id": zoho_id, "status": status, "called": called, "id": row_id}
        await conn.execute(_update_sql(entity_type), params)
