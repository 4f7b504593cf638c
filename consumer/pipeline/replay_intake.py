"""A backfill's second pass: what each replayed record needs, decided as it arrives.

The first pass (`ReplayIndex`) named each entity's newest record and the partial images it is made whole
from. Those are decoded and go on: the newest to the pipeline, or to the bulk check of entities Zoho
already holds (`UnchangedInBulk`). Every other record gets its outcome at once, without a call and
without decoding: a superseded record or a tombstone is read by its key alone, so its sync-log row names
the entity but no source position. A record the first pass could not read is decoded in full and
dead-lettered by the pipeline with its reason, as is one whose columns turn out unreadable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from consumer.entities.registry import entity_for_topic
from consumer.pipeline.decode import key_id_of, summarize_change
from consumer.pipeline.events import ChangeEvent, ChangeSummary, DecodeError, EntityType, Op
from consumer.pipeline.recording import OutcomeRecorder
from consumer.pipeline.replay_index import ReplayIndex, Role
from consumer.pipeline.replay_unchanged import UnchangedInBulk
from consumer.pipeline.row_images import coalesce
from consumer.pipeline.scheduler import InboundRecord, Key, KeyScheduler, WorkItem
from consumer.pipeline.settling import BulkSettler

Decoded = tuple[ChangeEvent | None, DecodeError | None]


class ReplayIntake:
    """Routes each record of a replay by its role in the index (see the module docstring)."""

    def __init__(
        self,
        index: ReplayIndex,
        *,
        topic_prefix: str,
        recorder: OutcomeRecorder,
        scheduler: KeyScheduler,
        settled: BulkSettler,
        decode: Callable[[InboundRecord], Decoded],
        pipeline: Callable[[WorkItem], None],
        unchanged: UnchangedInBulk | None,
    ) -> None:
        self._index = index
        self._prefix = topic_prefix
        self._recorder = recorder
        self._scheduler = scheduler
        self._settled = settled
        self._decode = decode
        self._pipeline = pipeline  # admits and queues a record under its own key
        self._unchanged = unchanged
        self._images: dict[Key, ChangeEvent] = {}  # images a newest record is made whole from

    def submit(self, record: InboundRecord, event: ChangeEvent | None = None) -> None:
        named = None
        if event is None and not self._index.needs_full_read(record.topic, record.partition, record.offset):
            named = self._named_by_key(record)
        if named is None:
            change = ChangeSummary.of(event) if event is not None else self._summarized(record)
            if change is None:
                self._pipeline(WorkItem(record, *self._decode(record)))  # dead-lettered with its reason
                return
            named = _Named(change.entity_type, change.entity_id, change.op is Op.TOMBSTONE, change)
        self._route(record, named, event)

    def _named_by_key(self, record: InboundRecord) -> _Named | None:
        """The entity of a record from its key alone; None when only its value tells."""
        try:
            entity_id = key_id_of(record.key)
            entity = entity_for_topic(record.topic, topic_prefix=self._prefix)
        except DecodeError:
            return None
        return None if entity_id is None else _Named(entity, entity_id, record.value is None, None)

    def _summarized(self, record: InboundRecord) -> ChangeSummary | None:
        try:
            return summarize_change(record.topic, record.key, record.value, topic_prefix=self._prefix)
        except DecodeError:
            return None

    def _route(self, record: InboundRecord, named: _Named, event: ChangeEvent | None) -> None:
        if named.tombstone:
            self._settle(record, named, "skipped", operation="none", error="tombstone")
            return
        key = (named.entity.value, named.entity_id)
        role, newest = self._index.role(key, record.topic, record.partition, record.offset)
        if role is Role.SUPERSEDED:
            self._settle(record, named, "superseded", error=f"newer event at offset {newest}")
            return
        error = None
        if event is None:
            event, error = self._decode(record)
        if event is None:  # a column the first pass does not read is unreadable
            self._pipeline(WorkItem(record, None, error))
        elif role is Role.MERGE:
            image = self._images.get(key)
            self._images[key] = event if image is None else coalesce([image, event])
            self._settle(record, named, "superseded", error=f"newer event at offset {newest}")
        else:
            self._apply(key, record, event, indexed=newest is not None)

    def _apply(self, key: Key, record: InboundRecord, event: ChangeEvent, *, indexed: bool) -> None:
        """The entity's newest record, made whole from the images before it."""
        image = self._images.pop(key, None)
        item = WorkItem(record, event if image is None else coalesce([image, event]), None)
        if self._unchanged is not None and indexed:
            self._scheduler.admit(item)
            self._unchanged.add(key, item)
        else:  # a record the first pass never saw goes through every check of the pipeline
            self._pipeline(item)

    def _settle(self, record: InboundRecord, named: _Named, outcome: str, **fields: Any) -> None:
        """Record an outcome decided without any work; such rows are written in bulk."""
        item = WorkItem(record, None, None)
        self._scheduler.admit(item)
        change = named.change
        if change is not None:
            fields.update(source_lsn=change.lsn, source_ts_ms=change.source_ts_ms)
        self._settled.row(
            item, self._recorder.named_row(record, named.entity, named.entity_id, outcome, **fields)
        )


class _Named:
    """A replayed record's entity, and its summary when the value had to be read."""

    __slots__ = ("entity", "entity_id", "tombstone", "change")

    def __init__(
        self, entity: EntityType, entity_id: str, tombstone: bool, change: ChangeSummary | None
    ) -> None:
        self.entity, self.entity_id, self.tombstone, self.change = entity, entity_id, tombstone, change
