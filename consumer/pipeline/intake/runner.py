"""The Kafka side of a run: poll, hand records to the engine, pace, commit the durable prefix.

Offsets are committed per partition only up to the contiguous prefix whose outcomes are durable
(`PartitionWatermarks`), periodically, on rebalance revoke and on shutdown. Partitions are paused while
too many records are in memory, so memory does not grow with the backlog.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from connectors import clock
from consumer.pipeline.intake.engine import SyncEngine
from consumer.pipeline.intake.reading import Fetched, Read, Reading
from consumer.pipeline.intake.scheduler import FatalSyncError, InboundRecord
from consumer.pipeline.intake.watermark import PartitionWatermarks
from consumer.settings import setting_default

log = structlog.get_logger(__name__)


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
    max_poll_records: int = 500
    # A live static member that has not completed a join after this long rejoins as a dynamic member (see
    # `consumer.service.group_join`).
    static_join_timeout: float = 30.0


@dataclass
class RunSummary:
    records: int = 0
    committed: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    stopped_by: str = "end"


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
            self._runner.watermarks.track(tp)


class SyncRunner:
    """One run's partitions: what is read, what is in flight, what is committed.

    How partitions are taken and which records are work is the run's `Reading` (live, or a replay's
    range). The worker (`consumer.service.worker`) drives it: `start`, one `turn` per poll, `drain`."""

    def __init__(
        self,
        options: RunOptions,
        engine: SyncEngine,
        watermarks: PartitionWatermarks,
        reading: Reading,
        *,
        on_progress: Callable[[SyncRunner], None] | None = None,
    ) -> None:
        self.options = options
        self.engine = engine
        self.watermarks = watermarks  # where the engine's `on_done` lands; what `commit` reads
        self.reading = reading
        self.end_offsets: dict[TopicPartition, int] = {}  # a replay's range; none for a live run
        self._consumer: AIOKafkaConsumer | None = None
        self._paused = False
        self._resume_at = reading.resume_at(options.max_in_flight)
        self._on_progress = on_progress
        self._last_commit = 0.0
        self.started = 0.0
        self.records = 0
        self.joined = False  # a join completed (an assignment arrived, even an empty one)

    def assignment(self) -> set[TopicPartition]:
        """The partitions this process holds now (none before the group assigned any)."""
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    @property
    def consumer(self) -> AIOKafkaConsumer | None:
        return self._consumer

    # --- the worker's steps ---------------------------------------------------------------
    async def start(self, consumer: AIOKafkaConsumer) -> None:
        """Take the partitions (subscribe, or assign a replay's range) and start the commit clock."""
        self.started = clock.monotonic()
        self._consumer = consumer
        self.end_offsets = await self._take(consumer)
        for tp in self.end_offsets:
            self.watermarks.track(tp)
        self._last_commit = clock.monotonic()

    async def rejoined(self, consumer: AIOKafkaConsumer) -> None:
        """Go on with `consumer`, which replaced the one this run started with (a new group member)."""
        self._consumer = consumer
        await self._take(consumer)

    def raise_if_fatal(self) -> None:
        """A fatal error (e.g. a revoked Zoho refresh token) stops the run; its offsets stay put."""
        if self.engine.fatal is not None:
            raise FatalSyncError(str(self.engine.fatal)) from self.engine.fatal

    async def turn(self) -> bool:
        """One poll: fetch -> hand to the engine (which records each outcome) -> pace -> commit when due.

        True when the run is over (a replay whose range is read and done)."""
        consumer = self._consumer
        assert consumer is not None
        polled = await self.reading.poll(
            consumer, paused=self._paused, max_records=self.options.max_poll_records
        )
        self._submit(polled)
        await self.reading.handed_over()
        self._apply_backpressure(consumer)
        await self.reading.gate(self.engine, consumer, paused=self._paused)
        if clock.monotonic() - self._last_commit >= self.options.commit_interval:
            await self.commit()
            self._last_commit = clock.monotonic()
        if self._on_progress:
            self._on_progress(self)
        return await self.reading.over(self.engine, consumer, paused=self._paused, resume_at=self._resume_at)

    async def drain(self) -> None:
        """Drain what is in flight (bounded by the shutdown timeout) and commit its durable prefix."""
        self.engine.release()
        if self.engine.fatal is None:
            drained = await self.engine.wait_idle(self.options.shutdown_timeout)
            if not drained:
                log.warning("shutdown timeout: some records had no outcome yet; they will be redelivered")
        await self.commit()

    def summary(self, stopped_by: str) -> RunSummary:
        return RunSummary(
            records=self.records,
            committed={f"{tp.topic}/{tp.partition}": off for tp, off in self.watermarks.committed().items()},
            elapsed_s=clock.monotonic() - self.started,
            stopped_by=stopped_by,
        )

    # --- inside a turn --------------------------------------------------------------------
    async def _take(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
        options = self.options
        return await self.reading.take(consumer, options.topics, options.bootstrap_servers, _Revocation(self))

    def _submit(self, fetched: Fetched) -> None:
        """Hand fetched records to the engine, each tracked by its partition's watermark."""
        assert self._consumer is not None
        assigned = self._consumer.assignment()
        for tp, messages in fetched.items():
            if tp not in assigned:
                continue  # revoked while we were fetching
            wm = self.watermarks.track(tp)
            for m in self.reading.within(tp, messages):
                read = self.reading.read(m)
                if read is Read.PASSED:
                    self.records += 1
                    wm.passed(m.offset)  # its durable row was written before this run read it
                    continue
                wm.received(m.offset)
                if read is Read.LEFT:
                    continue
                self.records += 1
                headers = tuple(m.headers or ())
                self.engine.submit(
                    InboundRecord(m.topic, m.partition, m.offset, m.key, m.value, headers, m.timestamp)
                )

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

    # --- commits ---------------------------------------------------------------------------
    async def commit(self, partitions: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Commit the durable prefix of `partitions` (all tracked ones by default) still assigned."""
        consumer = self._consumer
        if consumer is None:
            return {}
        wanted = set(partitions) if partitions is not None else set(self.watermarks.partitions())
        offsets = self.watermarks.committable(wanted, consumer.assignment())
        if not offsets:
            return {}
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The group moved on; these records will be redelivered and are idempotent.
            log.warning("commit failed", error=str(exc))
            return {}
        self.watermarks.mark_committed(offsets)
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
        self.watermarks.forget(revoked)
