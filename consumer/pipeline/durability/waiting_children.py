"""Children waiting for a parent (`zoho_waiting_for_parent`), taken for many synced parents at once.

Every synced parent asks, and almost always none waits (a statement each: a round trip and a pooled
connection, 10,000 in a 15,000-entity backfill). The parents asked in one pause share one DELETE ...
RETURNING; each child goes to exactly one asker, and a failed statement fails exactly its askers.
"""

from __future__ import annotations

import asyncio
from typing import Any

from psycopg_pool import AsyncConnectionPool

from consumer.model.events import EntityType
from consumer.pipeline.durability.gathered import GATHER_SECONDS, Gathering

Children = list[tuple[EntityType, str]]

_TAKE_SQL = (
    "DELETE FROM zoho_waiting_for_parent w"
    " USING unnest(%s::text[], %s::text[]) AS p(parent_type, parent_id)"
    " WHERE w.organization_id = %s AND w.parent_type = p.parent_type AND w.parent_id = p.parent_id"
    " RETURNING w.parent_type, w.parent_id, w.entity_type, w.entity_id"
)


class WaitingChildren:
    """Takes the children waiting for a parent, one statement for the parents asked in one pause."""

    def __init__(self, pool: AsyncConnectionPool[Any], organization_id: str) -> None:
        self._pool = pool
        self._organization_id = organization_id
        # Not one future per parent: a parent asked twice at once hands its children to one asker only.
        self._asked: Gathering[tuple[tuple[str, str], asyncio.Future[Children]]] = Gathering(
            self._take_all, pause=GATHER_SECONDS
        )

    async def take(self, parent_type: EntityType, parent_id: str) -> Children:
        """The children waiting for this parent, forgotten as they are handed out."""
        future: asyncio.Future[Children] = asyncio.get_running_loop().create_future()
        self._asked.add(((parent_type.value, parent_id), future))
        return await asyncio.shield(future)

    async def _take_all(self, batch: list[tuple[tuple[str, str], asyncio.Future[Children]]]) -> None:
        asked: dict[tuple[str, str], list[asyncio.Future[Children]]] = {}
        for parent, future in batch:
            asked.setdefault(parent, []).append(future)
        try:
            taken = await self._delete(list(asked))
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for parent, futures in asked.items():
            # the first asker gets them; a second asker of the same parent would have found none
            children = taken.get(parent, [])
            for future in futures:
                if not future.done():
                    future.set_result(children)
                    children = []

    async def _delete(self, parents: list[tuple[str, str]]) -> dict[tuple[str, str], Children]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                _TAKE_SQL,
                ([kind for kind, _ in parents], [key for _, key in parents], self._organization_id),
            )
            rows = await cur.fetchall()
        taken: dict[tuple[str, str], Children] = {}
        for parent_type, parent_id, kind, entity_id in rows:
            taken.setdefault((parent_type, parent_id), []).append((EntityType(kind), str(entity_id)))
        return taken
