"""Dry runs: the real pipeline with Zoho, the sync log and the DLQ replaced by recorders.

The engine runs unchanged (decode, coalesce, stale and no-op skip, plan); `DryRunStore` reads the
real entity map but keeps its own writes in memory, so a later event for the same entity is planned
exactly as the real run would plan it. Zero Zoho calls, zero sync-log rows, nothing produced.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from consumer.entities.spec import Row
from consumer.model.events import EntityType
from consumer.model.plan import EntityState, Plan
from consumer.pipeline.durability.rows import EntityUpdate, Intent, OutcomeRow
from consumer.pipeline.durability.store import SyncStore
from consumer.pipeline.effects.apply import Applied
from consumer.pipeline.effects.dead_letter_topic import DeadLetter


@dataclass
class PlannedCalls:
    """What a dry run would have done."""

    calls: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    outcomes: Counter[str] = field(default_factory=Counter)
    dead_letters: list[str] = field(default_factory=list)

    def note_call(self, action: str, entity_id: str, payload: Mapping[str, Any] | None, reason: str) -> None:
        self.calls[action] += 1
        if len(self.samples[action]) < 3:
            self.samples[action].append({"entity_id": entity_id, "reason": reason, "payload": payload})


class DryRunApplier:
    def __init__(self, planned: PlannedCalls) -> None:
        self.planned = planned
        self._next = 0

    async def apply(
        self, entity_type: EntityType, entity_id: str, plan: Plan, row: Row, zoho_id: str | None, **_: bool
    ) -> Applied:
        """Note the call the plan asks for; a create gets a made-up Zoho id, so later events update it."""
        self.planned.note_call(plan.action.value, entity_id, plan.payload, plan.reason)
        if zoho_id is None:
            self._next += 1
            zoho_id = f"dry-run-{self._next}"
        return Applied(zoho_id=zoho_id, zoho_status=plan.status, http_status=None, attempts=0, calls=0)


class DryRunStore:
    """Reads through to the real store; writes go to an in-memory overlay only."""

    def __init__(self, real: SyncStore, planned: PlannedCalls) -> None:
        self._real = real
        self._planned = planned
        self._overlay: dict[tuple[EntityType, str], EntityState] = {}

    async def entity_state(self, entity_type: EntityType, entity_id: str) -> EntityState | None:
        if (entity_type, entity_id) in self._overlay:
            return self._overlay[(entity_type, entity_id)]
        return await self._real.entity_state(entity_type, entity_id)

    async def intent(self, entity_type: EntityType, entity_id: str) -> Intent | None:
        return None

    async def source_row(self, entity_type: EntityType, entity_id: str) -> dict[str, Any] | None:
        return await self._real.source_row(entity_type, entity_id)

    async def first_child_value(self, *args: Any) -> str | None:
        return await self._real.first_child_value(*args)

    async def has_outcome(self, *args: Any) -> bool:
        return False

    async def await_parent(self, *args: Any) -> None:
        return None

    async def take_waiting(self, *args: Any) -> list[tuple[EntityType, str]]:
        return []  # a dry run sends no parent, so no child waits for one

    async def next_follow_up(self) -> int:
        return 0

    async def dead_lettered_by(self, *args: Any) -> str | None:
        return await self._real.dead_lettered_by(*args)  # a read: the dry run plans what the run would do

    async def write_intent(self, *args: Any) -> None:
        return None

    async def ping(self) -> bool:
        return await self._real.ping()

    async def record(
        self, outcomes: Sequence[OutcomeRow], *, entity: EntityUpdate | None = None, **_discarded: Any
    ) -> None:
        """Count the outcomes and keep the entity's new state; write-backs and intents are dropped."""
        for row in outcomes:
            self._planned.outcomes[row.outcome] += 1
        if entity is not None:
            key = (entity.entity_type, entity.entity_id)
            old = self._overlay.get(key) or await self._real.entity_state(*key)
            self._overlay[key] = EntityState(
                zoho_id=entity.zoho_id or (old.zoho_id if old else None),
                payload_hash=entity.payload_hash,
                last_lsn=max(
                    (x for x in (entity.last_lsn, old.last_lsn if old else None) if x is not None),
                    default=None,
                ),
                status=entity.zoho_status or (old.status if old else None),
            )


class DryRunDeadLetters:
    def __init__(self, planned: PlannedCalls, topic: str) -> None:
        self._planned = planned
        self.topic = topic

    async def publish(self, letter: DeadLetter) -> None:
        self._planned.dead_letters.append(
            f"{letter.topic}/{letter.partition}/{letter.offset}: {letter.reason}"
        )
