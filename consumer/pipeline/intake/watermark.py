"""Per-partition offset watermarks: what may be committed.

An offset is committable only when it and every offset before it on the partition has a durable
outcome (the Confluent Parallel Consumer rule). Records finish out of order because different keys
run concurrently; the watermark is the lowest offset still pending.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field


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
