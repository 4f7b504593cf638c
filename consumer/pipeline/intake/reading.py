"""How a run reads its topics: the seam between the runner and a replay.

The live sync joins the group and reads every record it is given, for ever (`LiveReading`); a replay
(`replay.range.ReplayRange`) reads one range and ends. The runner asks its reading how to take partitions,
how to poll, what each record is and when the run is over; it knows nothing else of replays.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition

if TYPE_CHECKING:
    from consumer.pipeline.intake.engine import SyncEngine

Fetched = Mapping[TopicPartition, list[ConsumerRecord[Any, Any]]]


class Read(enum.Enum):
    """What a fetched record is to the run."""

    WORK = "work"  # handed to the engine; its offset is committed once its outcome is durable
    PASSED = "passed"  # durable before this run read it: no work, and the commit may pass it
    LEFT = "left"  # not this run's: no outcome, and the commit stops before it


class Reading(Protocol):
    """What the runner asks of the way a run reads (see the module docstring)."""

    #: A range with end offsets (no group membership of its own), not a subscription.
    bounded: bool

    async def take(
        self,
        consumer: AIOKafkaConsumer,
        topics: Sequence[str],
        bootstrap_servers: str,
        listener: ConsumerRebalanceListener,
    ) -> dict[TopicPartition, int]:
        """Subscribe, or assign the range; returns the end offset of each partition of a range."""
        ...

    def resume_at(self, max_in_flight: int) -> int:
        """Paused partitions resume once in-flight records fall to this."""
        ...

    async def poll(self, consumer: AIOKafkaConsumer, *, paused: bool, max_records: int) -> Fetched: ...

    def within(
        self, tp: TopicPartition, records: list[ConsumerRecord[Any, Any]]
    ) -> list[ConsumerRecord[Any, Any]]:
        """The fetched records of `tp` that belong to the run (a range's stop before its end offset)."""
        ...

    def read(self, record: ConsumerRecord[Any, Any]) -> Read: ...

    async def handed_over(self) -> None:
        """Called once a poll's records went to the engine."""
        ...

    async def gate(self, engine: SyncEngine, consumer: AIOKafkaConsumer, *, paused: bool) -> None:
        """Hold or release the engine's work after a poll (a range reads ahead to fold events)."""
        ...

    async def over(
        self, engine: SyncEngine, consumer: AIOKafkaConsumer, *, paused: bool, resume_at: int
    ) -> bool:
        """True when the run has read and finished everything it is for."""
        ...


class LiveReading:
    """The live sync's reading: a group subscription, every record work, never over."""

    bounded = False

    async def take(
        self,
        consumer: AIOKafkaConsumer,
        topics: Sequence[str],
        bootstrap_servers: str,
        listener: ConsumerRebalanceListener,
    ) -> dict[TopicPartition, int]:
        consumer.subscribe(list(topics), listener=listener)
        return {}

    def resume_at(self, max_in_flight: int) -> int:
        return max_in_flight // 2  # a live run keeps a wide margin: its records arrive as they are made

    async def poll(self, consumer: AIOKafkaConsumer, *, paused: bool, max_records: int) -> Fetched:
        # A live run polls for 200 ms even while paused (a paused range waits for the engine instead):
        # waiting for the engine was measured for replays only, so the live poll stays as it was.
        return await consumer.getmany(timeout_ms=200, max_records=max_records)

    def within(
        self, tp: TopicPartition, records: list[ConsumerRecord[Any, Any]]
    ) -> list[ConsumerRecord[Any, Any]]:
        return records

    def read(self, record: ConsumerRecord[Any, Any]) -> Read:
        return Read.WORK

    async def handed_over(self) -> None:
        return None

    async def gate(self, engine: SyncEngine, consumer: AIOKafkaConsumer, *, paused: bool) -> None:
        return None

    async def over(
        self, engine: SyncEngine, consumer: AIOKafkaConsumer, *, paused: bool, resume_at: int
    ) -> bool:
        return False
