"""The write lease of an entity: of two processes writing one entity to Zoho at once, only one sends.

A backfill or a reprocess beside the live sync may plan a write of the same entity from an older event
against the same map row as the live sync's newer one; with both sent, the older could land last while
the map keeps the newer hash, and Zoho would stay rolled back. So a write is sent only while the entity's
map row is still the version its plan was made from, and while no other process has a write of it in
flight (`zoho_entity_map.sending`, migration 0015). How a sync uses it: `consumer.pipeline.effects.
write_lease`.
"""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from consumer.model.events import EntityType


class WriteLeases:
    """The `sending` column of the entity map, one statement per call."""

    def __init__(self, pool: AsyncConnectionPool[Any], organization_id: str) -> None:
        self._pool = pool
        self.organization_id = organization_id

    async def claim(
        self, entity_type: EntityType, entity_id: str, *, version: int, holding: str | None
    ) -> str | None:
        """Take (or renew) the lease before a write is sent: only while the map row is still `version`
        and its lease is still `holding` (None: no write in flight; the caller's own token, renewed; a
        dead holder's, taken over). The new token, or None with nothing written."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE zoho_entity_map SET sending = gen_random_uuid()::text"
                " WHERE organization_id = %s AND entity_type = %s AND entity_id = %s"
                " AND version = %s AND sending IS NOT DISTINCT FROM %s RETURNING sending",
                (self.organization_id, entity_type.value, entity_id, version, holding),
            )
            row = await cur.fetchone()
            return None if row is None else str(row[0])

    async def held(self, entity_type: EntityType, entity_id: str) -> tuple[int, str | None] | None:
        """The map row's version and the lease of its write in flight (None: no map row)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT version, sending FROM zoho_entity_map"
                " WHERE organization_id = %s AND entity_type = %s AND entity_id = %s",
                (self.organization_id, entity_type.value, entity_id),
            )
            row = await cur.fetchone()
            return None if row is None else (int(row[0]), row[1])

    async def release(self, entity_type: EntityType, entity_id: str, lease: str) -> None:
        """Give the lease back when no outcome write will (the call failed): only while it is ours."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE zoho_entity_map SET sending = NULL"
                " WHERE organization_id = %s AND entity_type = %s AND entity_id = %s AND sending = %s",
                (self.organization_id, entity_type.value, entity_id, lease),
            )
