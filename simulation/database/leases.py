"""Write leases in memory: `store.leases`, with `WriteLeases`' statements one for one (migration 0015's
`version` and `sending` columns of the entity map; `rows.merged_entity` counts versions and releases)."""

from __future__ import annotations

from consumer.model.events import EntityType
from simulation.database.tables import MemoryDatabase, StatementGate


class MemoryLeases:
    """The `sending` column of one organisation's entity map."""

    def __init__(self, db: MemoryDatabase, organization_id: str, gate: StatementGate) -> None:
        self._db = db
        self._org = organization_id
        self._gate = gate

    async def claim(
        self, entity_type: EntityType, entity_id: str, *, version: int, holding: str | None
    ) -> str | None:
        await self._gate.before()
        row = self._db.entity_map.get((self._org, entity_type.value, entity_id))
        if row is None or row["version"] != version or row["sending"] != holding:
            return None
        row["sending"] = self._db.new_lease()  # gen_random_uuid(): never one seen before
        return str(row["sending"])

    async def held(self, entity_type: EntityType, entity_id: str) -> tuple[int, str | None] | None:
        await self._gate.before()
        row = self._db.entity_map.get((self._org, entity_type.value, entity_id))
        return None if row is None else (row["version"], row["sending"])

    async def release(self, entity_type: EntityType, entity_id: str, lease: str) -> None:
        await self._gate.before()
        row = self._db.entity_map.get((self._org, entity_type.value, entity_id))
        if row is not None and row["sending"] == lease:
            row["sending"] = None
