"""Adoption claims in memory: `store.claims`, with `AdoptionClaims`' statements one for one.

`claim` is three autocommit statements in the service (is it mapped to another? insert the claim; who
holds it?), so another worker may act between them: each is its own step here, with a crash point and
a yield before it. The first claim wins; a record the entity map gives another entity is that entity's.
"""

from __future__ import annotations

from consumer.model.events import EntityType
from consumer.pipeline.durability.gathered import GATHER_SECONDS
from simulation.database.tables import MemoryDatabase, StatementGate


class MemoryClaims:
    """The `zoho_adoption_claim` and `zoho_adoption_refused` tables of one organisation."""

    def __init__(self, db: MemoryDatabase, organization_id: str, gate: StatementGate) -> None:
        self._db = db
        self._org = organization_id
        self._gate = gate

    def _mapped_to_another(self, kind: str, zoho_id: str, entity_id: str) -> str | None:
        for (org, entity_type, mapped_id), row in self._db.entity_map.items():
            if (
                org == self._org
                and entity_type == kind
                and row["zoho_id"] == zoho_id
                and mapped_id != entity_id
            ):
                return mapped_id
        return None

    async def claim(self, entity_type: EntityType, zoho_id: str, entity_id: str, matched_by: str) -> str:
        """Claim `zoho_id` for `entity_id`; returns the entity that holds it (`entity_id` when ours)."""
        kind = entity_type.value
        await self._gate.before()
        mapped = self._mapped_to_another(kind, zoho_id, entity_id)
        if mapped is not None:
            return mapped
        await self._gate.before()
        key = (self._org, kind, zoho_id)
        if key not in self._db.claims:
            self._db.claims[key] = {"entity_id": entity_id, "matched_by": matched_by}
            await self._gate.after()  # durable: the caller may die before it learns so
            return entity_id
        await self._gate.before()
        held = self._db.claims.get(key)
        return held["entity_id"] if held else entity_id

    async def holder(self, entity_type: EntityType, zoho_id: str, entity_id: str) -> str | None:
        """The other entity `zoho_id` is mapped to or claimed by, without claiming it; None if none."""
        kind = entity_type.value
        await self._gate.before()
        mapped = self._mapped_to_another(kind, zoho_id, entity_id)
        if mapped is not None:
            return mapped
        held = self._db.claims.get((self._org, kind, zoho_id))
        return held["entity_id"] if held and held["entity_id"] != entity_id else None

    async def refused(self, entity_type: EntityType, entity_id: str) -> frozenset[str]:
        """The Zoho records this entity was unlinked from by hand (`MemoryDatabase.adoption_refused`)."""
        await self._gate.before(GATHER_SECONDS)  # gathered with other workers' questions
        return frozenset(self._db.adoption_refused.get((self._org, entity_type.value, entity_id), {}))
