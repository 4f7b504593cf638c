"""The sync engine: records in, one durable sync-log outcome per record out, in key order.

It wires the three parts a newcomer reads in turn: the `KeyScheduler` (one worker per entity key, the
Parallel Consumer model), the `EventPolicy` (what a key's batch becomes, step by step) and the
`OutcomeRecorder` (durable rows). Records are decoded on arrival; `on_done` (which advances the
offset watermark) is called only after a record's row is durable. A backfill's replay only moves past
the records its first pass already recorded (`ReplayIntake`); the newest ones Zoho already holds are
settled in bulk too (`UnchangedInBulk`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

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
from consumer.pipeline.replay.bulk_check import BulkReads, UnchangedInBulk
from consumer.pipeline.replay.bulk_settle import BulkSettler
from consumer.pipeline.replay.index import ReplayIndex
from consumer.pipeline.replay.second_pass import ReplayIntake
from consumer.settings import setting_default

log = structlog.get_logger("zoho_cdc.engine")


@dataclass
class EngineOptions:
    consumer_group: str
    topic_prefix: str
    mapping: MappingConfig = field(default_factory=MappingConfig)
    # The settings besides the mapping that change what is sent (`replay_memo.payload_settings`).
    payload_settings: tuple[tuple[str, object], ...] = ()
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
        unchanged_reads: BulkReads | None = None,
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
            options.mapping,
            options.resync,
            options.ignore_stale,
            options.dlq_topic,
            options.topic_prefix,
            options.payload_settings,
        )
        self._policy = EventPolicy(policy_options, self._recorder, desk, applier, self._scheduler, listing)
        self._policy.follow_ups = FollowUps(self._recorder, self._admitted, options.topic_prefix)
        # A backfill's first pass (`ReplayIndex`): only each entity's newest record is worked on; the
        # newest ones Zoho already holds are checked in bulk when the replay trusts the entity map.
        self._settled = BulkSettler(self._recorder, self._scheduler)
        self._unchanged = None
        if replay is not None and unchanged_reads is not None and not options.resync:
            self._unchanged = UnchangedInBulk(
                unchanged_reads,
                self._policy,
                settle=self._settled.outcome,
                work=self._scheduler.enqueue,
                fail=self._scheduler.fail,
                decode=self._decoded,
            )
        self._replay = None
        if replay is not None:
            self._replay = ReplayIntake(
                replay,
                recorder=self._recorder,
                scheduler=self._scheduler,
                settled=self._settled,
                decode=self._decoded,
                pipeline=self._admitted,
                unchanged=self._unchanged,
                topic_prefix=options.topic_prefix,
            )
        # A replay's first pass already recorded most records: the runner moves past them unread.
        self.recorded_before = replay.recorded_in_first_pass if replay is not None else None

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
        if self._replay is not None and record.topic != self.options.dlq_topic:
            self._replay.submit(record, event)
            return
        error: DecodeError | None = None
        if event is None:
            event, error = self._decoded(record)
        self._admitted(WorkItem(record, event, error))

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

    def _admitted(self, item: WorkItem) -> None:
        self._scheduler.admit(item)
        self._scheduler.enqueue(key_of(item), item)

    # --- flow control and partitions (the scheduler's) ----------------------------------
    def hold(self) -> None:
        """Let records gather without starting their work (read-ahead for coalescing)."""
        self._scheduler.hold()

    def release(self) -> None:
        self._scheduler.release()

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every submitted record has a durable outcome. False on timeout."""
        return await self._scheduler.wait_idle(timeout)

    async def wait_in_flight(self, at_most: int, timeout: float) -> bool:
        """Wait until at most `at_most` records are in flight (back-pressure eased); False on timeout."""
        return await self._scheduler.wait_in_flight(at_most, timeout)

    async def close(self) -> None:
        await self._scheduler.close(*self._settled.tasks, self._unchanged.task if self._unchanged else None)

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
