"""Reads of the source tables: an entity's current row, and facts its children hold.

Rows are shaped like a decoded Debezium `after` (uuid columns as strings), so a row read here and a row
from an event are interchangeable. Questions asked by many workers within one short gathering pause
(`GATHER_SECONDS`) are answered by one query.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from consumer.pipeline.events import EntityType

# How long a batched read waits for other workers' questions before it asks the database. A worker
# waits this long once per read; a busy pipeline saves a transaction (~0.3 ms of CPU) per question.
GATHER_SECONDS = 0.002


class SourceReader:
    """Reads the source tables the entity specs name."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
        # questions about child rows (table, parent column, value column) -> parent id -> answer
        self._child_requests: dict[tuple[str, str, str], dict[str, asyncio.Future[str | None]]] = {}
        self._child_loader: asyncio.Task[None] | None = None
        self._row_requests: dict[EntityType, dict[str, asyncio.Future[dict[str, Any] | None]]] = {}
        self._row_loader: asyncio.Task[None] | None = None

    async def row(self, entity_type: EntityType, entity_id: str) -> dict[str, Any] | None:
        """The current source row of an entity, shaped like a decoded Debezium `after`; None if gone.
        Asked by many workers in one gathering pause, answered by one query per table."""
        key = as_uuid(entity_id)
        if key is None:
            return None
        requests = self._row_requests.setdefault(entity_type, {})
        future = requests.get(str(key))
        if future is None:
            future = requests[str(key)] = asyncio.get_running_loop().create_future()
        if self._row_loader is None or self._row_loader.done():
            self._row_loader = asyncio.create_task(self._load_rows())
        row = await asyncio.shield(future)
        return None if row is None else dict(row)  # each caller its own copy

    async def _load_rows(self) -> None:
        while self._row_requests:
            await asyncio.sleep(GATHER_SECONDS)
            asked, self._row_requests = self._row_requests, {}
            for entity_type, requests in asked.items():
                try:
                    found = await self.rows(entity_type, list(requests))
                except Exception as exc:
                    settle_all(requests.values(), exc)
                    continue
                for row_id, future in requests.items():
                    if not future.done():
                        future.set_result(found.get(row_id))

    async def rows(self, entity_type: EntityType, entity_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The current source rows of many entities in one query, by entity id (shaped as `row`)."""
        wanted = {key: entity_id for entity_id in entity_ids if (key := as_uuid(entity_id)) is not None}
        if not wanted:
            return {}
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(f"SELECT * FROM {entity_type.table} WHERE id = ANY(%s)", (list(wanted),))  # noqa: S608
            found = await cur.fetchall()
        return {wanted[row_id]: _as_sent(row) for row in found if (row_id := row["id"]) in wanted}

    async def first_child_value(
        self, child: EntityType, parent_column: str, value_column: str, parent_id: str
    ) -> str | None:
        """`value_column` of the parent's oldest child row (a customer's currency is its invoices').
        Asked by many workers in one event-loop tick, answered by one query per kind of question."""
        key = as_uuid(parent_id)
        if key is None:
            return None
        question = (child.table, parent_column, value_column)
        requests = self._child_requests.setdefault(question, {})
        future = requests.get(str(key))
        if future is None:
            future = requests[str(key)] = asyncio.get_running_loop().create_future()
        if self._child_loader is None or self._child_loader.done():
            self._child_loader = asyncio.create_task(self._load_child_values())
        return await asyncio.shield(future)

    async def _load_child_values(self) -> None:
        while self._child_requests:
            await asyncio.sleep(GATHER_SECONDS)
            questions, self._child_requests = self._child_requests, {}
            for (table, parent_column, value_column), requests in questions.items():
                try:
                    async with self._pool.connection() as conn:
                        cur = await conn.execute(
                            f"SELECT DISTINCT ON ({parent_column}) {parent_column}::text, {value_column}"  # noqa: S608
                            f" FROM {table} WHERE {parent_column} = ANY(%s::uuid[])"
                            f" ORDER BY {parent_column}, created_at",
                            (list(requests),),
                        )
                        found = {r[0]: (r[1].strip() if r[1] else None) for r in await cur.fetchall()}
                except Exception as exc:
                    settle_all(requests.values(), exc)
                    continue
                for parent_id, future in requests.items():
                    if not future.done():
                        future.set_result(found.get(parent_id))


def _as_sent(row: dict[str, Any]) -> dict[str, Any]:
    for column, value in row.items():
        if isinstance(value, uuid.UUID):  # Debezium sends uuid columns as strings
            row[column] = str(value)
    return row


def as_uuid(value: str) -> uuid.UUID | None:
    """The source primary key (uuid), or None for an id that cannot be one (no row can have it)."""
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        return None


def settle_all(futures: Any, exc: BaseException | None) -> None:
    """Answer every waiting request at once: with None, or with the error that failed their query."""
    for future in futures:
        if future.done():
            continue
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)
