"""Reads of the source tables: an entity's current row, and facts its children hold.

Rows are shaped like a decoded Debezium `after` (uuid columns as strings), so a row read here and a row
from an event are interchangeable. Questions asked by many workers within one short gathering pause
(`GATHER_SECONDS`) are answered by one query.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from consumer.model.events import EntityType
from consumer.pipeline.durability.gathered import Gathered


class SourceReader:
    """Reads the source tables the entity specs name."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
        self._rows: Gathered[EntityType, dict[str, Any]] = Gathered(self.rows)
        # questions about child rows: (table, parent column, value column) -> parent id -> answer
        self._child_values: Gathered[tuple[str, str, str], str | None] = Gathered(self._first_child_values)

    async def row(self, entity_type: EntityType, entity_id: str) -> dict[str, Any] | None:
        """The current source row of an entity, shaped like a decoded Debezium `after`; None if gone.
        Asked by many workers in one gathering pause, answered by one query per table."""
        key = as_uuid(entity_id)
        if key is None:
            return None
        row = await self._rows.ask(entity_type, str(key))
        return None if row is None else dict(row)  # each caller its own copy

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
        Asked by many workers in one gathering pause, answered by one query per kind of question."""
        key = as_uuid(parent_id)
        if key is None:
            return None
        return await self._child_values.ask((child.table, parent_column, value_column), str(key))

    async def _first_child_values(
        self, question: tuple[str, str, str], parent_ids: Sequence[str]
    ) -> dict[str, str | None]:
        table, parent_column, value_column = question
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT DISTINCT ON ({parent_column}) {parent_column}::text, {value_column}"  # noqa: S608
                f" FROM {table} WHERE {parent_column} = ANY(%s::uuid[])"
                f" ORDER BY {parent_column}, created_at",
                (list(parent_ids),),
            )
            return {r[0]: (r[1].strip() if r[1] else None) for r in await cur.fetchall()}


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
