"""The in-memory Kafka behaves as aiokafka against a broker does, where the pipeline depends on it.

Plain `asyncio.run` on real time with tiny timeouts (session 0.2 s, rebalance 0.3 s): the broker reads the
running loop's clock, so the same code runs on the simulation's virtual-time loop.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, ConsumerStoppedError, IllegalOperation, IllegalStateError

from consumer.pipeline.intake.end_offsets import topic_partitions
from consumer.pipeline.intake.reading import LiveReading
from consumer.pipeline.intake.runner import RunOptions, SyncRunner
from consumer.pipeline.intake.scheduler import InboundRecord, KeyScheduler, WorkItem
from consumer.pipeline.intake.watermark import PartitionWatermarks
from simulation.kafka.broker import MemoryBroker
from simulation.kafka.consumer import MemoryConsumer

T = "orders"
P0, P1, P2 = TopicPartition(T, 0), TopicPartition(T, 1), TopicPartition(T, 2)
Events = list[tuple[str, str, tuple[TopicPartition, ...]]]


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def make_broker(partitions: int = 2, seed: int = 1) -> MemoryBroker:
    broker = MemoryBroker(random.Random(seed), session_timeout=0.2, rebalance_timeout=0.3)
    broker.create_topic(T, partitions)
    return broker


def fill(broker: MemoryBroker, partition: int, count: int, *, key: bytes = b"k") -> None:
    for i in range(count):
        broker.append(T, key, b"v%d" % i, timestamp_ms=1000 * (i + 1), partition=partition)


class Recorder(ConsumerRebalanceListener):
    """Writes each callback to a shared list; optional hooks run inside the callbacks."""

    def __init__(
        self,
        name: str,
        events: Events,
        *,
        on_revoked: Callable[[list[TopicPartition]], Awaitable[None]] | None = None,
        on_assigned: Callable[[list[TopicPartition]], Awaitable[None]] | None = None,
    ) -> None:
        self.name, self.events = name, events
        self._on_revoked, self._on_assigned = on_revoked, on_assigned

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.events.append((self.name, "revoked", tuple(revoked)))
        if self._on_revoked is not None:
            await self._on_revoked(revoked)
        self.events.append((self.name, "revoke-done", tuple(revoked)))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.events.append((self.name, "assigned", tuple(assigned)))
        if self._on_assigned is not None:
            await self._on_assigned(assigned)


class Poller:
    """A consumer polling in a task, as a worker's turns do; what it read is kept in order."""

    def __init__(self, consumer: MemoryConsumer) -> None:
        self.consumer = consumer
        self.read: list[tuple[int, int]] = []  # (partition, offset)
        self.task = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=20)
            for records in batch.values():
                self.read.extend((r.partition, r.offset) for r in records)

    async def halt(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


def member(broker: MemoryBroker, name: str, events: Events, group: str = "g", **kw: Any) -> MemoryConsumer:
    hooks = {k: kw.pop(k) for k in ("on_revoked", "on_assigned") if k in kw}
    consumer = broker.consumer("memory:9092", group, **kw)
    consumer.subscribe([T], listener=Recorder(name, events, **hooks))
    return consumer


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def of(events: Events, name: str) -> list[tuple[str, tuple[TopicPartition, ...]]]:
    return [(kind, tps) for who, kind, tps in events if who == name and kind != "revoke-done"]


def assert_one_owner_at_a_time(events: Events) -> None:
    """No partition is assigned to a member while another still holds it (eager: revoke before assign)."""
    owner: dict[TopicPartition, str] = {}
    for who, kind, tps in events:
        for tp in tps:
            if kind == "assigned":
                assert tp not in owner, f"{tp} assigned to {who} while {owner.get(tp)} holds it"
                owner[tp] = who
            elif kind == "revoke-done":
                assert owner.pop(tp) == who


# --- the log ----------------------------------------------------------------------------------------


def test_records_are_read_in_offset_order_with_key_value_headers_and_timestamp() -> None:
    async def scenario() -> None:
        broker = make_broker(partitions=1)
        for i in range(5):
            broker.append(T, b"k", b"v%d" % i, headers=[("h", b"%d" % i)], timestamp_ms=100 + i)
        consumer = member(broker, "a", [])
        read = []
        while len(read) < 5:
            for records in (await consumer.getmany(timeout_ms=50)).values():
                read.extend(records)
        assert [r.offset for r in read] == [0, 1, 2, 3, 4]
        assert [(r.key, r.value, list(r.headers), r.timestamp) for r in read][4] == (
            b"k", b"v4", [("h", b"4")], 104,
        )  # fmt: skip
        assert (read[0].topic, read[0].partition) == (T, 0)
        assert await consumer.getmany(timeout_ms=10) == {}
        await consumer.stop()

    run(scenario)


def test_a_key_always_goes_to_the_same_partition() -> None:
    broker = make_broker(partitions=3)
    assert {broker.partition_for(T, b"customer:42") for _ in range(10)} == {
        broker.partition_for(T, b"customer:42")
    }
    partition, offset = broker.append(T, b"customer:42", b"x", timestamp_ms=1)
    assert (partition, offset) == (broker.partition_for(T, b"customer:42"), 0)
    assert broker.end_offset(T, partition) == 1


def test_a_waiting_getmany_is_woken_by_an_append() -> None:
    async def scenario() -> None:
        broker = make_broker(partitions=1)
        consumer = member(broker, "a", [])
        await consumer.getmany(timeout_ms=0)  # joins; the group is alone, so it holds the partition
        loop = asyncio.get_running_loop()
        loop.call_later(0.02, lambda: broker.append(T, b"k", b"late", timestamp_ms=1))
        started = loop.time()
        batch = await consumer.getmany(timeout_ms=1000)
        assert [r.value for r in batch[P0]] == [b"late"]
        assert loop.time() - started < 0.5

    run(scenario)


def test_compaction_keeps_the_newest_record_of_each_key_and_offsets_keep_their_gaps() -> None:
    async def scenario() -> None:
        broker = make_broker(partitions=1)
        writes = [(b"a", b"1"), (b"b", b"1"), (b"a", b"2"), (b"c", b"1"), (b"c", None), (b"b", None)]
        writes += [(b"d", b"1"), (None, b"keyless"), (b"e", None)]
        for key, value in writes:
            broker.append(T, key, value, timestamp_ms=1, partition=0)
        assert broker.compact(T) == 5
        # a's newest, d, the keyless record, and the last record although a tombstone (the active segment)
        assert [(r.offset, r.key) for r in broker.records(T, 0)] == [
            (2, b"a"),
            (6, b"d"),
            (7, None),
            (8, b"e"),
        ]
        assert broker.end_offset(T, 0) == 9
        consumer = broker.consumer("memory:9092", None)
        consumer.assign([P0])
        read = []
        while len(read) < 4:
            read += (await consumer.getmany(timeout_ms=10)).get(P0, [])
        assert [r.offset for r in read] == [2, 6, 7, 8]
        assert await consumer.position(P0) == 9

    run(scenario)


def test_retention_moves_the_log_start_and_a_position_before_it_resets_to_the_earliest() -> None:
    async def scenario() -> None:
        broker = make_broker(partitions=1)
        fill(broker, 0, 5)
        reader = broker.consumer("memory:9092", None)
        reader.assign([P0])
        reader.seek(P0, 1)
        broker.delete_before(T, 0, 3)
        assert [r.offset for r in broker.records(T, 0)] == [3, 4]
        assert await reader.beginning_offsets([P0]) == {P0: 3}
        assert [r.offset for r in (await reader.getmany(timeout_ms=10, max_records=1))[P0]] == [3]
        fresh = member(broker, "a", [])  # a group with no commit starts at the first record still there
        batch = await fresh.getmany(timeout_ms=10, max_records=1)
        assert [r.offset for r in batch[P0]] == [3]

    run(scenario)


# --- commits and restarts -----------------------------------------------------------------------------


def test_a_restarted_consumer_resumes_from_the_committed_offset() -> None:
    async def scenario() -> None:
        broker = make_broker(partitions=1)
        fill(broker, 0, 5)
        first = member(broker, "a", [])
        read = await first.getmany(timeout_ms=10, max_records=2)
        assert [r.offset for r in read[P0]][0] == 0
        await first.commit({P0: 2})
        assert broker.committed("g", T, 0) == 2
        assert await first.committed(P0) == 2
        await first.stop()
        with pytest.raises(ConsumerStoppedError):
            await first.getmany(timeout_ms=0)
        second = member(broker, "b", [])
        batch = await second.getmany(timeout_ms=10, max_records=1)
        assert [r.offset for r in batch[P0]] == [2]

    run(scenario)


def test_commit_of_a_partition_not_assigned_is_refused_as_aiokafka_refuses_it() -> None:
    async def scenario() -> None:
        broker = make_broker(partitions=2)
        consumer = member(broker, "a", [], group="solo")
        await consumer.getmany(timeout_ms=0)
        await consumer.commit({P0: 0, P1: 0})
        with pytest.raises(IllegalStateError):
            await consumer.commit({TopicPartition("elsewhere", 0): 1})
        with pytest.raises(IllegalOperation):
            await broker.consumer("memory:9092", None).commit({P0: 1})

    run(scenario)


def test_paused_partitions_are_not_fetched_until_resumed() -> None:
    async def scenario() -> None:
        broker = make_broker(partitions=2)
        fill(broker, 0, 3)
        fill(broker, 1, 3)
        consumer = member(broker, "a", [])
        await consumer.getmany(timeout_ms=0, max_records=1)  # joined; one record read
        consumer.pause(P0)
        assert consumer.paused() == {P0}
        seen: set[TopicPartition] = set()
        for _ in range(5):
            seen |= set(await consumer.getmany(timeout_ms=5))
        assert seen == {P1}
        consumer.resume(P0)
        assert P0 in await consumer.getmany(timeout_ms=5)

    run(scenario)


# --- rebalances ---------------------------------------------------------------------------------------


def test_a_joining_member_gets_partitions_only_after_the_holder_revoked_and_committed() -> None:
    async def scenario() -> None:
        broker = make_broker(partitions=2)
        fill(broker, 0, 3)
        fill(broker, 1, 3)
        events: Events = []

        async def commit_all(revoked: list[TopicPartition]) -> None:
            if revoked:  # the first join revokes nothing (and has nothing assigned to commit)
                await asyncio.sleep(0.05)  # a drain: the new member waits for it
                await a.commit({tp: 2 for tp in revoked})

        a = member(broker, "a", events, on_revoked=commit_all)
        pa = Poller(a)
        await until(lambda: a.assignment() == {P0, P1})
        b = member(broker, "b", events)
        pb = Poller(b)
        await until(lambda: len(a.assignment()) == 1 and len(b.assignment()) == 1)
        await until(lambda: len(pb.read) == 1 and len(pa.read) == 7)
        assert of(events, "a") == [("revoked", ()), ("assigned", (P0, P1)), ("revoked", (P0, P1))] + [
            ("assigned", tuple(a.assignment()))
        ]
        assert of(events, "b") == [("revoked", ()), ("assigned", tuple(b.assignment()))]
        assert events.index(("a", "revoke-done", (P0, P1))) < events.index(
            ("b", "assigned", tuple(b.assignment()))
        )
        assert pb.read == [(next(iter(b.assignment())).partition, 2)]  # the new owner starts at the commit
        assert_one_owner_at_a_time(events)
        assert broker.listener_errors == []
        await pa.halt()
        await pb.halt()

    run(scenario)


def test_two_rebalances_in_a_row_end_with_every_partition_owned_once() -> None:
    async def scenario() -> None:
        broker = make_broker(partitions=3)
        events: Events = []

        async def slow(_: list[TopicPartition]) -> None:
            await asyncio.sleep(0.05)

        a = member(broker, "a", events, on_revoked=slow, on_assigned=slow)
        pollers = [Poller(a)]
        await until(lambda: a.assignment() == {P0, P1, P2})
        b = member(broker, "b", events, on_assigned=slow)
        pollers.append(Poller(b))
        await until(lambda: ("b", "assigned", tuple(b.assignment())) in events and bool(b.assignment()))
        c = member(broker, "c", events)  # while a and b are still inside on_partitions_assigned
        pollers.append(Poller(c))
        consumers = (a, b, c)
        await until(
            lambda: all(len(x.assignment()) == 1 for x in consumers) and not broker.group("g").rebalancing
        )
        await asyncio.sleep(0.1)
        assert set().union(*(x.assignment() for x in consumers)) == {P0, P1, P2}
        assert [kind for kind, _ in of(events, "b")] == ["revoked", "assigned", "revoked", "assigned"]
        assert_one_owner_at_a_time(events)
        assert len(broker.members("g")) == 3
        for poller in pollers:
            await poller.halt()

    run(scenario)


def test_a_topic_created_after_the_subscription_is_dealt_to_the_group() -> None:
    async def scenario() -> None:
        broker = MemoryBroker(random.Random(1), session_timeout=0.2, rebalance_timeout=0.3)
        events: Events = []
        consumer = member(broker, "a", events)
        assert await consumer.getmany(timeout_ms=10) == {}
        assert consumer.assignment() == set()
        broker.create_topic(T, 2)
        broker.append(T, b"k", b"v", timestamp_ms=1, partition=1)
        batch = await consumer.getmany(timeout_ms=10)
        assert consumer.assignment() == {P0, P1} and [r.value for r in batch[P1]] == [b"v"]
        assert of(events, "a") == [("revoked", ()), ("assigned", ()), ("revoked", ()), ("assigned", (P0, P1))]

    run(scenario)


def test_a_killed_members_partitions_move_only_after_the_session_timeout() -> None:
    async def scenario() -> None:
        broker = make_broker(partitions=2)
        events: Events = []
        a, b = member(broker, "a", events), member(broker, "b", events)
        pa, pb = Poller(a), Poller(b)
        await until(lambda: len(a.assignment()) == 1 and len(b.assignment()) == 1)
        fill(broker, 0, 4)
        fill(broker, 1, 4)
        await until(lambda: len(pa.read) == 4 and len(pb.read) == 4)
        (lost,) = a.assignment()
        await a.commit({lost: 3})
        await pa.halt()
        broker.kill(a)
        await asyncio.sleep(0.1)
        assert lost not in b.assignment() and len(broker.members("g")) == 2
        await until(lambda: b.assignment() == {P0, P1})
        assert len(broker.members("g")) == 1
        await until(lambda: (lost.partition, 3) in pb.read)
        assert (lost.partition, 2) not in pb.read  # the new owner starts at the dead one's commit
        with pytest.raises(ConsumerStoppedError):
            await a.getmany(timeout_ms=0)
        await pb.halt()

    run(scenario)


def test_a_member_that_stops_polling_through_a_rebalance_is_removed_and_its_commits_fail() -> None:
    async def scenario() -> None:
        broker = make_broker(partitions=2)
        events: Events = []
        a, b = member(broker, "a", events), member(broker, "b", events)
        pa, pb = Poller(a), Poller(b)
        await until(lambda: len(a.assignment()) == 1 and len(b.assignment()) == 1)
        (held,) = a.assignment()
        await pa.halt()  # alive, but no getmany: it cannot rejoin
        c = member(broker, "c", events)
        pc = Poller(c)
        await until(lambda: len(b.assignment()) == 1 and len(c.assignment()) == 1, timeout=1.0)
        assert len(broker.members("g")) == 2
        assert a.assignment() == {held}  # the zombie still believes it holds its partition
        with pytest.raises(CommitFailedError):
            await a.commit({held: 1})
        assert broker.committed("g", T, held.partition) is None
        pa = Poller(a)  # polling again: it revokes what it held, and rejoins as a new member
        await until(lambda: len(broker.members("g")) == 3 and not broker.group("g").rebalancing)
        assert ("revoked", (held,)) in of(events, "a")  # late: meanwhile another member held it too
        for poller in (pa, pb, pc):
            await poller.halt()

    run(scenario)


def test_a_static_member_restarting_within_its_session_timeout_keeps_its_partitions_without_a_rebalance() -> (
    None
):
    async def scenario() -> None:
        broker = make_broker(partitions=2)
        events: Events = []
        a = member(broker, "a", events, group_instance_id="worker-a")
        b = member(broker, "b", events)
        pa, pb = Poller(a), Poller(b)
        await until(lambda: len(a.assignment()) == 1 and len(b.assignment()) == 1)
        held, generation, ids = a.assignment(), broker.group("g").generation, broker.members("g")
        await pa.halt()
        await a.stop()  # a static member sends no LeaveGroup
        await asyncio.sleep(0.1)
        again = member(broker, "a2", events, group_instance_id="worker-a")
        pa = Poller(again)
        await until(lambda: again.assignment() == held)
        await asyncio.sleep(0.3)  # past the old session timeout: nothing expires
        assert broker.group("g").generation == generation and broker.members("g") == ids
        assert [kind for kind, _ in of(events, "b")] == ["revoked", "assigned"]
        await pa.halt()
        await again.stop()
        await until(lambda: b.assignment() == {P0, P1})  # not back in time: expired, dealt again
        await pb.halt()

    run(scenario)


def test_a_members_own_session_timeout_is_the_one_the_group_waits() -> None:
    async def scenario() -> None:
        broker = make_broker(partitions=2)
        a = member(broker, "a", [], session_timeout_ms=50, heartbeat_interval_ms=10)
        b = member(broker, "b", [])
        pa, pb = Poller(a), Poller(b)
        await until(lambda: len(a.assignment()) == 1 and len(b.assignment()) == 1)
        await pa.halt()
        started = asyncio.get_running_loop().time()
        broker.kill(a)
        await until(lambda: b.assignment() == {P0, P1})
        assert asyncio.get_running_loop().time() - started < 0.15
        await pb.halt()

    run(scenario)


# --- replays ----------------------------------------------------------------------------------------


def test_a_replay_assigns_seeks_and_reads_offsets_positions_and_times() -> None:
    async def scenario() -> None:
        broker = make_broker(partitions=2)
        fill(broker, 0, 3)  # timestamps 1000, 2000, 3000
        consumer = broker.consumer("memory:9092", None, enable_auto_commit=False)
        await consumer.start()
        assert await topic_partitions(consumer, [T]) == [P0, P1]
        assert consumer.partitions_for_topic("missing") is None and await consumer.topics() == {T}
        consumer.assign([P0, P1])
        assert await consumer.end_offsets([P0, P1]) == {P0: 3, P1: 0}
        assert consumer.highwater(P0) is None
        consumer.seek(P0, 2)
        assert [r.offset for r in (await consumer.getmany(P0, timeout_ms=10))[P0]] == [2]
        assert consumer.highwater(P0) == 3 and await consumer.position(P0) == 3
        await consumer.seek_to_beginning(P0)
        assert await consumer.position(P0) == 0
        found = await consumer.offsets_for_times({P0: 1500, P1: 0})
        assert (found[P0].offset, found[P0].timestamp, found[P1]) == (1, 2000, None)
        with pytest.raises(IllegalStateError):
            await consumer.position(TopicPartition(T, 7))
        with pytest.raises(IllegalOperation):
            await consumer.committed(P0)
        await consumer.stop()

    run(scenario)


def test_a_replay_under_a_group_starts_at_its_commit_and_cannot_commit_over_live_members() -> None:
    async def scenario() -> None:
        broker = make_broker(partitions=1)
        fill(broker, 0, 4)
        replay = broker.consumer("memory:9092", "replay")
        replay.assign([P0])
        await replay.commit({P0: 2})
        again = broker.consumer("memory:9092", "replay")
        again.assign([P0])
        assert await again.position(P0) == 2
        live = member(broker, "a", [], group="replay")
        await live.getmany(timeout_ms=0)
        with pytest.raises(CommitFailedError):
            await again.commit({P0: 3})  # Kafka: UNKNOWN_MEMBER_ID from a group with members
        with pytest.raises(IllegalStateError):
            again.subscribe([T])

    run(scenario)


def test_the_producer_writes_to_the_keys_partition_and_returns_its_metadata() -> None:
    async def scenario() -> None:
        broker = make_broker(partitions=3)
        producer = broker.producer()
        await producer.start()
        sent = await producer.send_and_wait(T, b"value", key=b"key", headers=[("x-sync-reason", b"why")])
        assert (sent.partition, sent.offset) == (broker.partition_for(T, b"key"), 0)
        (record,) = broker.records(T, sent.partition)
        assert (record.key, record.value, list(record.headers)) == (
            b"key",
            b"value",
            [("x-sync-reason", b"why")],
        )
        future = await producer.send(T, b"second", key=b"key")
        assert (await future).offset == 1
        await producer.stop()

    run(scenario)


def test_a_dead_process_neither_produces_nor_fetches_nor_commits() -> None:
    class Dead(BaseException):
        pass

    dead = {"now": False}

    def guard() -> None:
        if dead["now"]:
            raise Dead()

    async def scenario() -> None:
        broker = MemoryBroker(random.Random(1), guard=guard)
        broker.create_topic(T, 1)
        producer, consumer = broker.producer(), member(broker, "a", [])
        await producer.send_and_wait(T, b"v", key=b"k")
        await consumer.getmany(timeout_ms=0)
        dead["now"] = True
        for act in (producer.send_and_wait(T, b"w", key=b"k"), consumer.getmany(), consumer.commit({P0: 1})):
            with pytest.raises(Dead):
                await act
        assert broker.end_offset(T, 0) == 1 and broker.committed("g", T, 0) is None

    run(scenario)


def test_one_seed_gives_one_history() -> None:
    def history(seed: int) -> list[object]:
        async def scenario() -> list[object]:
            broker = make_broker(partitions=3, seed=seed)
            for i in range(30):
                broker.append(T, b"%d" % i, b"v", timestamp_ms=i)
            consumer = member(broker, "a", [])
            seen: list[object] = [broker.new_member_id("x")]
            while sum(len(r) for r in [broker.records(T, p) for p in range(3)]) > len(seen) - 1:
                batch = await consumer.getmany(timeout_ms=0, max_records=4)
                seen.extend((tp.partition, r.offset) for tp, records in batch.items() for r in records)
            return seen

        return asyncio.run(scenario())

    assert history(7) == history(7)
    assert len(history(7)) == 31


# --- the real runner on it --------------------------------------------------------------------------


class StubEngine:
    """The engine's real scheduling (`KeyScheduler`: per-key queues, revokes, in-flight counts) with a handler
    that takes `work` seconds and notes each record, in place of Zoho and the sync log."""

    def __init__(
        self, watermarks: PartitionWatermarks, handled: list[tuple[str, int, int]], name: str
    ) -> None:
        self.scheduler = KeyScheduler(self._handle, watermarks.completed)
        self.metrics = SimpleNamespace(in_flight=SimpleNamespace(set=lambda _: None))
        self._handled, self._name = handled, name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.scheduler, name)

    def submit(self, record: InboundRecord) -> None:
        item = WorkItem(record, None, None)
        self.scheduler.admit(item)
        self.scheduler.enqueue(("key", repr(record.key)), item)

    async def _handle(self, key: object, batch: list[WorkItem]) -> None:
        await asyncio.sleep(0.003)
        self._handled.extend((self._name, item.record.partition, item.record.offset) for item in batch)


class SyncProcess:
    """One sync process: the real `SyncRunner` and `LiveReading` over a stub engine, turn after turn."""

    def __init__(self, broker: MemoryBroker, name: str, handled: list[tuple[str, int, int]]) -> None:
        options = RunOptions(
            topics=(T,),
            group_id="sync",
            bootstrap_servers="memory",
            commit_interval=0.05,
            shutdown_timeout=1.0,
        )
        watermarks = PartitionWatermarks()
        self.engine = StubEngine(watermarks, handled, name)
        self.runner = SyncRunner(options, self.engine, watermarks, LiveReading())  # type: ignore[arg-type]
        self.consumer = broker.consumer("memory", "sync", session_timeout_ms=200, heartbeat_interval_ms=50)
        self.stopping = False
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        await self.consumer.start()
        await self.runner.start(self.consumer)  # type: ignore[arg-type]
        while not self.stopping:
            await self.runner.turn()
        await self.runner.drain()
        await self.engine.close()
        await self.consumer.stop()

    async def die(self, broker: MemoryBroker) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.engine.close()
        broker.kill(self.consumer)


def test_the_real_runner_loses_nothing_and_redoes_only_a_killed_processes_uncommitted_records() -> None:
    async def scenario() -> None:
        broker = make_broker(partitions=2)
        producer = broker.producer()
        handled: list[tuple[str, int, int]] = []

        async def produce(count: int) -> None:
            for i in range(count):
                await producer.send_and_wait(T, b"v", key=b"entity-%d" % (i % 7))
                await asyncio.sleep(0.002)

        a = SyncProcess(broker, "a", handled)
        await produce(20)
        b = SyncProcess(broker, "b", handled)
        await until(lambda: len(a.consumer.assignment()) == 1 and len(b.consumer.assignment()) == 1)
        await produce(20)
        (lost,) = a.consumer.assignment()
        await until(
            lambda: broker.committed("sync", T, lost.partition) == broker.end_offset(T, lost.partition)
        )
        await produce(10)
        await a.die(broker)
        committed_at_death = broker.committed("sync", T, lost.partition) or 0
        await produce(20)
        ends = {p: broker.end_offset(T, p) for p in (0, 1)}
        await until(lambda: all(broker.committed("sync", T, p) == ends[p] for p in (0, 1)), timeout=3.0)
        b.stopping = True
        await b.task
        everything = {(p, r.offset) for p in (0, 1) for r in broker.records(T, p)}
        assert {(p, o) for _, p, o in handled} == everything
        times = Counter((p, o) for _, p, o in handled)
        twice = sorted(position for position, n in times.items() if n > 1)
        assert all(p == lost.partition and o >= committed_at_death for p, o in twice)
        assert broker.listener_errors == []
        assert broker.members("sync") == []

    run(scenario)
