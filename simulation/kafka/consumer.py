"""The in-memory Kafka's consumer: the `AIOKafkaConsumer` methods the pipeline calls, on a `MemoryBroker`.

A subscribed consumer follows its group (`simulation.kafka_group.Membership`) inside `getmany`; an assigned
one (a replay) reads its partitions with no membership. A new assignment starts at the group's committed
offset, else at `auto_offset_reset` (earliest by default, as the pipeline's consumers are made); a position
outside the log (retention, a seek past the end) is reset the same way on the next fetch, as Kafka does.
Nothing is committed automatically.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, ConsumerStoppedError, IllegalOperation, IllegalStateError
from aiokafka.structs import OffsetAndMetadata, OffsetAndTimestamp

from connectors import clock
from simulation.kafka.group import Membership

if TYPE_CHECKING:
    from simulation.kafka.log import Broker, PartitionLog

Fetched = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]

#: aiokafka settings a consumer may be made with that change nothing here (no network, no auto-commit).
IGNORED_SETTINGS: Final = frozenset(
    {"heartbeat_interval_ms", "max_poll_interval_ms", "request_timeout_ms", "enable_auto_commit", "client_id"}
)
#: A fetch without `max_records` returns everything there is (aiokafka's is bounded by bytes instead).
ALL_RECORDS: Final = 1 << 30
#: How often a fetch returns fewer records than it could (a real broker stops at batch boundaries).
SHORT_FETCH_CHANCE: Final = 0.25


class _PartitionState:
    __slots__ = ("log", "position", "paused", "highwater")

    def __init__(self, log: PartitionLog, position: int) -> None:
        self.log = log  # the broker's log of the partition (compaction and retention change it in place)
        self.position = position
        self.paused = False
        self.highwater: int | None = None  # known once a fetch of the partition answered


class _MetadataClient:
    """`consumer._client`: the one private aiokafka member the pipeline touches (to refresh metadata)."""

    async def force_metadata_update(self) -> bool:
        return True  # the broker's metadata is always current


class MemoryConsumer:
    """aiokafka's consumer over a `MemoryBroker` (see the module docstring)."""

    def __init__(
        self,
        broker: Broker,
        group_id: str | None,
        *,
        group_instance_id: str | None = None,
        session_timeout_ms: int | None = None,
        auto_offset_reset: str = "earliest",
        client_id: str = "aiokafka",
        **settings: Any,
    ) -> None:
        unknown = sorted(set(settings) - IGNORED_SETTINGS)
        if unknown or settings.get("enable_auto_commit"):
            raise TypeError(f"MemoryConsumer does not model {unknown or 'enable_auto_commit=True'}")
        self._broker = broker
        self._group_id = group_id
        self._instance_id = group_instance_id or None
        self._session_timeout = (
            broker.session_timeout if session_timeout_ms is None else session_timeout_ms / 1000
        )
        self._reset_to_end = auto_offset_reset == "latest"
        self._client_id = client_id
        self._client = _MetadataClient()
        self._states: dict[TopicPartition, _PartitionState] = {}
        self._membership: Membership | None = None
        self._manual = False
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        """Close: a dynamic member leaves its group; a static one keeps its place for its session timeout."""
        self._close(leave=self._instance_id is None)

    def die(self) -> None:
        """The process is gone (`MemoryBroker.kill`): no LeaveGroup."""
        self._close(leave=False)

    def _close(self, *, leave: bool) -> None:
        if self._closed:
            return
        self._closed = True
        if self._membership is not None:
            self._membership.close(leave=leave)
        self._broker.wakeup.notify()  # a getmany waiting in this consumer raises ConsumerStoppedError

    # --- taking partitions ---------------------------------------------------------------------------
    def subscribe(
        self,
        topics: Iterable[str] = (),
        pattern: str | None = None,
        listener: ConsumerRebalanceListener | None = None,
    ) -> None:
        """Join the group on the first `getmany` (aiokafka joins in the background right after this)."""
        if self._manual or self._membership is not None or pattern is not None or self._group_id is None:
            raise IllegalStateError("MemoryConsumer models one subscription by topic names, with a group_id")
        broker = self._broker
        self._membership = Membership(
            broker.group(self._group_id),
            topics=tuple(topics),
            listener=listener,
            instance_id=self._instance_id,
            session_timeout=self._session_timeout,
            member_id=lambda: broker.new_member_id(self._client_id),
            install=self._install,
            listener_errors=broker.listener_errors,
        )

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        if self._membership is not None:
            raise IllegalStateError("Subscription to topics, partitions and pattern are mutually exclusive")
        self._manual = True
        self._install(tuple(partitions))

    def _install(self, partitions: tuple[TopicPartition, ...]) -> None:
        """A new assignment, each partition at the group's committed offset, else reset (earliest/latest)."""
        committed = self._broker.group(self._group_id).committed if self._group_id is not None else {}
        states = {}
        for tp in sorted(partitions):
            log, offset = self._broker.log(tp.topic, tp.partition), committed.get(tp)
            states[tp] = _PartitionState(log, self._reset_position(log) if offset is None else offset)
        self._states = states

    def _reset_position(self, log: PartitionLog) -> int:
        return log.end if self._reset_to_end else log.start

    def assignment(self) -> set[TopicPartition]:
        return set(self._states)

    def _state(self, tp: TopicPartition) -> _PartitionState:
        state = self._states.get(tp)
        if state is None:
            raise IllegalStateError(f"Partition {tp} is not assigned")
        return state

    # --- positions ----------------------------------------------------------------------------------
    def pause(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._state(tp).paused = True

    def resume(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._state(tp).paused = False

    def paused(self) -> set[TopicPartition]:
        return {tp for tp, state in self._states.items() if state.paused}

    def seek(self, partition: TopicPartition, offset: int) -> None:
        if not isinstance(offset, int) or offset < 0:
            raise ValueError("Offset must be a positive integer")
        self._state(partition).position = offset

    async def seek_to_beginning(self, *partitions: TopicPartition) -> bool:
        for tp in partitions or tuple(self._states):
            state = self._state(tp)
            state.position = state.log.start
        return True

    async def position(self, partition: TopicPartition) -> int:
        return self._state(partition).position

    def highwater(self, partition: TopicPartition) -> int | None:
        return self._state(partition).highwater

    # --- reading ------------------------------------------------------------------------------------
    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> Fetched:
        """Records of the assigned, unpaused partitions from their positions, waiting up to `timeout_ms`
        for some; a subscribed consumer first follows any rebalance of its group (listener callbacks)."""
        if max_records is not None and max_records < 1:
            raise ValueError("`max_records` must be a positive Integer")
        deadline = clock.monotonic() + timeout_ms / 1000
        while True:
            self._broker.guard()
            if self._closed:
                raise ConsumerStoppedError()
            membership = self._membership
            # `stable` first: an idle poll (most polls) should cost no coroutine
            settled = (
                membership is None
                or membership.stable()
                or await membership.settle(deadline, self._broker.wakeup)
            )
            fetched = self._fetch(partitions, max_records or ALL_RECORDS) if settled else {}
            if fetched or clock.monotonic() >= deadline:
                return fetched
            await self._broker.wakeup.until(deadline)

    def _fetch(self, partitions: tuple[TopicPartition, ...], budget: int) -> Fetched:
        readable = []
        for tp in partitions or self._states:
            state = self._states.get(tp)
            if state is not None and not state.paused:
                state.highwater = state.log.end
                if state.position != state.log.end:
                    readable.append((tp, state))
        if len(readable) > 1:
            self._broker.rng.shuffle(readable)
        fetched: Fetched = {}
        for tp, state in readable:
            if budget <= 0:
                break
            records = self._read(state, budget)
            if records:
                fetched[tp] = records
                budget -= len(records)
        return fetched

    def _read(self, state: _PartitionState, budget: int) -> list[ConsumerRecord[bytes, bytes]]:
        log = state.log
        if not log.start <= state.position <= log.end:
            state.position = self._reset_position(log)  # OffsetOutOfRange: auto_offset_reset
        records = log.read(state.position, budget)
        rng = self._broker.rng
        if len(records) > 1 and rng.random() < SHORT_FETCH_CHANCE:
            records = records[: rng.randint(1, len(records))]
        state.position = records[-1].offset + 1 if records else log.end
        return records

    # --- commits ------------------------------------------------------------------------------------
    async def commit(self, offsets: Mapping[TopicPartition, Any] | None = None) -> None:
        """Store `offsets` (next offsets to read) for the group, as aiokafka commits them."""
        if self._group_id is None:
            raise IllegalOperation("Requires group_id")
        if self._membership is None and not self._manual:
            raise IllegalStateError("Not subscribed to any topics")
        if self._membership is not None and self._membership.generation < 0:
            raise IllegalStateError("No partitions assigned")
        if offsets is None:
            offsets = {tp: state.position for tp, state in self._states.items()}
        wanted = {tp: _offset(value) for tp, value in offsets.items()}
        for tp in wanted:
            self._state(tp)  # aiokafka refuses a partition this consumer is not assigned
        if not wanted:
            return  # nothing is sent
        await _on_the_wire()
        self._broker.guard()
        if self._closed:
            raise ConsumerStoppedError()
        group = self._broker.group(self._group_id)
        if not (self._membership.may_commit() if self._membership is not None else not group.members):
            # A member the group no longer counts in this generation (or a simple consumer committing into a
            # group with members): Kafka answers ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID.
            raise CommitFailedError()
        if self._broker.on_commit is not None:
            self._broker.on_commit(self._group_id, wanted)
        group.committed.update(wanted)

    async def committed(self, partition: TopicPartition) -> int | None:
        if self._group_id is None:
            raise IllegalOperation("Requires group_id")
        return self._broker.committed(self._group_id, partition.topic, partition.partition)

    # --- metadata -----------------------------------------------------------------------------------
    async def topics(self) -> set[str]:
        return set(self._broker.topics())

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        count = self._broker.partitions(topic)
        return set(range(count)) if count else None

    async def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._broker.log(tp.topic, tp.partition).start for tp in partitions}

    async def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._broker.log(tp.topic, tp.partition).end for tp in partitions}

    async def offsets_for_times(
        self, timestamps: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """The first record at or after each timestamp (None when there is none), as Kafka's time index."""
        found: dict[TopicPartition, OffsetAndTimestamp | None] = {}
        for tp, ts in timestamps.items():
            records = self._broker.log(tp.topic, tp.partition).records
            hit = next((r for r in records if r.timestamp >= ts), None)
            found[tp] = None if hit is None else OffsetAndTimestamp(hit.offset, hit.timestamp)
        return found


def _offset(value: int | OffsetAndMetadata | tuple[int, str]) -> int:
    return value if isinstance(value, int) else value[0]


async def _on_the_wire() -> None:
    """A request to the broker: other tasks run meanwhile (the group may move on before it arrives)."""
    await asyncio.sleep(0)
