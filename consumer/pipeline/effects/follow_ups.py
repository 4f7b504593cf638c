"""Children refused because their parent failed are sent once the parent is synced, without an operator.

A child dead-lettered for its parent's refusal waits (`zoho_waiting_for_parent`); once the parent is
synced (its own change, or resolved for another child) the child goes through the pipeline again from
its current source row, as an explicit re-drive: it was refused for the parent's sake, not its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import structlog

from connectors import clock
from consumer.entities.registry import specs
from consumer.model.events import EntityType, snapshot_read
from consumer.pipeline.durability.recording import OutcomeRecorder
from consumer.pipeline.intake.scheduler import InboundRecord, WorkItem

log = structlog.get_logger(__name__)

#: Sync-log partition of a child handed over again once its parent synced (no Kafka record of its own).
FOLLOW_UP_PARTITION: Final = -2


class FollowUps:
    """Remembers children waiting for a parent, and hands them over when the parent is synced.

    Each handover has its own sync-log position (partition `FOLLOW_UP_PARTITION`, offsets from a
    sequence). A child taken from the waiting list by a process killed before its outcome stays in the
    DLQ for `dlq reprocess`."""

    def __init__(
        self, recorder: OutcomeRecorder, admit: Callable[[WorkItem], None], topic_prefix: str
    ) -> None:
        self._recorder = recorder
        self._admit = admit
        self._topic_prefix = topic_prefix

    async def waiting(self, child: EntityType, child_id: str, parent: EntityType, parent_id: str) -> None:
        store = self._recorder.store
        await self._recorder.retrying(
            lambda: store.await_parent(child, child_id, parent, parent_id), what="waiting-for-parent write"
        )

    async def parent_synced(self, parent: EntityType, parent_id: str) -> None:
        if not _has_children(parent):
            return  # no child waits for an entity nothing depends on: no query
        recorder, store = self._recorder, self._recorder.store
        children = await recorder.retrying(lambda: store.take_waiting(parent, parent_id), what="waiting read")
        for child, child_id in children:
            row = await recorder.read(store.source_row, child, child_id)
            if row is None:
                continue  # the child's row is gone: nothing to send
            offset = await recorder.retrying(store.next_follow_up, what="follow-up position")
            record = InboundRecord(child.topic(self._topic_prefix), FOLLOW_UP_PARTITION, offset, None, None)
            event = snapshot_read(child, child_id, row, read_at_ms=clock.wall_ms())
            log.info(
                "sent again now that its parent is synced", entity=f"{child}:{child_id}", parent=parent_id
            )
            self._admit(WorkItem(record, event, None))


def is_follow_up(record: InboundRecord) -> bool:
    return record.partition == FOLLOW_UP_PARTITION


def _has_children(entity: EntityType) -> bool:
    return any(spec.parent is not None and spec.parent.entity == entity for spec in specs())
