"""One partition's log, and what a consumer asks of the broker that holds it."""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Callable
from typing import Any, Protocol

from aiokafka import ConsumerRecord

from simulation.kafka.group import ConsumerGroup, Wakeup


class PartitionLog:
    """One partition: its records in offset order, with gaps where compaction removed some."""

    __slots__ = ("start", "end", "offsets", "records")

    def __init__(self) -> None:
        self.start = 0  # the log start offset: retention moves it
        self.end = 0  # the next offset to be written
        self.offsets: list[int] = []
        self.records: list[ConsumerRecord[bytes, bytes]] = []

    def read(self, position: int, limit: int) -> list[ConsumerRecord[bytes, bytes]]:
        at = bisect_left(self.offsets, position)
        return self.records[at : at + limit]

    def keep(self, kept: list[ConsumerRecord[bytes, bytes]]) -> int:
        removed = len(self.records) - len(kept)
        self.records, self.offsets = kept, [record.offset for record in kept]
        return removed


class Broker(Protocol):
    """The broker as a consumer sees it (`simulation.kafka.broker.MemoryBroker`)."""

    rng: random.Random
    guard: Callable[[], None]
    wakeup: Wakeup
    on_commit: Callable[[str, dict[Any, int]], None] | None

    def topics(self) -> list[str]: ...

    def partitions(self, topic: str) -> int: ...

    def log(self, topic: str, partition: int) -> PartitionLog: ...

    def group(self, name: str) -> ConsumerGroup: ...

    def committed(self, group: str, topic: str, partition: int) -> int | None: ...
