"""Recording outcomes: every record ends in exactly one durable sync-log row, whatever PostgreSQL does.

An `Outcome` (sync-log rows with their entity-map, write-back and intent changes) is written in one
transaction. A database briefly gone is waited for; content PostgreSQL refuses (a value it cannot store or
index) is still recorded, without its entity part, with the reason: the partition is never blocked.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

import psycopg
import structlog

from consumer.metrics import Metrics
from consumer.model.events import EntityType
from consumer.model.outcomes import SyncOutcome
from consumer.model.plan import EntityState
from consumer.pipeline.durability.rows import EntityUpdate, OutcomeRow
from consumer.pipeline.effects.write_back import WriteBack
from consumer.pipeline.intake.scheduler import WorkItem

log = structlog.get_logger(__name__)

#: PostgreSQL errors caused by the content written, never by the database's state.
NOT_TRANSIENT: Final = (psycopg.errors.ProgramLimitExceeded, psycopg.DataError)


@dataclass(slots=True)
class Outcome:
    """What one batch's handling leaves behind, written atomically."""

    rows: list[OutcomeRow] = field(default_factory=list)
    entity: EntityUpdate | None = None
    write_back: WriteBack | None = None
    clear_intent: tuple[EntityType, str] | None = None

    def after(self, prior: list[OutcomeRow]) -> Outcome:
        """This outcome with the rows decided before it (e.g. superseded records) in front."""
        return replace(self, rows=[*prior, *self.rows])


class Store(Protocol):
    """What the pipeline reads and writes; PostgreSQL `SyncStore` and the dry run implement it."""

    async def entity_state(self, entity_type: EntityType, entity_id: str) -> EntityState | None: ...

    async def source_row(self, entity_type: EntityType, entity_id: str) -> dict[str, Any] | None: ...

    async def first_child_value(
        self, child: EntityType, parent_column: str, value_column: str, parent_id: str
    ) -> str | None: ...

    async def has_outcome(self, consumer_group: str, topic: str, partition: int, offset: int) -> bool: ...

    async def dead_lettered_by(self, topic: str, partition: int, offset: int) -> str | None: ...

    async def await_parent(
        self, entity_type: EntityType, entity_id: str, parent_type: EntityType, parent_id: str
    ) -> None: ...

    async def take_waiting(self, parent_type: EntityType, parent_id: str) -> list[tuple[EntityType, str]]: ...

    async def next_follow_up(self) -> int: ...

    async def record(
        self,
        outcomes: Any,
        *,
        entity: EntityUpdate | None = None,
        write_back: WriteBack | None = None,
        clear_intent: tuple[EntityType, str] | None = None,
        at_once: bool = False,
    ) -> None: ...


class OutcomeRecorder:
    """Builds sync-log rows and writes outcomes durably, retrying while the database is unavailable."""

    def __init__(self, store: Store, consumer_group: str, metrics: Metrics) -> None:
        self.store = store
        self.consumer_group = consumer_group
        self.metrics = metrics

    def row(self, item: WorkItem, outcome: SyncOutcome, **fields: Any) -> OutcomeRow:
        record, event = item.record, item.event
        where = (record.topic, record.partition, record.offset)
        if event is None:
            return self.position_row(*where, None, None, outcome, **fields)
        return self.position_row(
            *where,
            event.entity_type,
            event.entity_id,
            outcome,
            source_lsn=event.lsn,
            source_ts_ms=event.source_ts_ms,
            **fields,
        )

    def position_row(
        self,
        topic: str,
        partition: int,
        offset: int,
        entity_type: EntityType | None,
        entity_id: str | None,
        outcome: SyncOutcome,
        **fields: Any,
    ) -> OutcomeRow:
        """The sync-log row of the record at a Kafka position (a replay's first pass holds no record)."""
        return OutcomeRow(
            consumer_group=self.consumer_group,
            topic=topic,
            partition=partition,
            offset=offset,
            entity_type=entity_type.value if entity_type else "unknown",
            entity_id=entity_id,
            outcome=outcome,
            **fields,
        )

    async def record(self, outcome: Outcome, *, bulk: bool = False) -> None:
        """Write an outcome in one transaction; see the module docstring for what cannot stop it.

        `bulk`: many records settled at once (a replay's): written without waiting for other writes to
        join its group, and logged in one line."""
        rows = outcome.rows
        parts = {
            "entity": outcome.entity,
            "write_back": outcome.write_back,
            "clear_intent": outcome.clear_intent,
            "at_once": bulk,
        }
        try:
            await self.retrying(lambda: self.store.record(rows, **parts), what="sync-log write")
        except NOT_TRANSIENT as exc:
            log.error(
                "outcome content refused by PostgreSQL; recording it without its entity state", error=str(exc)
            )
            rows = [
                _bare(row, f"PostgreSQL refused this outcome's content: {type(exc).__name__}") for row in rows
            ]
            await self.retrying(lambda: self.store.record(rows, at_once=bulk), what="sync-log write")
        if bulk:  # one line per bulk write, not one per record
            log.info("settled in bulk", records=len(rows), outcomes=dict(Counter(r.outcome for r in rows)))
            return
        for row in rows:  # one log line per durable outcome
            (log.warning if row.outcome in (SyncOutcome.DEAD_LETTERED, SyncOutcome.FAILED) else log.info)(
                row.outcome,
                entity=row.entity_type,
                entity_id=row.entity_id,
                topic=row.topic,
                partition=row.partition,
                offset=row.offset,
                call=row.operation,
                zoho_id=row.zoho_id,
                attempts=row.attempts,
                duration_ms=row.duration_ms,
                error=row.error,
            )

    def count(self, rows: Iterable[OutcomeRow]) -> None:
        """Count durable rows in the outcome metrics (rows settled in bulk; a policy step counts its own)."""
        for name, n in Counter(row.outcome for row in rows).items():
            self.metrics.outcome(name, n)

    async def read(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        return await self.retrying(lambda: fn(*args), what="database read")

    async def retrying(self, make: Callable[[], Awaitable[Any]], *, what: str) -> Any:
        delay = 0.2
        while True:
            try:
                return await make()
            except NOT_TRANSIENT:
                raise  # the same write fails the same way every time: retrying would block the partition
            except (psycopg.OperationalError, OSError, ConnectionError) as exc:
                log.warning("retrying", what=what, error=str(exc), delay_s=round(delay, 2))
            except Exception as exc:
                if type(exc).__module__.startswith(("aiokafka", "psycopg_pool")):
                    log.warning("retrying", what=what, error=str(exc), delay_s=round(delay, 2))
                else:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _bare(row: OutcomeRow, note: str) -> OutcomeRow:
    """An outcome row that PostgreSQL can always store: bounded ids, no NULs, the reason kept."""
    error = f"{note}; {row.error or ''}".replace("\x00", "")[:2000]
    entity_id = row.entity_id.replace("\x00", "")[:200] if row.entity_id else None
    return replace(row, entity_id=entity_id, error=error, zoho_id=None)
