"""Per-partition offset watermarks: what may be committed.

An offset is committable only when it and every offset before it on the partition has a durable outcome
(the Confluent Parallel Consumer rule): records finish out of order, the watermark is the lowest offset
still pending. Finished records land in `PartitionWatermarks`; the runner reads there what to commit.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiokafka import TopicPartition

if TYPE_CHECKING:
    from consumer.pipeline.intake.scheduler import InboundRecord


@dataclass
class OffsetWatermark:
    """Tracks received and completed offsets of one partition."""

    committed: int | None = None  # the next offset already committed to Kafka
    _pending: set[int] = field(default_factory=set)
    _heap: list[int] = field(default_factory=list)
    _highest_seen: int | None = None

    def received(self, offset: int) -> None:
        if offset in self._pending:
            return
        self._pending.add(offset)
        heapq.heappush(self._heap, offset)
        if self._highest_seen is None or offset > self._highest_seen:
            self._highest_seen = offset

    def passed(self, offset: int) -> None:
        """A record whose outcome was durable before it arrived (`received` and `completed` at once)."""
        if self._highest_seen is None or offset > self._highest_seen:
            self._highest_seen = offset

    def completed(self, offset: int) -> None:
        self._pending.discard(offset)
        # Completed offsets behind a slow one stay in the heap until it completes; rebuild it from the
        # pending set when they dominate, so memory follows what is in flight, not the backlog.
        if len(self._heap) > 2 * len(self._pending) + 1024:
            self._heap = sorted(self._pending)  # a sorted list is a valid heap

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def committable(self) -> int | None:
        """The next offset to commit (Kafka commits 'next offset to read'), or None if nothing new."""
        while self._heap and self._heap[0] not in self._pending:
            heapq.heappop(self._heap)
        if self._heap:
            candidate = self._heap[0]
        elif self._highest_seen is not None:
            candidate = self._highest_seen + 1
        else:
            return None
        if self.committed is not None and candidate <= self.committed:
            return None
        return candidate

    def mark_committed(self, offset: int) -> None:
        if self.committed is None or offset > self.committed:
            self.committed = offset


class PartitionWatermarks:
    """The watermark of each partition a run holds: finished records in, committable offsets out."""

    def __init__(self) -> None:
        self._by_partition: dict[TopicPartition, OffsetWatermark] = {}

    def completed(self, record: InboundRecord) -> None:
        """A record's outcome is durable (the key scheduler's `on_done`): its offset may be committed."""
        wm = self._by_partition.get(TopicPartition(record.topic, record.partition))
        if wm is not None:  # None: the partition was revoked and forgotten meanwhile
            wm.completed(record.offset)

    def track(self, tp: TopicPartition) -> OffsetWatermark:
        """The partition's watermark, a new one if it is not tracked yet."""
        return self._by_partition.setdefault(tp, OffsetWatermark())

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._by_partition.pop(tp, None)

    def committable(
        self, partitions: Iterable[TopicPartition], assigned: set[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The next offset to commit of each of `partitions` still assigned that has one."""
        offsets = {}
        for tp in partitions:
            wm = self._by_partition.get(tp)
            if wm is None or tp not in assigned:
                continue
            next_offset = wm.committable()
            if next_offset is not None:
                offsets[tp] = next_offset
        return offsets

    def mark_committed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self._by_partition[tp].mark_committed(offset)

    def partitions(self) -> list[TopicPartition]:
        return list(self._by_partition)

    def committed(self) -> dict[TopicPartition, int]:
        """The offset committed so far on each tracked partition (0 when none yet)."""
        return {tp: wm.committed or 0 for tp, wm in self._by_partition.items()}
