"""Who adopted which Zoho record: in one organisation, a Zoho record is adopted by at most one entity.

The first claim wins: the claim table's primary key makes claiming atomic across workers and processes,
and a record the organisation's entity map already gives another entity (one zoho-cdc created for it) is
that entity's. Records an entity was unlinked from by hand are never matched to it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg_pool import AsyncConnectionPool

from consumer.model.events import EntityType
from consumer.pipeline.durability.gathered import Gathered

_MAPPED_TO_ANOTHER = (
    "SELECT entity_id FROM zoho_entity_map WHERE organization_id = %s AND entity_type = %s AND zoho_id = %s"
    " AND entity_id <> %s"
)


class AdoptionClaims:
    """The `zoho_adoption_claim` and `zoho_adoption_refused` tables of one organisation."""

    def __init__(self, pool: AsyncConnectionPool[Any], organization_id: str = "") -> None:
        self._pool = pool
        self._org = organization_id
        self._refused: Gathered[EntityType, frozenset[str]] = Gathered(self._refused_of)

    async def claim(self, entity_type: EntityType, zoho_id: str, entity_id: str, matched_by: str) -> str:
        """Claim `zoho_id` for `entity_id`; returns the entity that holds it (`entity_id` when the claim is
        ours, now or from before)."""
        kind = entity_type.value
        async with self._pool.connection() as conn:
            cur = await conn.execute(_MAPPED_TO_ANOTHER + " LIMIT 1", (self._org, kind, zoho_id, entity_id))
            mapped = await cur.fetchone()
            if mapped is not None:
                return str(mapped[0])
            cur = await conn.execute(
                "INSERT INTO zoho_adoption_claim"
                " (organization_id, entity_type, zoho_id, entity_id, matched_by) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (organization_id, entity_type, zoho_id) DO NOTHING RETURNING entity_id",
                (self._org, kind, zoho_id, entity_id, matched_by),
            )
            if await cur.fetchone() is not None:
                return entity_id
            # Someone holds it: read it in a statement of its own (autocommit), which sees their commit.
            cur = await conn.execute(
                "SELECT entity_id FROM zoho_adoption_claim"
                " WHERE organization_id = %s AND entity_type = %s AND zoho_id = %s",
                (self._org, kind, zoho_id),
            )
            held = await cur.fetchone()
        return str(held[0]) if held else entity_id

    async def holder(self, entity_type: EntityType, zoho_id: str, entity_id: str) -> str | None:
        """The other entity `zoho_id` is mapped to or claimed by, without claiming it; None if none."""
        kind = entity_type.value
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                _MAPPED_TO_ANOTHER + " UNION ALL SELECT entity_id FROM zoho_adoption_claim"
                " WHERE organization_id = %s AND entity_type = %s AND zoho_id = %s AND entity_id <> %s"
                " LIMIT 1",
                (self._org, kind, zoho_id, entity_id) * 2,
            )
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def refused(self, entity_type: EntityType, entity_id: str) -> frozenset[str]:
        """The Zoho records this entity was unlinked from by hand: never matched to it again.

        Asked before every create, by every worker at once in a backfill: gathered into one query a tick
        (a query each held the few pooled connections the Zoho calls' window needs, and stalled them)."""
        return await self._refused.ask(entity_type, entity_id) or frozenset()

    async def _refused_of(
        self, entity_type: EntityType, entity_ids: Sequence[str]
    ) -> dict[str, frozenset[str]]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT entity_id, zoho_id FROM zoho_adoption_refused"
                " WHERE organization_id = %s AND entity_type = %s AND entity_id = ANY(%s)",
                (self._org, entity_type.value, list(entity_ids)),
            )
            found: dict[str, set[str]] = {}
            for entity_id, zoho_id in await cur.fetchall():
                found.setdefault(str(entity_id), set()).add(str(zoho_id))
        return {entity_id: frozenset(ids) for entity_id, ids in found.items()}
