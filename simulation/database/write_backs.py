"""The pending write-back queue in memory, applied to `MemorySource` the way `WriteBackQueue` applies it.

Queued with the outcome (`simulation.store.MemoryStore.record`); applied a pause after a poke and every
`RETRY_SECONDS` (by the service's own `WriteBackQueue`, so the timing is the service's), oldest first, a
batch at a time, in one step with no await inside: a held row waits for a later pass, a refused row is set
apart with its error and a growing pause, a row that is gone is dropped. Each applied row's UPDATE
streams its echo.
"""

from __future__ import annotations

import structlog

from connectors import clock
from consumer.entities.registry import spec_of
from consumer.model.events import EntityType
from consumer.pipeline.effects.write_back import BATCH_SIZE, WriteBackPass, WriteBackQueue
from simulation.database.rows import refusal_pause
from simulation.database.source import WriteBackRefused
from simulation.database.tables import MemoryDatabase, StatementGate

log = structlog.get_logger(__name__)


class MemoryWriteBacks(WriteBackQueue):
    """`store.write_backs`: the service's queue (`poke`, `close`, its background passes) over memory; only
    `apply_pending`, the database's part, is this module's."""

    def __init__(self, db: MemoryDatabase, gate: StatementGate) -> None:
        super().__init__(pool=None)  # type: ignore[arg-type]  # no pool: `apply_pending` reads `db`
        self._db = db
        self._gate = gate

    async def apply_pending(self, limit: int = BATCH_SIZE) -> WriteBackPass:
        """Apply up to `limit` due write-backs, oldest queued first, in one atomic step."""
        async with self._applying:
            await self._gate.before()
            now = clock.wall()
            queue = self._db.pending_write_backs
            due = sorted(
                (k for k, q in queue.items() if q["retry_after"] is None or q["retry_after"] <= now),
                key=lambda k: (queue[k]["queued_at"], queue[k]["order"]),
            )[:limit]
            applied = held = refused = 0
            for key in due:
                outcome = self._apply_one(key, now)
                applied += outcome == "applied"
                held += outcome == "held"
                refused += outcome == "refused"
            await self._gate.after()  # durable: a crash from here on leaves it applied
        return WriteBackPass(applied, held, refused)

    def _apply_one(self, key: tuple[str, str], now: float) -> str:
        entity_type, entity_id = EntityType(key[0]), key[1]
        queued = self._db.pending_write_backs[key]
        source = self._db.source
        if source.holds(entity_id) and source.row(entity_type.table, entity_id) is not None:
            queued["attempts"] += 1
            return "held"
        try:
            source.write_back(
                entity_type,
                entity_id,
                spec_of(entity_type).write_back_id_column,
                queued["zoho_id"],
                queued["sync_status"],
                queued["called"],
            )
        except WriteBackRefused as exc:
            queued["refused"] = str(exc)
            queued["retry_after"] = now + refusal_pause(queued["refusals"])
            queued["refusals"] += 1
            log.error("write-back refused by the source table", entity=f"{key[0]}:{key[1]}", error=str(exc))
            return "refused"
        del self._db.pending_write_backs[key]  # applied, or nothing to apply: the row is gone
        return "applied"
