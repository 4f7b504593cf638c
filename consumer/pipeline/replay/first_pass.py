"""A backfill's first pass: read the range once, index each entity's newest record, and record on the way
what is already decided.

Records are only summarized (entity, op, source position, whole image or not), not decoded. A record
superseded for good (`ReplayIndex.add`) and a tombstone are recorded here, in bulk, while the range is
read: their sync-log rows are durable before the second pass starts, so that pass only moves the
offsets past them, without reading them again. Their offsets are still committed by the second pass,
after these rows are written, as every other offset is.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final

from aiokafka import ConsumerRecord

from consumer.model.events import DecodeError, Op
from consumer.model.outcomes import SyncOutcome
from consumer.pipeline.codec.decode import summarize_change
from consumer.pipeline.durability.recording import Outcome, OutcomeRecorder
from consumer.pipeline.durability.store import OutcomeRow
from consumer.pipeline.intake.runner import RunOptions, kafka_consumer
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
    rows = _RowWriter(recorder)
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
            await rows.write_out()
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        await rows.finish()
    finally:
        rows.cancel()
        await consumer.stop()
    return index, bounds


def _read(
    index: ReplayIndex,
    m: ConsumerRecord[bytes, bytes],
    topic_prefix: str,
    recorder: OutcomeRecorder,
    rows: _RowWriter,
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


class _RowWriter:
    """Writes the first pass's rows in the background, one outcome per poll, a bounded number waiting."""

    def __init__(self, recorder: OutcomeRecorder) -> None:
        self._recorder = recorder
        self._rows: list[OutcomeRow] = []
        self._writes: deque[tuple[asyncio.Task[None], int]] = deque()
        self._waiting = 0

    def add(self, row: OutcomeRow) -> None:
        self._rows.append(row)

    async def write_out(self) -> None:
        """Hand the rows gathered so far to the store; wait while too many are not yet durable."""
        if self._rows:
            rows, self._rows = self._rows, []
            self._writes.append((asyncio.create_task(self._write(rows), name="replay:first-pass"), len(rows)))
            self._waiting += len(rows)
        while self._waiting > MAX_WAITING_ROWS:
            task, count = self._writes.popleft()
            await task
            self._waiting -= count

    async def finish(self) -> None:
        await self.write_out()
        while self._writes:
            task, _ = self._writes.popleft()
            await task  # a failed write raises here: the backfill stops before its second pass
        self._waiting = 0

    def cancel(self) -> None:
        for task, _ in self._writes:
            task.cancel()

    async def _write(self, rows: list[OutcomeRow]) -> None:
        await self._recorder.record(Outcome(rows), bulk=True)
        self._recorder.count(rows)
