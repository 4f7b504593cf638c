"""The sync engine: records in, one durable sync-log outcome per record out, in key order.

It wires the three parts a newcomer reads in turn: the `KeyScheduler` (one worker per entity key, the
Parallel Consumer model), the `EventPolicy` (what a key's batch becomes, step by step) and the
`OutcomeRecorder` (durable rows). Records are decoded on arrival; `on_done` (which advances the
offset watermark) is called only after a record's row is durable. A backfill's replay settles every
record but each entity's newest at once, in bulk, without a call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog

from consumer.metrics import Metrics
from consumer.pipeline.apply import Applied, Applier
from consumer.pipeline.dead_lettering import DeadLetterDesk
from consumer.pipeline.dead_letters import H_TOPIC, DeadLetterPublisher, parse_headers
from consumer.pipeline.decode import decode_event
from consumer.pipeline.entity_map import Listing
from consumer.pipeline.events import ChangeEvent, DecodeError, Op
from consumer.pipeline.plan import MappingConfig
from consumer.pipeline.policy import EventPolicy, PolicyOptions
from consumer.pipeline.recording import Outcome, OutcomeRecorder, Store
from consumer.pipeline.replay_index import ReplayIndex, Role
from consumer.pipeline.row_images import coalesce
from consumer.pipeline.scheduler import FatalSyncError, InboundRecord, Key, KeyScheduler, Partition, WorkItem
from consumer.pipeline.store import OutcomeRow
from consumer.settings import setting_default

log = structlog.get_logger("zoho_cdc.engine")


@dataclass
class EngineOptions:
    consumer_group: str
    topic_prefix: str
    mapping: MappingConfig = field(default_factory=MappingConfig)
    resync: bool = False  # ignore stored payload hashes and check every entity against Zoho
    ignore_stale: bool = False
    dlq_topic: str = setting_default("dlq_topic")
    reprocess_max_attempts: int = setting_default("reprocess_max_attempts")


class SyncEngine:
    """Turns inbound records into Zoho calls and durable sync-log outcomes."""

    def __init__(
        self,
        *,
        options: EngineOptions,
        store: Store,
        applier: Applier,
        dead_letters: DeadLetterPublisher,
        on_done: Callable[[InboundRecord], None],
        metrics: Metrics | None = None,
        replay: ReplayIndex | None = None,
        listing: Listing | None = None,
    ) -> None:
        self.options = options
        self.metrics = metrics or Metrics()
        self._scheduler = KeyScheduler(self._handle, on_done)
        self._recorder = OutcomeRecorder(store, options.consumer_group, self.metrics)
        desk = DeadLetterDesk(
            dead_letters,
            self._recorder,
            options.dlq_topic,
            options.reprocess_max_attempts,
            options.topic_prefix,
        )
        policy_options = PolicyOptions(
            options.mapping, options.resync, options.ignore_stale, options.dlq_topic, options.topic_prefix
        )
        self._policy = EventPolicy(policy_options, self._recorder, desk, applier, self._scheduler, listing)
        # A backfill's first pass (`ReplayIndex`): only each entity's newest record is worked on.
        self._replay = replay
        self._images: dict[Key, ChangeEvent] = {}  # images a newest record is made whole from
        self._settling: list[tuple[WorkItem, OutcomeRow]] = []  # outcomes decided on arrival, written in bulk
        self._settler: asyncio.Task[None] | None = None

    async def _handle(self, key: Key, batch: list[WorkItem]) -> None:
        await self._policy.handle(key, batch)

    # --- intake -------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return self._scheduler.in_flight

    @property
    def fatal(self) -> BaseException | None:
        return self._scheduler.fatal

    def submit(self, record: InboundRecord, event: ChangeEvent | None = None) -> None:
        """Queue one record behind earlier records of the same entity.

        `event` is given by jobs that already hold the change (reconcile's repair reads the source rows
        itself): the record then only names the sync-log position, and nothing is decoded."""
        error: DecodeError | None = None
        if event is None:
            event, error = self._decoded(record)
        key = (
            (event.entity_type.value, event.entity_id)
            if event is not None
            else ("undecodable", f"{record.topic}/{record.partition}/{record.offset}")
        )
        item = WorkItem(record, event, error)
        self._scheduler.admit(item)
        if event is not None and self._replay is not None and record.topic != self.options.dlq_topic:
            settled = self._replayed(key, item, event)
            if settled is None:
                return
            item = settled
        self._scheduler.enqueue(key, item)

    def _decoded(self, record: InboundRecord) -> tuple[ChangeEvent | None, DecodeError | None]:
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

    def _replayed(self, key: Key, item: WorkItem, event: ChangeEvent) -> WorkItem | None:
        """A replayed record: its entity's newest record goes on (made whole from the images before it),
        every other one gets its outcome at once, without a call; None when it was settled."""
        assert self._replay is not None
        record, row = item.record, self._recorder.row
        if event.op is Op.TOMBSTONE:
            self._settle(item, row(item, "skipped", operation="none", error="tombstone"))
            return None
        role, newest = self._replay.role(key, record.topic, record.partition, record.offset)
        if role is Role.APPLY:
            image = self._images.pop(key, None)
            if image is None:
                return item
            return WorkItem(record, coalesce([image, event]), None)
        if role is Role.MERGE:
            image = self._images.get(key)
            self._images[key] = event if image is None else coalesce([image, event])
        self._settle(item, row(item, "superseded", error=f"newer event at offset {newest}"))
        return None

    def _settle(self, item: WorkItem, row: OutcomeRow) -> None:
        """Record an outcome decided without any work; such rows are written in bulk."""
        self.metrics.outcome(row.outcome)
        self._settling.append((item, row))
        if self._settler is None or self._settler.done():
            self._settler = asyncio.create_task(self._write_settled(), name="sync:settled")

    async def _write_settled(self) -> None:
        try:
            while self._settling and self.fatal is None:
                await asyncio.sleep(0)  # gather what this tick's intake settles
                batch, self._settling = self._settling, []
                await self._recorder.record(Outcome([row for _, row in batch]), quiet=True)
                self._scheduler.finish([item for item, _ in batch])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must stop the process loudly, never silently drop a record
            log.exception("writing settled outcomes failed")
            self._scheduler.fail(exc)

    # --- flow control and partitions (the scheduler's) ----------------------------------
    def hold(self) -> None:
        """Let records gather without starting their work (read-ahead for coalescing)."""
        self._scheduler.hold()

    def release(self) -> None:
        self._scheduler.release()

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every submitted record has a durable outcome. False on timeout."""
        return await self._scheduler.wait_idle(timeout)

    async def close(self) -> None:
        await self._scheduler.close(self._settler)

    def revoke(self, partitions: Iterable[Partition]) -> None:
        """Stop the work of revoked partitions before it calls Zoho (see `KeyScheduler.revoke`)."""
        self._scheduler.revoke(partitions)

    def assigned(self, partitions: Iterable[Partition]) -> None:
        self._scheduler.assigned(partitions)

    def in_flight_for(self, partitions: Iterable[Partition]) -> int:
        return self._scheduler.in_flight_for(partitions)

    async def wait_partitions_idle(self, partitions: Iterable[Partition], timeout: float) -> bool:
        return await self._scheduler.wait_partitions_idle(partitions, timeout)


__all__ = ["SyncEngine", "EngineOptions", "InboundRecord", "FatalSyncError", "Applied"]
