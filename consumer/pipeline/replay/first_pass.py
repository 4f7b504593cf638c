"""A backfill's first pass: read the range once, index each entity's newest record, record what is decided.

Records are only summarized (entity, op, source position, whole image or not), not decoded. Records
superseded for good (`ReplayIndex.add`) and tombstones are recorded here, in bulk, as the range is read:
durable before the second pass, which moves past them unread and commits their offsets as every other.
"""

from __future__ import annotations

from typing import Final

from aiokafka import ConsumerRecord

from consumer.model.events import DecodeError, Op
from consumer.model.outcomes import SyncOutcome
from consumer.pipeline.codec.decode import summarize_change
from consumer.pipeline.durability.gathered import Gathering
from consumer.pipeline.durability.recording import Outcome, OutcomeRecorder
from consumer.pipeline.durability.rows import OutcomeRow
from consumer.pipeline.intake.kafka_clients import kafka_consumer
from consumer.pipeline.intake.runner import RunOptions
from consumer.pipeline.replay.index import ReplayIndex
from consumer.pipeline.replay.range import Bounds, ReplayRange

#: Rows handed to the store and not yet durable; reading waits beyond this, so memory stays bounded.
MAX_WAITING_ROWS: Final = 20_000


async def first_pass(
    options: RunOptions, replay_range: ReplayRange, topic_prefix: str, recorder: OutcomeRecorder
) -> tuple[ReplayIndex, Bounds]:
    """Read the run's range once, without a group; index it and record what it decides.

    Returns the index and the (start, end) offsets read, which the second pass reads again exactly.
    Every row recorded here is durable when this returns."""
    index = ReplayIndex()
    # One outcome per poll, written in the background, a bounded number waiting.
    rows: Gathering[OutcomeRow] = Gathering(
        lambda batch: _write_rows(recorder, batch), pause=None, overlap=True, name="replay:first-pass"
    )
    consumer = kafka_consumer(options.bootstrap_servers, None)  # type: ignore[arg-type]
    await consumer.start()
    try:
        ends = await replay_range.assign(consumer, options.topics, options.bootstrap_servers)
        bounds = {tp: (await consumer.position(tp), end) for tp, end in ends.items()}
        pending = {tp for tp, (start, end) in bounds.items() if start < end}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=200, max_records=options.max_poll_records * 4)
            for tp, messages in batch.items():
                end = ends[tp]
                for m in messages:
                    if m.offset >= end:
                        break
                    _read(index, m, topic_prefix, recorder, rows)
            rows.hand_over()
            await rows.below(MAX_WAITING_ROWS)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        await rows.finish()  # a failed write raises here: the backfill stops before its second pass
    finally:
        rows.cancel()
        await consumer.stop()
    return index, bounds


def _read(
    index: ReplayIndex,
    m: ConsumerRecord[bytes, bytes],
    topic_prefix: str,
    recorder: OutcomeRecorder,
    rows: Gathering[OutcomeRow],
) -> None:
    try:
        change = summarize_change(m.topic, m.key, m.value, topic_prefix=topic_prefix)
    except DecodeError:
        index.read_in_full(m.topic, m.partition, m.offset)  # dead-lettered by the second pass
        return
    if change.op is Op.TOMBSTONE:
        if m.value is not None:
            index.read_in_full(m.topic, m.partition, m.offset)  # a tombstone only its value tells
        else:
            row = recorder.position_row(
                m.topic, m.partition, m.offset, change.entity_type, change.entity_id, SyncOutcome.SKIPPED,
                operation="none", error="tombstone",
            )  # fmt: skip
            rows.add(row)
    for old in index.add(change, m.topic, m.partition, m.offset):
        rows.add(
            recorder.position_row(
                old.topic,
                old.partition,
                old.offset,
                change.entity_type,
                change.entity_id,
                SyncOutcome.SUPERSEDED,
                error=f"newer event at offset {old.by_offset}",
                source_lsn=old.lsn,
                source_ts_ms=old.source_ts_ms,
            )
        )


async def _write_rows(recorder: OutcomeRecorder, rows: list[OutcomeRow]) -> None:
    await recorder.record(Outcome(rows), bulk=True)
    recorder.count(rows)
