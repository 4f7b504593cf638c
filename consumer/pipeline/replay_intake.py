"""A backfill's second pass: what each replayed record needs, decided as it arrives.

The first pass recorded every record it saw superseded, and every tombstone; the runner moves the
offsets past those (`SyncEngine.recorded_before`) without handing them here. What remains is each entity's
newest record and the partial images it is made whole from: they are decoded and go on, the newest to
the pipeline or to the bulk check of entities Zoho already holds (`UnchangedInBulk`), the images folded
into it and recorded `superseded`. A record the first pass could not read is decoded in full and
dead-lettered by the pipeline with its reason, as is one whose columns turn out unreadable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from consumer.pipeline.events import ChangeEvent, DecodeError, Op
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
        recorder: OutcomeRecorder,
        scheduler: KeyScheduler,
        settled: BulkSettler,
        decode: Callable[[InboundRecord], Decoded],
        pipeline: Callable[[WorkItem], None],
        unchanged: UnchangedInBulk | None,
    ) -> None:
        self._index = index
        self._recorder = recorder
        self._scheduler = scheduler
        self._settled = settled
        self._decode = decode
        self._pipeline = pipeline  # admits and queues a record under its own key
        self._unchanged = unchanged
        self._images: dict[Key, ChangeEvent] = {}  # images a newest record is made whole from

    def submit(self, record: InboundRecord, event: ChangeEvent | None = None) -> None:
        if event is None:
            event, error = self._decode(record)
            if event is None:
                self._pipeline(WorkItem(record, None, error))  # dead-lettered with its reason
                return
        if event.op is Op.TOMBSTONE:  # one only its value tells (e.g. JSON null)
            self._settle(record, event, "skipped", operation="none", error="tombstone")
            return
        key = (event.entity_type.value, event.entity_id)
        role, newest = self._index.role(key, record.topic, record.partition, record.offset)
        if role is Role.SUPERSEDED:  # a record given with its change, which the first pass did not record
            self._settle(record, event, "superseded", error=f"newer event at offset {newest}")
        elif role is Role.MERGE:
            image = self._images.get(key)
            self._images[key] = event if image is None else coalesce([image, event])
            self._settle(record, event, "superseded", error=f"newer event at offset {newest}")
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

    def _settle(self, record: InboundRecord, event: ChangeEvent, outcome: str, **fields: Any) -> None:
        """Record an outcome decided without any work; such rows are written in bulk."""
        item = WorkItem(record, event, None)
        self._scheduler.admit(item)
        self._settled.row(item, self._recorder.row(item, outcome, **fields))
