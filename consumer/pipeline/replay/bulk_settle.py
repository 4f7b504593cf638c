"""Outcomes decided on arrival, without a worker (a replay's superseded, skipped and unchanged records).

Every such record still gets its own durable sync-log row before its offset may be committed: what one
event-loop tick settles is written together (one group-committed transaction), and only then are its
records finished. A tick's write is handed to the store without waiting for the one before, so the
store has the next group ready when a commit returns. A failed write stops the sync loudly; it never
drops a record.
"""

from __future__ import annotations

import asyncio

import structlog

from consumer.pipeline.durability.recording import Outcome, OutcomeRecorder
from consumer.pipeline.durability.store import OutcomeRow
from consumer.pipeline.intake.scheduler import KeyScheduler, WorkItem

log = structlog.get_logger(__name__)


class BulkSettler:
    """Gathers settled outcomes and writes them in bulk."""

    def __init__(self, recorder: OutcomeRecorder, scheduler: KeyScheduler) -> None:
        self._recorder = recorder
        self._scheduler = scheduler
        self._rows: list[tuple[WorkItem, OutcomeRow]] = []  # counted in the metrics once written
        self._outcomes: list[tuple[WorkItem, Outcome]] = []  # counted by the step that decided them
        self._gathering: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()

    def row(self, item: WorkItem, row: OutcomeRow) -> None:
        """Record an admitted item's outcome row (superseded, a tombstone's skipped)."""
        self._rows.append((item, row))
        self._wake()

    def outcome(self, item: WorkItem, outcome: Outcome) -> None:
        """Record an admitted item's whole outcome (its row with any entity-map row or write-back)."""
        self._outcomes.append((item, outcome))
        self._wake()

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """What is still gathering or writing, for shutdown."""
        return [t for t in (self._gathering, *self._writes) if t is not None and not t.done()]

    def _wake(self) -> None:
        if self._gathering is None or self._gathering.done():
            self._gathering = asyncio.create_task(self._gather(), name="sync:settled")

    async def _gather(self) -> None:
        await asyncio.sleep(0)  # gather what this tick's intake settles
        if self._scheduler.fatal is not None:
            return
        rows, self._rows = self._rows, []
        outcomes, self._outcomes = self._outcomes, []
        task = asyncio.create_task(self._write(rows, outcomes), name="sync:settled-write")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(
        self, rows: list[tuple[WorkItem, OutcomeRow]], outcomes: list[tuple[WorkItem, Outcome]]
    ) -> None:
        try:
            await self._record([row for _, row in rows], [outcome for _, outcome in outcomes])
            self._recorder.count(row for _, row in rows)
            self._scheduler.finish([item for item, _ in rows] + [item for item, _ in outcomes])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must stop the process loudly, never silently drop a record
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
