"""An in-memory Kafka the real pipeline drives as if it were aiokafka: topics, groups, producer, consumers.

One broker holds every partition's log (offsets keep their gaps after compaction; retention moves the log
start), the groups (`simulation.kafka.group`) and their committed offsets. Nothing runs in the background:
getmany waits on the loop's timers and is woken by appends and group changes, so under the virtual-time
loop one seed gives one history. The seeded `rng` picks member ids, keyless partitions, the partition order
of a fetch and where a fetch stops short (as a real broker's batch boundaries do).
"""

from __future__ import annotations

import asyncio
import random
import zlib
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import RecordMetadata

from connectors import clock
from simulation.kafka.consumer import MemoryConsumer
from simulation.kafka.group import ConsumerGroup, Wakeup
from simulation.kafka.log import PartitionLog

Headers = Sequence[tuple[str, bytes]]


class MemoryBroker:
    """The whole Kafka cluster of one simulated world (see the module docstring).

    `consumer` is the consumer factory the worker takes; `kill` stands for a process that died holding
    partitions. A member's session timeout is its consumer's `session_timeout_ms` when given (as Kafka
    takes it from the JoinGroup), else `session_timeout`."""

    def __init__(
        self,
        rng: random.Random,
        *,
        session_timeout: float = 10.0,
        rebalance_timeout: float = 30.0,
        guard: Callable[[], None] | None = None,
    ) -> None:
        self.rng = rng
        #: Called before every produce, fetch and commit: raises if the calling process is dead (a
        #: world passes `simulation.loop.current_check`), so a killed process acts on Kafka no more.
        self.guard = guard or _no_guard
        self.session_timeout = session_timeout
        # How long a round waits for members to rejoin. aiokafka rejoins from a background task and takes
        # max_poll_interval_ms (600 s in the pipeline) for it; here a member rejoins inside getmany, so this
        # is also how long a member may go without polling through a rebalance before it is removed.
        self.rebalance_timeout = rebalance_timeout
        self.wakeup = Wakeup()
        #: Exceptions raised by rebalance listeners: aiokafka logs them and goes on; a world can assert none.
        self.listener_errors: list[BaseException] = []
        #: Called with (group, {partition: offset}) as a commit is about to be stored: a world checks its
        #: invariant on offsets at the instant of every commit, not only at the end.
        self.on_commit: Callable[[str, dict[TopicPartition, int]], None] | None = None
        self._topics: dict[str, list[PartitionLog]] = {}
        self._groups: dict[str, ConsumerGroup] = {}
        self._member_ids = 0

    # --- topics ---------------------------------------------------------------------------------
    def create_topic(self, topic: str, partitions: int) -> None:
        if topic in self._topics:
            raise TopicAlreadyExistsError(topic)
        self._topics[topic] = [PartitionLog() for _ in range(partitions)]
        for group in self._groups.values():
            group.topic_created(topic)

    def topics(self) -> list[str]:
        return list(self._topics)

    def partitions(self, topic: str) -> int:
        """How many partitions `topic` has (0 if it does not exist)."""
        return len(self._topics.get(topic, ()))

    def partition_for(self, topic: str, key: bytes | None) -> int:
        count = len(self._log_list(topic))
        return self.rng.randrange(count) if key is None else zlib.crc32(key) % count

    def log(self, topic: str, partition: int) -> PartitionLog:
        return self._log_list(topic)[partition]

    def append(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: Headers = (),
        timestamp_ms: int,
        partition: int | None = None,
    ) -> tuple[int, int]:
        """Write one record; returns (partition, offset) and wakes the consumers waiting for records."""
        if partition is None:
            partition = self.partition_for(topic, key)
        log = self.log(topic, partition)
        record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
            topic, partition, log.end, timestamp_ms, 0, key, value, None,
            -1 if key is None else len(key), -1 if value is None else len(value), tuple(headers),
        )  # fmt: skip
        log.records.append(record)
        log.offsets.append(log.end)
        log.end += 1
        self.wakeup.notify()
        return partition, record.offset

    def compact(self, topic: str) -> int:
        """Log compaction: only the newest record of each key stays (offsets keep their gaps); a tombstone
        goes too (its delete retention is taken as passed) unless it is the partition's last record, which
        the active segment keeps. Records without a key are kept. Returns how many records went."""
        removed = 0
        for log in self._log_list(topic):
            newest = {record.key: record.offset for record in log.records}
            last = log.end - 1
            kept = [
                r
                for r in log.records
                if r.key is None or (newest[r.key] == r.offset and (r.value is not None or r.offset == last))
            ]
            removed += log.keep(kept)
        return removed

    def delete_before(self, topic: str, partition: int, offset: int) -> None:
        """Retention: the log starts at `offset` (at most the log end); records before it are gone."""
        log = self.log(topic, partition)
        log.start = max(log.start, min(offset, log.end))
        log.keep(log.records[bisect_left(log.offsets, log.start) :])

    def records(self, topic: str, partition: int) -> list[ConsumerRecord[bytes, bytes]]:
        return list(self.log(topic, partition).records)

    def end_offset(self, topic: str, partition: int) -> int:
        return self.log(topic, partition).end

    def _log_list(self, topic: str) -> list[PartitionLog]:
        try:
            return self._topics[topic]
        except KeyError:
            raise KeyError(f"no topic {topic!r}: create it first (MemoryBroker.create_topic)") from None

    # --- groups ---------------------------------------------------------------------------------
    def group(self, name: str) -> ConsumerGroup:
        group = self._groups.get(name)
        if group is None:
            group = self._groups[name] = ConsumerGroup(
                name,
                partitions=self.partitions,
                wake=self.wakeup.notify,
                rebalance_timeout=self.rebalance_timeout,
            )
        return group

    def committed(self, group: str, topic: str, partition: int) -> int | None:
        known = self._groups.get(group)
        return None if known is None else known.committed.get(TopicPartition(topic, partition))

    def members(self, group: str) -> list[str]:
        known = self._groups.get(group)
        return sorted(known.members) if known is not None else []

    def new_member_id(self, client_id: str) -> str:
        """Kafka's member ids end in a random UUID, so the sort that deals partitions is random: seeded."""
        self._member_ids += 1
        return f"{client_id}-{self.rng.getrandbits(32):08x}-{self._member_ids}"

    # --- clients ----------------------------------------------------------------------------------
    def consumer(self, bootstrap_servers: str, group_id: str | None = None, **kw: Any) -> MemoryConsumer:
        """The consumer factory, called as the worker does: `consumers(bootstrap_servers, group_id, **kw)`."""
        return MemoryConsumer(self, group_id, **kw)

    def producer(self) -> MemoryProducer:
        return MemoryProducer(self)

    def kill(self, consumer: MemoryConsumer) -> None:
        """The consumer's process died: it leaves no group; its group notices after the session timeout."""
        consumer.die()


class MemoryProducer:
    """aiokafka's producer, acks=all: a send returns once the record is in the log."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Iterable[tuple[str, bytes]] | None = None,
    ) -> RecordMetadata:
        await asyncio.sleep(0)  # the produce request is on the wire: other tasks run meanwhile
        self._broker.guard()
        stamp = clock.wall_ms() if timestamp_ms is None else timestamp_ms
        written, offset = self._broker.append(
            topic, key, value, headers=tuple(headers or ()), timestamp_ms=stamp, partition=partition
        )
        tp = TopicPartition(topic, written)
        return RecordMetadata(topic, written, tp, offset, stamp, 0, self._broker.log(topic, written).start)

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None, **kw: Any) -> Any:
        """aiokafka's `send`: awaiting it gives a future of the record's metadata (already written here)."""
        future = asyncio.get_running_loop().create_future()
        future.set_result(await self.send_and_wait(topic, value, key, **kw))
        return future


def _no_guard() -> None:
    return None
