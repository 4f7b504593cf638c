"""A replay's reading: one range of the topics, read once, without group membership, then the run ends.

Backfills and dead-letter re-drives read this way: every partition assigned, read from its start
(`ReplayRange`) up to the true end offsets captured at the start (`consumer.pipeline.intake.end_offsets`).
Records already durable are passed without work; reading ahead folds one entity's events into one call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition

from consumer.pipeline.intake.end_offsets import end_offsets as true_end_offsets
from consumer.pipeline.intake.end_offsets import topic_partitions
from consumer.pipeline.intake.reading import Fetched, Read

if TYPE_CHECKING:
    from consumer.pipeline.intake.engine import SyncEngine
    from consumer.pipeline.replay.index import ReplayIndex

Bounds = dict[TopicPartition, tuple[int, int]]
RecordTest = Callable[[ConsumerRecord[bytes, bytes]], bool]


@dataclass
class ReplayRange:
    """Which range a replay reads and which of its records are work.

    Each partition is read from the beginning, from `since`, from given start offsets (a backfill's second
    pass reads exactly what its first pass read) or from the group's committed position."""

    from_beginning: bool = False
    since: datetime | None = None
    # The (start, end) offsets of each partition, when a first pass already read the range.
    bounds: Bounds | None = None
    # Read ahead (hold work until intake is full) so events of one entity fold; off when a first pass
    # already chose each entity's one record to apply.
    read_ahead: bool = True
    # The index of a backfill's first pass: the records it recorded are passed unread.
    first_pass: ReplayIndex | None = None
    # Records for which this returns True were handled before (a dead letter re-driven by an earlier run,
    # a second copy of one): no work, and the commit may pass them. Asked before `accept`.
    handled_before: RecordTest | None = None
    # Records for which this returns False are left untouched: no outcome, and the commit stops before them.
    accept: RecordTest | None = None
    ends: dict[TopicPartition, int] = field(default_factory=dict)

    bounded = True

    async def assign(
        self, consumer: AIOKafkaConsumer, topics: Sequence[str], bootstrap_servers: str
    ) -> dict[TopicPartition, int]:
        """Assign every partition and seek to where the range starts (beginning, `since`, or the consumer
        group's committed position); returns the end offset of each partition, captured now."""
        partitions = await topic_partitions(consumer, topics, wait_seconds=5)
        consumer.assign(partitions)
        if not partitions:
            return {}
        ends = await true_end_offsets(bootstrap_servers, partitions)
        if self.since is not None:
            ts = int(self.since.timestamp() * 1000)
            found = await consumer.offsets_for_times({tp: ts for tp in partitions})
            for tp in partitions:
                hit = found.get(tp)
                # No record at or after the time: Kafka answers None; Tansu answers timestamp -1.
                if hit is None or hit.timestamp < 0:
                    consumer.seek(tp, ends[tp])
                else:
                    consumer.seek(tp, hit.offset)
        elif self.from_beginning:
            await consumer.seek_to_beginning(*partitions)
        return ends

    # --- the runner's questions (`consumer.pipeline.intake.reading.Reading`) -------------------
    async def take(
        self,
        consumer: AIOKafkaConsumer,
        topics: Sequence[str],
        bootstrap_servers: str,
        listener: ConsumerRebalanceListener,
    ) -> dict[TopicPartition, int]:
        if self.bounds is not None:
            consumer.assign(list(self.bounds))
            self.ends = {}
            for tp, (start, end) in self.bounds.items():
                consumer.seek(tp, start)
                self.ends[tp] = end
        else:
            self.ends = await self.assign(consumer, topics, bootstrap_servers)
        return self.ends

    def resume_at(self, max_in_flight: int) -> int:
        # A replay is CPU-bound and refills at once, so it resumes sooner and keeps its pipeline fuller
        # (measurably faster at 3/4 than at 1/2: docs/BENCHMARKS.md).
        return max_in_flight * 3 // 4

    async def poll(self, consumer: AIOKafkaConsumer, *, paused: bool, max_records: int) -> Fetched:
        # Paused, it waits for the engine (`over`) instead of the poll.
        return await consumer.getmany(timeout_ms=0 if paused else 200, max_records=max_records)

    def within(
        self, tp: TopicPartition, records: list[ConsumerRecord[Any, Any]]
    ) -> list[ConsumerRecord[Any, Any]]:
        end = self.ends.get(tp, 0)
        return [m for m in records if m.offset < end]

    def read(self, record: ConsumerRecord[Any, Any]) -> Read:
        recorded = self.first_pass is not None and self.first_pass.recorded_in_first_pass(
            record.topic, record.partition, record.offset
        )
        if recorded or (self.handled_before is not None and self.handled_before(record)):
            return Read.PASSED
        if self.accept is not None and not self.accept(record):
            return Read.LEFT
        return Read.WORK

    async def handed_over(self) -> None:
        # A poll served from the prefetch buffer never yields: let the writes and reads the records just
        # started get under way while the next ones are read.
        await asyncio.sleep(0)

    async def gate(self, engine: SyncEngine, consumer: AIOKafkaConsumer, *, paused: bool) -> None:
        """Read ahead up to the in-flight bound before working, so many events of one entity fold into one
        call; work whenever intake is full or has reached the end."""
        if not self.read_ahead:
            return
        if paused or await self._read_to_end(consumer):
            engine.release()
        else:
            engine.hold()

    async def over(
        self, engine: SyncEngine, consumer: AIOKafkaConsumer, *, paused: bool, resume_at: int
    ) -> bool:
        if await self._read_to_end(consumer):
            # woken by the last outcome, not by a poll; a fatal error is raised by the runner instead
            return await engine.wait_idle(0.2) and engine.fatal is None
        if paused:
            await engine.wait_in_flight(resume_at, 0.2)
        return False

    async def _read_to_end(self, consumer: AIOKafkaConsumer) -> bool:
        for tp, end in self.ends.items():
            if end == 0:
                continue
            if await consumer.position(tp) < end:
                return False
        return True
