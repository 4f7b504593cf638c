"""The sync engine: records in, one durable sync-log outcome per record out, in key order.

It wires the `KeyScheduler` (one worker per entity key), the `EventPolicy` (what a key's batch becomes)
and the `OutcomeRecorder` (durable rows); `on_done`, which lets the offset be committed, is called only
after a record's row is durable. The run's intake queues records (`LiveIntake`, or a replay's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from consumer.metrics import Metrics
from consumer.model.events import ChangeEvent, DecodeError
from consumer.model.plan import MappingConfig
from consumer.pipeline.codec.decode import decode_event
from consumer.pipeline.decision.entity_map import Listing
from consumer.pipeline.decision.policy import EventPolicy, PolicyOptions
from consumer.pipeline.durability.recording import OutcomeRecorder, Store
from consumer.pipeline.effects.apply import Applied, Applier
from consumer.pipeline.effects.dead_letter_topic import H_TOPIC, DeadLetterPublisher, parse_headers
from consumer.pipeline.effects.dead_lettering import DeadLetterDesk
from consumer.pipeline.effects.follow_ups import FollowUps
from consumer.pipeline.intake.scheduler import (
    FatalSyncError,
    InboundRecord,
    Key,
    KeyScheduler,
    Partition,
    WorkItem,
    key_of,
)
from consumer.settings import setting_default

log = structlog.get_logger(__name__)


@dataclass
class EngineOptions:
    consumer_group: str
    topic_prefix: str
    mapping: MappingConfig = field(default_factory=MappingConfig)
    # The settings besides the mapping that change what is sent (`replay.memo.payload_settings`).
    payload_settings: tuple[tuple[str, object], ...] = ()
    resync: bool = False  # ignore stored payload hashes and check every entity against Zoho
    ignore_stale: bool = False
    dlq_topic: str = setting_default("dlq_topic")
    reprocess_max_attempts: int = setting_default("reprocess_max_attempts")


class RecordIntake(Protocol):
    """How the engine's records reach the key scheduler."""

    def submit(self, record: InboundRecord, event: ChangeEvent | None) -> None: ...

    def tasks(self) -> list[asyncio.Task[None] | None]:
        """Background work of its own, cancelled when the engine closes."""
        ...


class IntakeStrategy(Protocol):
    """Builds a run's `RecordIntake` over the engine's parts (a replay's: `replay.second_pass.SecondPass`)."""

    def open(self, engine: SyncEngine) -> RecordIntake: ...


class LiveIntake:
    """Each record decoded on arrival and queued behind earlier records of its entity."""

    def __init__(self, engine: SyncEngine) -> None:
        self._engine = engine

    def submit(self, record: InboundRecord, event: ChangeEvent | None) -> None:
        error: DecodeError | None = None
        if event is None:
            event, error = self._engine.decoded(record)
        self._engine.admit(WorkItem(record, event, error))

    def tasks(self) -> list[asyncio.Task[None] | None]:
        return []


def _nothing_to_commit(_record: InboundRecord) -> None:
    """The `on_done` of an engine fed by hand (a repair): no Kafka offsets to advance."""


class SyncEngine:
    """Turns inbound records into Zoho calls and durable sync-log outcomes."""

    def __init__(
        self,
        *,
        options: EngineOptions,
        store: Store,
        applier: Applier,
        dead_letters: DeadLetterPublisher,
        on_done: Callable[[InboundRecord], None] | None = None,
        metrics: Metrics | None = None,
        listing: Listing | None = None,
        intake: IntakeStrategy | None = None,
    ) -> None:
        self.options = options
        self.metrics = metrics or Metrics()
        self.scheduler = KeyScheduler(self._handle, on_done or _nothing_to_commit)
        self.recorder = OutcomeRecorder(store, options.consumer_group, self.metrics)
        desk = DeadLetterDesk(
            dead_letters,
            self.recorder,
            options.dlq_topic,
            options.reprocess_max_attempts,
            options.topic_prefix,
        )
        policy_options = PolicyOptions(
            options.mapping,
            options.resync,
            options.ignore_stale,
            options.dlq_topic,
            options.topic_prefix,
            options.payload_settings,
        )
        self.policy = EventPolicy(policy_options, self.recorder, desk, applier, self.scheduler, listing)
        self.policy.follow_ups = FollowUps(self.recorder, self.admit, options.topic_prefix)
        self._intake: RecordIntake = intake.open(self) if intake is not None else LiveIntake(self)

    async def _handle(self, key: Key, batch: list[WorkItem]) -> None:
        await self.policy.handle(key, batch)

    # --- intake -------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return self.scheduler.in_flight

    @property
    def fatal(self) -> BaseException | None:
        return self.scheduler.fatal

    def submit(self, record: InboundRecord, event: ChangeEvent | None = None) -> None:
        """Queue one record behind earlier records of the same entity (through the run's intake).

        `event` is given by jobs that already hold the change (reconcile's repair reads the source rows
        itself): the record then only names the sync-log position, and nothing is decoded."""
        self._intake.submit(record, event)

    def decoded(self, record: InboundRecord) -> tuple[ChangeEvent | None, DecodeError | None]:
        # A record re-driven from the DLQ is decoded as the record of its original topic.
        source_topic = record.topic
        if record.topic == self.options.dlq_topic:
            source_topic = parse_headers(record.headers).get(H_TOPIC) or record.topic
        try:
            return decode_event(
                source_topic, record.key, record.value, topic_prefix=self.options.topic_prefix
            ), None
        except DecodeError as exc:
            return None, exc

    def admit(self, item: WorkItem) -> None:
        """Count a record in flight and queue it under its key."""
        self.scheduler.admit(item)
        self.scheduler.enqueue(key_of(item), item)

    # --- flow control and partitions (the scheduler's) ----------------------------------
    def hold(self) -> None:
        """Let records gather without starting their work (read-ahead for coalescing)."""
        self.scheduler.hold()

    def release(self) -> None:
        self.scheduler.release()

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every submitted record has a durable outcome. False on timeout."""
        return await self.scheduler.wait_idle(timeout)

    async def wait_in_flight(self, at_most: int, timeout: float) -> bool:
        """Wait until at most `at_most` records are in flight (back-pressure eased); False on timeout."""
        return await self.scheduler.wait_in_flight(at_most, timeout)

    async def close(self) -> None:
        await self.scheduler.close(*self._intake.tasks())

    def revoke(self, partitions: Iterable[Partition]) -> None:
        """Stop the work of revoked partitions before it calls Zoho (see `KeyScheduler.revoke`)."""
        self.scheduler.revoke(partitions)

    def assigned(self, partitions: Iterable[Partition]) -> None:
        self.scheduler.assigned(partitions)

    def in_flight_for(self, partitions: Iterable[Partition]) -> int:
        return self.scheduler.in_flight_for(partitions)

    async def wait_partitions_idle(self, partitions: Iterable[Partition], timeout: float) -> bool:
        return await self.scheduler.wait_partitions_idle(partitions, timeout)


__all__ = ["SyncEngine", "EngineOptions", "InboundRecord", "FatalSyncError", "Applied"]
