"""The Kafka side of a sync run: fetch -> process -> record -> commit, in one visible loop.

Offsets are committed per partition only up to the contiguous prefix whose outcomes are durable
(`OffsetWatermark`), periodically, on rebalance revoke and on shutdown. Partitions are paused
while too many records are in memory, so memory does not grow with the backlog. The same runner
serves the live sync (`run`), backfills (own group, stops at the end offsets captured at start)
and dead-letter reprocessing.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import CommitFailedError, KafkaError

from consumer.pipeline.intake.end_offsets import end_offsets as true_end_offsets
from consumer.pipeline.intake.end_offsets import topic_partitions
from consumer.pipeline.intake.engine import SyncEngine
from consumer.pipeline.intake.scheduler import FatalSyncError, InboundRecord
from consumer.pipeline.intake.watermark import OffsetWatermark
from consumer.settings import setting_default

log = structlog.get_logger("zoho_cdc.runner")


@dataclass
class RunOptions:
    topics: tuple[str, ...]
    group_id: str
    bootstrap_servers: str
    max_in_flight: int = setting_default("max_in_flight")
    commit_interval: float = setting_default("commit_interval_seconds")
    shutdown_timeout: float = setting_default("shutdown_timeout_seconds")
    # How long a rebalance waits for in-flight records before giving up its partitions. Records held
    # up by the Zoho rate window can wait a whole window; waiting that long in the revoke callback
    # makes the group miss its rebalance deadline and rebalance again (measured on Tansu).
    revoke_drain_timeout: float | None = None
    # Bounded runs (backfill, reprocess): assign every partition, start from here, stop at the end
    # offsets captured when the run starts.
    bounded: bool = False
    from_beginning: bool = False
    since: datetime | None = None
    max_poll_records: int = 500
    # A bounded run whose range was already read (a backfill's first pass): start and end offsets per
    # partition, so both passes see exactly the same records.
    bounds: dict[TopicPartition, tuple[int, int]] | None = None
    # Read ahead (hold work until intake is full) so events of one entity fold; off when the first pass
    # already chose each entity's one record to apply.
    read_ahead: bool = True
    # Records for which this returns False are left untouched: no outcome, and the commit stops before them.
    accept: Callable[[ConsumerRecord[bytes, bytes]], bool] | None = None
    # Records for which this returns True were handled before (a dead letter re-driven by an earlier run,
    # a second copy of one): no work, and the commit may pass them. Asked before `accept`.
    handled_before: Callable[[ConsumerRecord[bytes, bytes]], bool] | None = None
    # A live static member that has not completed a join after this long rejoins as a dynamic member (see
    # `SyncRunner.run`).
    static_join_timeout: float = 30.0


@dataclass
class RunSummary:
    records: int = 0
    committed: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    stopped_by: str = "end"


def kafka_consumer(bootstrap_servers: str, group_id: str, **extra: object) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_interval_ms=600_000,  # a paused partition still polls, but rate-limit waits can be long
        **extra,
    )


def kafka_producer(bootstrap_servers: str) -> AIOKafkaProducer:
    # Idempotence stays off: the local Tansu broker does not implement it; acks=all still waits for the log.
    return AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=False)


class _Revocation(ConsumerRebalanceListener):
    def __init__(self, runner: SyncRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._runner.drain_and_commit(list(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._runner.joined = True
        assigned = list(assigned)
        self._runner.engine.assigned((tp.topic, tp.partition) for tp in assigned)
        for tp in assigned:
            self._runner.watermarks.setdefault(tp, OffsetWatermark())


async def assign_range(consumer: AIOKafkaConsumer, options: RunOptions) -> dict[TopicPartition, int]:
    """Assign every partition of a bounded run and seek to where it starts (beginning, `since`, or the
    consumer group's committed position); returns the end offset of each partition, captured now."""
    partitions = await topic_partitions(consumer, options.topics, wait_seconds=5)
    consumer.assign(partitions)
    if not partitions:
        return {}
    ends = await true_end_offsets(options.bootstrap_servers, partitions)
    if options.since is not None:
        ts = int(options.since.timestamp() * 1000)
        found = await consumer.offsets_for_times({tp: ts for tp in partitions})
        for tp in partitions:
            hit = found.get(tp)
            # No record at or after the time: Kafka answers None; Tansu answers timestamp -1.
            if hit is None or hit.timestamp < 0:
                consumer.seek(tp, ends[tp])
            else:
                consumer.seek(tp, hit.offset)
    elif options.from_beginning:
        await consumer.seek_to_beginning(*partitions)
    return ends


class SyncRunner:
    def __init__(
        self,
        options: RunOptions,
        make_engine: Callable[[Callable[[InboundRecord], None]], SyncEngine],
        *,
        on_progress: Callable[[SyncRunner], None] | None = None,
    ) -> None:
        self.options = options
        self.engine = make_engine(self._record_done)
        self.watermarks: dict[TopicPartition, OffsetWatermark] = {}
        self.end_offsets: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._stop = asyncio.Event()
        self._stopped_by = "end"
        self._paused = False
        # Paused partitions resume once in-flight records fall to this. A bounded run (a replay) is
        # CPU-bound and refills at once, so it resumes sooner and keeps its pipeline fuller (the no-op
        # replay of benchmark 1: about 10 % faster at 3/4 than at 1/2); a live run keeps the wider margin.
        self._resume_at = options.max_in_flight * 3 // 4 if options.bounded else options.max_in_flight // 2
        self._on_progress = on_progress
        self.records = 0
        self.joined = False  # a join completed (an assignment arrived, even an empty one)

    # --- callbacks ------------------------------------------------------------------------
    def _record_done(self, record: InboundRecord) -> None:
        wm = self.watermarks.get(TopicPartition(record.topic, record.partition))
        if wm is not None:
            wm.completed(record.offset)

    def assignment(self) -> set[TopicPartition]:
        """The partitions this process holds now (none before the group assigned any)."""
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    def stop(self, reason: str = "signal") -> None:
        self._stopped_by = reason
        self._stop.set()

    # --- the loop -------------------------------------------------------------------------
    async def run(
        self,
        consumer: AIOKafkaConsumer,
        *,
        rejoin_dynamically: Callable[[AIOKafkaConsumer], Awaitable[AIOKafkaConsumer]] | None = None,
    ) -> RunSummary:
        """Fetch -> submit -> commit until stopped (live) or until the end offsets are done (bounded).

        `rejoin_dynamically` (a live static member): replaces the consumer by one without
        `group.instance.id`. It is used once, when no join completed within `static_join_timeout`: the local
        Tansu broker can leave a static member restarted within its session timeout rejoining forever with
        no assignment, while the others keep their partitions and its own have no owner. A dynamic member's
        join makes the group rebalance."""
        started = time.monotonic()
        self._consumer = consumer
        if self.options.bounded:
            await self._assign_bounded(consumer)
        else:
            consumer.subscribe(list(self.options.topics), listener=_Revocation(self))
        last_commit = time.monotonic()
        try:
            while not self._stop.is_set():
                if self.engine.fatal is not None:
                    raise FatalSyncError(str(self.engine.fatal)) from self.engine.fatal
                if (
                    rejoin_dynamically is not None
                    and not self.joined
                    and time.monotonic() - started > self.options.static_join_timeout
                ):
                    log.warning(
                        "no assignment since joining as a static member; rejoining as a dynamic member",
                        waited_s=round(time.monotonic() - started, 1),
                    )
                    consumer = self._consumer = await rejoin_dynamically(consumer)
                    consumer.subscribe(list(self.options.topics), listener=_Revocation(self))
                    rejoin_dynamically = None
                bounded = self.options.bounded
                # A bounded run (backfill, reprocess) that is paused waits for the engine below instead of
                # the poll. A live run keeps its poll as it was: benchmark 6's restarted static member that
                # got no partitions back was first blamed on this change, but it stalls without it too
                # (docs/BENCHMARKS.md); the change was never measured for live runs.
                wait_ms = 0 if bounded and self._paused else 200
                self._submit(
                    await consumer.getmany(timeout_ms=wait_ms, max_records=self.options.max_poll_records)
                )
                if bounded:
                    # A poll served from the prefetch buffer never yields: let the writes and reads the
                    # records just started get under way while the next ones are read.
                    await asyncio.sleep(0)
                self._apply_backpressure(consumer)
                await self._gate_read_ahead()
                if time.monotonic() - last_commit >= self.options.commit_interval:
                    await self.commit()
                    last_commit = time.monotonic()
                if self._on_progress:
                    self._on_progress(self)
                if bounded and await self._intake_done():
                    # woken by the last outcome, not by a poll; a fatal error is raised above instead
                    if await self.engine.wait_idle(0.2) and self.engine.fatal is None:
                        break
                elif bounded and self._paused:
                    await self.engine.wait_in_flight(self._resume_at, 0.2)
        finally:
            await self._shut_down()
        return RunSummary(
            records=self.records,
            committed={f"{tp.topic}/{tp.partition}": wm.committed or 0 for tp, wm in self.watermarks.items()},
            elapsed_s=time.monotonic() - started,
            stopped_by=self._stopped_by,
        )

    def _submit(self, fetched: Mapping[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        """Hand fetched records to the engine, each tracked by its partition's watermark."""
        assert self._consumer is not None
        assigned = self._consumer.assignment()
        for tp, messages in fetched.items():
            if tp not in assigned:
                continue  # revoked while we were fetching
            wm = self.watermarks.setdefault(tp, OffsetWatermark())
            end = self.end_offsets.get(tp, 0) if self.options.bounded else None
            recorded = self.engine.recorded_before
            for m in messages:
                if end is not None and m.offset >= end:
                    continue
                handled = self.options.handled_before
                if (recorded is not None and recorded(m.topic, m.partition, m.offset)) or (
                    handled is not None and handled(m)
                ):
                    self.records += 1
                    wm.passed(m.offset)  # its durable row was written before this run read it
                    continue
                wm.received(m.offset)
                if self.options.accept is not None and not self.options.accept(m):
                    continue
                self.records += 1
                headers = tuple(m.headers or ())
                self.engine.submit(
                    InboundRecord(m.topic, m.partition, m.offset, m.key, m.value, headers, m.timestamp)
                )

    async def _gate_read_ahead(self) -> None:
        """A bounded run reads ahead up to the in-flight bound before working, so a replay folds many events
        of one entity into one call; it works whenever intake is full or has reached the end."""
        if not (self.options.bounded and self.options.read_ahead):
            return
        if self._paused or await self._intake_done():
            self.engine.release()
        else:
            self.engine.hold()

    async def _shut_down(self) -> None:
        """Drain what is in flight (bounded by the shutdown timeout), commit its durable prefix, close."""
        self.engine.release()
        if self.engine.fatal is None:
            drained = await self.engine.wait_idle(self.options.shutdown_timeout)
            if not drained:
                log.warning("shutdown timeout: some records had no outcome yet; they will be redelivered")
        await self.commit()
        await self.engine.close()

    async def _assign_bounded(self, consumer: AIOKafkaConsumer) -> None:
        if self.options.bounds is not None:
            partitions = list(self.options.bounds)
            consumer.assign(partitions)
            for tp, (start, end) in self.options.bounds.items():
                consumer.seek(tp, start)
                self.end_offsets[tp] = end
        else:
            self.end_offsets = await assign_range(consumer, self.options)
            partitions = list(self.end_offsets)
        for tp in partitions:
            self.watermarks[tp] = OffsetWatermark()

    async def _intake_done(self) -> bool:
        consumer = self._consumer
        assert consumer is not None
        for tp, end in self.end_offsets.items():
            if end == 0:
                continue
            if await consumer.position(tp) < end:
                return False
        return True

    def _apply_backpressure(self, consumer: AIOKafkaConsumer) -> None:
        in_flight = self.engine.in_flight
        self.engine.metrics.in_flight.set(in_flight)
        if not self._paused and in_flight >= self.options.max_in_flight:
            consumer.pause(*consumer.assignment())
            self._paused = True
        elif self._paused and in_flight <= self._resume_at:
            consumer.resume(*consumer.assignment())
            self._paused = False
        elif self._paused:
            # A rebalance hands over partitions unpaused: pause them too, or a backlog streams into memory.
            consumer.pause(*consumer.assignment())

    async def commit(self, partitions: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        consumer = self._consumer
        if consumer is None:
            return {}
        assigned = consumer.assignment()
        wanted = set(partitions) if partitions is not None else set(self.watermarks)
        offsets = {}
        for tp in wanted:
            wm = self.watermarks.get(tp)
            if wm is None or tp not in assigned:
                continue
            next_offset = wm.committable()
            if next_offset is not None:
                offsets[tp] = next_offset
        if not offsets:
            return {}
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The group moved on; these records will be redelivered and are idempotent.
            log.warning("commit failed", error=str(exc))
            return {}
        for tp, off in offsets.items():
            self.watermarks[tp].mark_committed(off)
        return offsets

    async def drain_and_commit(self, revoked: list[TopicPartition]) -> None:
        """On revoke: stop the revoked partitions' work before its Zoho call, let calls already on the wire
        finish and be recorded (bounded), commit their durable prefix, forget the partitions.

        Only the revoked partitions are waited for: work of partitions this process keeps goes on."""
        if not revoked:
            return
        partitions = [(tp.topic, tp.partition) for tp in revoked]
        self.engine.revoke(partitions)
        drain = self.options.revoke_drain_timeout
        await self.engine.wait_partitions_idle(
            partitions, self.options.shutdown_timeout if drain is None else drain
        )
        await self.commit(revoked)
        for tp in revoked:
            self.watermarks.pop(tp, None)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, sig.name)
