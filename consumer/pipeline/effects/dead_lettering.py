"""Dead-lettering a record: published to the DLQ once, recorded once, parked after its reprocess attempts.

A record redelivered after a crash finds its `dead_lettered` row and is not published again; one re-driven
that fails `reprocess_max_attempts` times is recorded `failed` (parked), not sent round the DLQ for ever.
Publishing is a send like a Zoho call: withdrawn before it by a revoke, never cancelled once it started.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import structlog

from connectors.zoho.send_guard import CURRENT_GUARD
from consumer.model.call_errors import CallError
from consumer.model.events import ChangeEvent
from consumer.model.outcomes import SyncOutcome
from consumer.pipeline.codec.encode import encode_event
from consumer.pipeline.durability.recording import Outcome, OutcomeRecorder
from consumer.pipeline.durability.rows import EntityUpdate, OutcomeRow
from consumer.pipeline.effects.dead_letter_topic import (
    H_OFFSET,
    H_PARTITION,
    H_REPROCESS_COUNT,
    H_TOPIC,
    DeadLetter,
    DeadLetterPublisher,
    header_int,
    parse_headers,
)
from consumer.pipeline.effects.write_back import WriteBack
from consumer.pipeline.intake.scheduler import WorkItem

log = structlog.get_logger(__name__)

#: Refusals a replay of the same record meets again whatever its group: undecodable bytes (`decode`) and a
#: parent that does not exist in the source (`source`). README, Dead letters: one letter per refused record.
REFUSED_AGAIN_ON_REPLAY: Final = frozenset({"decode", "source"})


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a record goes to the DLQ, in the words and fields its dead letter and sync-log row carry."""

    reason: str
    # decode (undecodable bytes), mapping (no payload can be made), permanent (Zoho refused it), exhausted
    # (Zoho unavailable or the call in doubt), source (a parent missing in the source), internal (a bug)
    kind: str
    exc_class: str
    attempts: int = 0
    http_status: int | None = None

    @classmethod
    def of_error(cls, reason: str, exc: Exception) -> Refusal:
        """A refusal by Zoho (or of a parent Zoho refused before): `exhausted` when the client's retries
        ran out or the call is in doubt, else `permanent`; named by the client's class it was mapped from."""
        if not isinstance(exc, CallError):
            return cls(reason, "permanent", type(exc).__name__)
        return cls(reason, exc.kind, exc.exception_class, attempts=exc.attempts, http_status=exc.http_status)

    def letter(
        self,
        topic: str,
        partition: int,
        offset: int,
        content: tuple[bytes | None, bytes | None],
        reprocess_count: int = 0,
    ) -> DeadLetter:
        """The dead letter of a record (`content`: its key and value) refused for this reason."""
        key, value = content
        return DeadLetter(
            topic=topic,
            partition=partition,
            offset=offset,
            key=key,
            value=value,
            reason=self.reason,
            kind=self.kind,
            exception_class=self.exc_class,
            attempts=self.attempts,
            http_status=self.http_status,
            reprocess_count=reprocess_count,
        )


def change_as_record(event: ChangeEvent, topic_prefix: str) -> tuple[bytes, bytes]:
    """A change as Debezium would have sent it (a snapshot read of its row), so `dlq reprocess` can re-drive a
    change that reached the pipeline without Kafka bytes."""
    assert event.row is not None
    return encode_event(
        event.entity_type, "r", event.row, key_id=event.entity_id, topic_prefix=topic_prefix, snapshot="true"
    )


@dataclass(frozen=True)
class DeadLetterDesk:
    """Publishes dead letters and records their outcomes."""

    publisher: DeadLetterPublisher
    recorder: OutcomeRecorder
    dlq_topic: str
    max_reprocess: int  # reprocess attempts before a re-driven record is parked (`failed`)
    topic_prefix: str

    async def dead_letter(
        self,
        item: WorkItem,
        refusal: Refusal,
        *,
        prior: list[OutcomeRow] | None = None,
        write_back: bool = False,
        entity: EntityUpdate | None = None,
    ) -> None:
        """Publish the record to the DLQ and record it; `entity` remembers the refused state."""
        rec, recorder = item.record, self.recorder
        if await recorder.read(
            recorder.store.has_outcome, recorder.consumer_group, rec.topic, rec.partition, rec.offset
        ):
            # Redelivered after a crash: dead-lettered before (publish, then row); never publish it twice.
            return
        event = item.event
        wb = None
        if write_back and event is not None:
            wb = WriteBack(event.entity_type, event.entity_id, None, "failed", called=False)
        if rec.topic != self.dlq_topic:
            # A replay (another group) re-reading a record whose letter is already in the DLQ records it and
            # publishes no second copy: `dlq reprocess` re-drives the one letter against the row as it is
            # then, whatever refused it. Undecodable bytes stay undecodable and a parent still missing in the
            # source is missing for a replay too (nothing of theirs to remember); a refusal by Zoho (or Zoho
            # unavailable again: simulation seed 3980, a backfill beside the live sync) still remembers the
            # refused state and writes `failed` back, as its letter would have.
            earlier = await recorder.read(
                recorder.store.dead_lettered_by, rec.topic, rec.partition, rec.offset
            )
            if earlier is not None:
                recorder.metrics.outcome(SyncOutcome.SKIPPED)
                error = f"already in the dead-letter topic (dead-lettered by {earlier}): {refusal.reason}"
                row = self._row(item, SyncOutcome.SKIPPED, refusal, error)
                if refusal.kind in REFUSED_AGAIN_ON_REPLAY:
                    entity, wb = None, None
                await recorder.record(Outcome([*(prior or []), row], entity=entity, write_back=wb))
                return
        headers = parse_headers(rec.headers)
        reprocess_count = header_int(headers, H_REPROCESS_COUNT, 0)
        if rec.topic == self.dlq_topic:
            reprocess_count += 1
            if reprocess_count >= self.max_reprocess:
                # Parked: recorded as failed instead of going round the DLQ forever.
                recorder.metrics.outcome(SyncOutcome.FAILED)
                log.warning("parked after reprocess attempts", offset=rec.offset, reason=refusal.reason)
                error = f"parked after {reprocess_count} reprocess attempts: {refusal.reason}"
                row = self._row(item, SyncOutcome.FAILED, refusal, error)
                await recorder.record(Outcome([*(prior or []), row], entity=entity))
                return
        await self.publish(
            refusal.letter(
                headers.get(H_TOPIC) or rec.topic,
                header_int(headers, H_PARTITION, rec.partition),
                header_int(headers, H_OFFSET, rec.offset),
                self._content(item),
                reprocess_count,
            )
        )
        recorder.metrics.outcome(SyncOutcome.DEAD_LETTERED)
        row = self._row(item, SyncOutcome.DEAD_LETTERED, refusal, refusal.reason)
        await recorder.record(Outcome([*(prior or []), row], entity=entity, write_back=wb))

    def _content(self, item: WorkItem) -> tuple[bytes | None, bytes | None]:
        """The record as it came, or, for a change a job handed over decoded (reconcile's repair reads the
        source rows itself), the change as Debezium would have sent it, so `dlq reprocess` can re-drive it."""
        rec, event = item.record, item.event
        if rec.value is not None or event is None or event.row is None:
            return rec.key, rec.value
        return change_as_record(event, self.topic_prefix)

    async def publish_change(self, event: ChangeEvent, refusal: Refusal) -> None:
        """Dead-letter a change that is no Kafka record of its own (a parent Zoho refused while a child
        needed it): published as its entity's record, with no source partition or offset."""
        content = change_as_record(event, self.topic_prefix)
        await self.publish(refusal.letter(event.entity_type.topic(self.topic_prefix), -1, -1, content))

    async def publish(self, letter: DeadLetter) -> None:
        """Produce a dead letter. It is a send like a Zoho call: withdrawn before it, never cancelled once
        it started (a cancelled produce may still reach the topic, and the new owner would publish again)."""
        guard = CURRENT_GUARD.get()
        if guard is not None:
            guard.before_send()  # raises SendRevoked when the record's partition was revoked
        await self.recorder.retrying(lambda: self.publisher.publish(letter), what="dead-letter produce")

    def _row(self, item: WorkItem, outcome: SyncOutcome, refusal: Refusal, error: str) -> OutcomeRow:
        return self.recorder.row(
            item,
            outcome,
            error=error,
            attempts=refusal.attempts,
            http_status=refusal.http_status,
            operation=refusal.kind,
        )
