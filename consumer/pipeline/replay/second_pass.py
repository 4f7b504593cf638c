"""A backfill's second pass: what each replayed record needs, decided as it arrives.

What the first pass recorded (superseded records, tombstones) never comes here: the runner moves the
offsets past it (`ReplayRange.read`). Each entity's newest record goes to the pipeline or to the bulk
check (`UnchangedInBulk`); the partial images it is made whole from are folded in and recorded `superseded`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from consumer.entities.registry import spec_of
from consumer.model.events import ChangeEvent, DecodeError, Op
from consumer.model.outcomes import SyncOutcome
from consumer.pipeline.codec.decode import summarize_whole
from consumer.pipeline.decision.row_images import coalesce
from consumer.pipeline.durability.recording import OutcomeRecorder
from consumer.pipeline.intake.scheduler import InboundRecord, Key, KeyScheduler, WorkItem
from consumer.pipeline.replay.bulk_check import BulkReads, UnchangedInBulk
from consumer.pipeline.replay.bulk_record import BulkRecorder
from consumer.pipeline.replay.index import ReplayIndex, Role

if TYPE_CHECKING:
    from consumer.pipeline.intake.engine import SyncEngine

Decoded = tuple[ChangeEvent | None, DecodeError | None]


class SecondPass:
    """A backfill's intake strategy for the engine (`SyncEngine(intake=...)`): the first pass's index, and
    the reads of the bulk check when the replay trusts the entity map (not for a resync or a dry run)."""

    def __init__(self, index: ReplayIndex, bulk_reads: BulkReads | None = None) -> None:
        self.index = index
        self._bulk_reads = bulk_reads

    def open(self, engine: SyncEngine) -> ReplayIntake:
        settled = BulkRecorder(engine.recorder, engine.scheduler)
        unchanged = None
        if self._bulk_reads is not None and not engine.options.resync:
            unchanged = UnchangedInBulk(
                self._bulk_reads,
                engine.policy,
                settle=settled.outcome,
                work=engine.scheduler.enqueue,
                fail=engine.scheduler.fail,
                decode=engine.decoded,
            )
        return ReplayIntake(
            self.index,
            recorder=engine.recorder,
            scheduler=engine.scheduler,
            settled=settled,
            decode=engine.decoded,
            pipeline=engine.admit,
            unchanged=unchanged,
            topic_prefix=engine.options.topic_prefix,
            dlq_topic=engine.options.dlq_topic,
        )


class ReplayIntake:
    """Routes each record of a replay by its role in the index, decoded unless the bulk check may settle it.

    A newest record that is a whole image on its own goes to the bulk check undecoded, with only its
    summary and its parent's id read: its replay memo (`consumer.pipeline.replay.memo`) may settle it, and
    it is decoded only if not. A record the first pass could not read is decoded in full and dead-lettered
    by the pipeline with its reason, as is one whose columns turn out unreadable."""

    def __init__(
        self,
        index: ReplayIndex,
        *,
        recorder: OutcomeRecorder,
        scheduler: KeyScheduler,
        settled: BulkRecorder,
        decode: Callable[[InboundRecord], Decoded],
        pipeline: Callable[[WorkItem], None],
        unchanged: UnchangedInBulk | None,
        topic_prefix: str,
        dlq_topic: str,
    ) -> None:
        self._index = index
        self._recorder = recorder
        self._scheduler = scheduler
        self._settled = settled
        self._decode = decode
        self._pipeline = pipeline  # admits and queues a record under its own key
        self._unchanged = unchanged
        self._topic_prefix = topic_prefix
        self._dlq_topic = dlq_topic
        self._images: dict[Key, ChangeEvent] = {}  # images a newest record is made whole from

    def tasks(self) -> list[asyncio.Task[None] | None]:
        """The bulk writes and the bulk check still under way, for the engine's close."""
        return [*self._settled.tasks, self._unchanged.task if self._unchanged else None]

    def submit(self, record: InboundRecord, event: ChangeEvent | None = None) -> None:
        if record.topic == self._dlq_topic:  # a dead letter re-driven: the index knows nothing of it
            self._live(record, event)
            return
        if event is None and self._unchanged is not None and self._undecoded(record):
            return
        if event is None:
            event, error = self._decode(record)
            if event is None:
                self._pipeline(WorkItem(record, None, error))  # dead-lettered with its reason
                return
        if event.op is Op.TOMBSTONE:  # one only its value tells (e.g. JSON null)
            self._settle(record, event, SyncOutcome.SKIPPED, operation="none", error="tombstone")
            return
        key = (event.entity_type.value, event.entity_id)
        role, newest = self._index.role(key, record.topic, record.partition, record.offset)
        if role is Role.SUPERSEDED:  # a record given with its change, which the first pass did not record
            self._settle(record, event, SyncOutcome.SUPERSEDED, error=f"newer event at offset {newest}")
        elif role is Role.MERGE:
            image = self._images.get(key)
            self._images[key] = event if image is None else coalesce([image, event])
            self._settle(record, event, SyncOutcome.SUPERSEDED, error=f"newer event at offset {newest}")
        else:
            self._apply(key, record, event, indexed=newest is not None)

    def _live(self, record: InboundRecord, event: ChangeEvent | None) -> None:
        error: DecodeError | None = None
        if event is None:
            event, error = self._decode(record)
        self._pipeline(WorkItem(record, event, error))

    def _undecoded(self, record: InboundRecord) -> bool:
        """Hand an entity's newest record to the bulk check undecoded when it is a whole image on its
        own (the common shape, not a delete, no image before it); False leaves it to `submit`."""
        try:
            read = summarize_whole(record.topic, record.key, record.value, topic_prefix=self._topic_prefix)
        except (DecodeError, LookupError):
            return False
        if read is None:
            return False
        summary, image = read
        key = (summary.entity_type.value, summary.entity_id)
        where = (record.topic, record.partition, record.offset)
        if key in self._images or not self._index.take_whole_newest(key, *where):
            return False
        assert self._unchanged is not None
        spec = spec_of(summary.entity_type)
        parent_id = spec.parent_id(image)
        parent = (spec.parent.entity.value, parent_id) if spec.parent is not None and parent_id else None
        item = WorkItem(record, None, None)
        self._scheduler.admit(item)
        self._unchanged.add_undecoded(key, item, summary, parent)
        return True

    def _apply(self, key: Key, record: InboundRecord, event: ChangeEvent, *, indexed: bool) -> None:
        """The entity's newest record, made whole from the images before it."""
        image = self._images.pop(key, None)
        item = WorkItem(record, event if image is None else coalesce([image, event]), None)
        if self._unchanged is not None and indexed:
            self._scheduler.admit(item)
            self._unchanged.add(key, item)
        else:  # a record the first pass never saw goes through every check of the pipeline
            self._pipeline(item)

    def _settle(self, record: InboundRecord, event: ChangeEvent, outcome: SyncOutcome, **fields: Any) -> None:
        """Record an outcome decided without any work; such rows are written in bulk."""
        item = WorkItem(record, event, None)
        self._scheduler.admit(item)
        self._settled.row(item, self._recorder.row(item, outcome, **fields))
