"""Outcomes decided on arrival, without a worker (a replay's superseded, skipped and unchanged records).

Every such record still gets its own durable sync-log row before its offset may be committed: one
event-loop tick's decisions are written in one group-committed transaction, and only then are its records
finished. A failed write stops the sync loudly; it never drops a record.
"""

from __future__ import annotations

import asyncio

import structlog

from consumer.pipeline.durability.gathered import Gathering
from consumer.pipeline.durability.recording import Outcome, OutcomeRecorder
from consumer.pipeline.durability.rows import OutcomeRow
from consumer.pipeline.intake.scheduler import KeyScheduler, WorkItem

log = structlog.get_logger(__name__)


class BulkRecorder:
    """Records outcomes decided on arrival in bulk, a tick at a time, then finishes their records.

    A tick's write is handed to the store without waiting for the one before, so the store has the next
    group ready when a commit returns."""

    def __init__(self, recorder: OutcomeRecorder, scheduler: KeyScheduler) -> None:
        self._recorder = recorder
        self._scheduler = scheduler
        # A bare row is counted in the metrics once written; a whole outcome by the step that decided it.
        self._decided: Gathering[tuple[WorkItem, OutcomeRow | Outcome]] = Gathering(
            self._write, overlap=True, failed=self._failed, name="sync:settled"
        )

    def row(self, item: WorkItem, row: OutcomeRow) -> None:
        """Record an admitted item's outcome row (superseded, a tombstone's skipped)."""
        self._decided.add((item, row))

    def outcome(self, item: WorkItem, outcome: Outcome) -> None:
        """Record an admitted item's whole outcome (its row with any entity-map row or write-back)."""
        self._decided.add((item, outcome))

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """What is still gathering or writing, for shutdown."""
        return self._decided.tasks

    async def _write(self, decided: list[tuple[WorkItem, OutcomeRow | Outcome]]) -> None:
        if self._scheduler.fatal is not None:
            return  # the sync is stopping: these records are read again on the next start
        rows = [(item, row) for item, row in decided if isinstance(row, OutcomeRow)]
        outcomes = [(item, outcome) for item, outcome in decided if isinstance(outcome, Outcome)]
        await self._record([row for _, row in rows], [outcome for _, outcome in outcomes])
        self._recorder.count(row for _, row in rows)
        self._scheduler.finish([item for item, _ in rows] + [item for item, _ in outcomes])

    def _failed(self, exc: Exception) -> None:  # a bug must stop the process loudly, never drop a record
        log.exception("writing settled outcomes failed")
        self._scheduler.fail(exc)

    async def _record(self, rows: list[OutcomeRow], outcomes: list[Outcome]) -> None:
        """Bare rows go in one outcome; one with entity-map or write-back parts keeps them (the store
        commits the outcomes written together in one transaction)."""
        whole = [o for o in outcomes if o.entity or o.write_back or o.clear_intent]
        rows += [row for o in outcomes if not (o.entity or o.write_back or o.clear_intent) for row in o.rows]
        writes = [self._recorder.record(outcome, bulk=True) for outcome in whole]
        if rows:
            writes.append(self._recorder.record(Outcome(rows), bulk=True))
        await asyncio.gather(*writes)
