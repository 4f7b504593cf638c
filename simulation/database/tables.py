"""What outlives a crashed process: the sync store's tables (`MemoryDatabase`), and the gate every
statement of a `MemoryStore` passes (`StatementGate`).

The tables are plain dicts and lists; a statement checks, yields (the crash point before it is durable),
checks again, then changes them with no await in between, so it happens whole or not at all. A process
killed after that still leaves it: the next process's store is built over the same `MemoryDatabase`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg_pool import PoolClosed

from connectors import clock
from consumer.model.events import EntityType
from consumer.model.outcomes import SyncOutcome
from consumer.pipeline.durability.gathered import GATHER_SECONDS
from consumer.pipeline.durability.rows import Intent, OutcomeRow
from consumer.pipeline.durability.source_reads import as_uuid
from simulation.database.source import MemorySource

LogPosition = tuple[str, str, int, int]  # consumer group, topic, partition, offset


def _no_guard() -> None:
    return None


class MemoryDatabase:
    """The sync store's tables (and the source's, `source`), shared by every process's `MemoryStore`.

    Faults: while `unavailable_until` (virtual `connectors.clock.monotonic()` seconds) is ahead, every
    statement raises `psycopg.OperationalError`. `guard` is called before every statement and raises
    when the calling process is dead (`simulation.loop.current_check`), so a killed process writes
    nothing more. Read-backs for the invariants: `sync_log` (insert order), `entity_map`, `intents`,
    `pending_write_backs`, `claims`, `waiting`; `adoption_refused` is what an operator unlinked by hand
    (key (organisation, entity type, entity id), value {zoho id: True}). Read them, do not change them."""

    def __init__(self, source: MemorySource, *, guard: Callable[[], None] = _no_guard) -> None:
        self.source = source
        self.guard = guard
        self.unavailable_until: float | None = None
        self.sync_log: list[OutcomeRow] = []
        self.entity_map: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.intents: dict[tuple[str, str, str], Intent] = {}
        self.item_map: dict[tuple[str, str, str], str] = {}
        self.claims: dict[tuple[str, str, str], dict[str, str]] = {}
        self.adoption_refused: dict[tuple[str, str, str], dict[str, bool]] = {}
        self.waiting: dict[tuple[str, str, str], tuple[str, str]] = {}  # child -> (parent type, parent id)
        self.pending_write_backs: dict[tuple[str, str], dict[str, Any]] = {}
        self.follow_up_seq = 0
        self.intents_written = 0  # each intent's `written_at`: PostgreSQL's now() never repeats for one row
        self.leases_issued = 0  # each write lease's token
        self.queue_order = 0  # orders write-backs queued at the same instant
        self._logged: dict[LogPosition, int] = {}  # the sync log's unique key -> index in `sync_log`
        self._dead_lettered: dict[tuple[str, int, int], str] = {}  # position -> first group to dead-letter

    def new_intent(self, operation: str, natural_key: str) -> Intent:
        """An intent as a write stores it, stamped with when it was written."""
        self.intents_written += 1
        return Intent(operation, natural_key, written_at=self.intents_written)

    def new_lease(self) -> str:
        """A write lease's token (`gen_random_uuid()` in the service: never one issued before)."""
        self.leases_issued += 1
        return f"lease-{self.leases_issued}"

    def check_available(self) -> None:
        if self.unavailable_until is not None and clock.monotonic() < self.unavailable_until:
            raise psycopg.OperationalError("simulated: database unavailable")

    def log(self, rows: Sequence[OutcomeRow]) -> None:
        """Append sync-log rows; a row whose position is logged is skipped (ON CONFLICT DO NOTHING)."""
        for row in rows:
            position = (row.consumer_group, row.topic, row.partition, row.offset)
            if position in self._logged:
                continue
            self._logged[position] = len(self.sync_log)
            self.sync_log.append(row)
            where = position[1:]
            if row.outcome == SyncOutcome.DEAD_LETTERED and where not in self._dead_lettered:
                self._dead_lettered[where] = row.consumer_group

    def is_logged(self, position: LogPosition) -> bool:
        return position in self._logged

    def dead_lettered_by(self, topic: str, partition: int, offset: int) -> str | None:
        return self._dead_lettered.get((topic, partition, offset))


class StatementGate:
    """The path of one store's statements: the pool must be open, the process alive, the database up."""

    def __init__(self, db: MemoryDatabase, *, pauses: bool) -> None:
        self._db = db
        self._pauses = pauses
        self.open = False

    def check(self) -> None:
        self._db.guard()
        if not self.open:
            raise PoolClosed("the pool is not open")
        self._db.check_available()

    async def before(self, pause: float = 0.0) -> None:
        """Before a statement's effect: the crash point (and the service's gathering `pause`, when kept)."""
        self.check()
        await asyncio.sleep(pause if self._pauses else 0)
        self.check()

    async def after(self) -> None:
        """After a write is durable: the process may die before the caller learns of it."""
        await asyncio.sleep(0)
        self._db.guard()


class MemorySourceReader:
    """`store.source`: the source rows as `SourceReader` gives them (copies, uuid ids as text)."""

    def __init__(self, db: MemoryDatabase, gate: StatementGate) -> None:
        self._db = db
        self._gate = gate

    async def row(self, entity_type: EntityType, entity_id: str) -> dict[str, Any] | None:
        key = as_uuid(entity_id)
        if key is None:
            return None
        await self._gate.before(GATHER_SECONDS)
        return self._db.source.row(entity_type.table, str(key))

    async def rows(self, entity_type: EntityType, entity_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        wanted = {str(key): entity_id for entity_id in entity_ids if (key := as_uuid(entity_id)) is not None}
        if not wanted:
            return {}
        await self._gate.before()
        found = {k: row for k in wanted if (row := self._db.source.row(entity_type.table, k)) is not None}
        return {wanted[k]: row for k, row in found.items()}

    async def first_child_value(
        self, child: EntityType, parent_column: str, value_column: str, parent_id: str
    ) -> str | None:
        key = as_uuid(parent_id)
        if key is None:
            return None
        await self._gate.before(GATHER_SECONDS)
        value = self._db.source.first_child_value(child.table, parent_column, value_column, str(key))
        return value.strip() if value else None
