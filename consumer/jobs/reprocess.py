"""Dead-letter reprocessing and listing.

Reprocessing re-drives DLQ records through the same pipeline under its own consumer group on the
DLQ topic (so running it twice sends nothing twice); the source's newest state wins (stale skip),
a record that fails again goes back to the DLQ with its reprocess count raised, and after
REPROCESS_MAX_ATTEMPTS it is parked with outcome `failed` instead of looping.

Letters are named by partition and offset (`P:N`). A letter the run does not select stays ahead of the
group's position (passing it would lose it for a later `--all`); the letters re-driven beyond it are known
by their sync-log rows, so a later run passes them without a call. Copies of one letter (see
`dead_letters.letter_id`) are re-driven once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from connectors import clock
from consumer.jobs.backfill import BackfillResult
from consumer.jobs.dry_run import DryRunApplier, DryRunDeadLetters, DryRunStore, PlannedCalls
from consumer.pipeline.effects.dead_letter_topic import (
    H_ATTEMPTS,
    H_FIRST_FAILED_AT,
    H_OFFSET,
    H_REASON,
    H_REPROCESS_COUNT,
    H_TOPIC,
    header_int,
    letter_id,
    parse_headers,
)
from consumer.pipeline.intake.end_offsets import end_offsets as true_end_offsets
from consumer.pipeline.intake.end_offsets import topic_partitions
from consumer.pipeline.intake.kafka_clients import kafka_consumer
from consumer.pipeline.replay.range import ReplayRange
from consumer.service.wiring import EngineParts, SyncSession
from consumer.service.worker import Worker

log = structlog.get_logger(__name__)

Position = tuple[int, int]  # (DLQ partition, offset)


class DeadLetterNotFound(ValueError):
    """Raised when `--offset` names no dead letter, or a plain offset that more than one partition holds."""


def parse_position(text: str) -> tuple[int | None, int]:
    """`P:N` (partition P, offset N) or a plain `N` (any partition: resolved by `resolve_positions`)."""
    partition, _, offset = text.strip().rpartition(":")
    try:
        return (int(partition) if partition else None), int(offset)
    except ValueError:
        raise DeadLetterNotFound(
            f"--offset {text!r}: give PARTITION:OFFSET as `zoho-cdc dlq list` shows it (or a plain OFFSET)"
        ) from None


@dataclass(frozen=True)
class DeadLetterEntry:
    dlq_offset: int
    dlq_partition: int
    source: str
    entity_id: str | None
    reason: str
    attempts: int
    reprocess_count: int
    age_s: float | None
    copy_of: str | None = None  # `P:N` of the first copy of this letter (published again after a crash)

    @property
    def position(self) -> str:
        return f"{self.dlq_partition}:{self.dlq_offset}"


def reprocess_group(session: SyncSession) -> str:
    return f"{session.settings.consumer_group}.dlq-reprocess"


async def list_dead_letters(bootstrap: str, topic: str, limit: int = 50) -> list[DeadLetterEntry]:
    consumer = kafka_consumer(bootstrap, None)
    await consumer.start()
    try:
        parts = await topic_partitions(consumer, [topic])
        if not parts:
            return []
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await true_end_offsets(bootstrap, parts)
        out: list[DeadLetterEntry] = []
        first_copies: dict[str, str] = {}
        now_ms = clock.wall() * 1000
        while any([await consumer.position(tp) < ends[tp] for tp in parts]):
            batch = await consumer.getmany(timeout_ms=500)
            for tp, messages in batch.items():
                for m in messages:
                    if m.offset >= ends[tp]:
                        continue
                    h = parse_headers(m.headers)
                    entity_id = None
                    try:
                        key = json.loads(m.key) if m.key else None
                        key = key.get("payload", key) if isinstance(key, dict) else key
                        entity_id = key.get("id") if isinstance(key, dict) else None
                    except (ValueError, AttributeError):
                        pass
                    first = h.get(H_FIRST_FAILED_AT)
                    lid = letter_id(h)
                    copy_of = first_copies.get(lid) if lid is not None else None
                    if lid is not None and copy_of is None:
                        first_copies[lid] = f"{m.partition}:{m.offset}"
                    out.append(
                        DeadLetterEntry(
                            dlq_offset=m.offset,
                            dlq_partition=m.partition,
                            source=f"{h.get(H_TOPIC, '?')}@{h.get(H_OFFSET, '?')}",
                            entity_id=entity_id,
                            reason=h.get(H_REASON, ""),
                            attempts=header_int(h, H_ATTEMPTS, 0),
                            reprocess_count=header_int(h, H_REPROCESS_COUNT, 0),
                            age_s=(now_ms - int(first)) / 1000 if first and first.isdigit() else None,
                            copy_of=copy_of,
                        )
                    )
        return out[-limit:]
    finally:
        await consumer.stop()


async def resolve_positions(bootstrap: str, topic: str, wanted: set[tuple[int | None, int]]) -> set[Position]:
    """The DLQ positions `--offset` names; a plain offset must be held by exactly one partition."""
    consumer = kafka_consumer(bootstrap, None)
    await consumer.start()
    try:
        parts = await topic_partitions(consumer, [topic])
        begins = await consumer.beginning_offsets(parts) if parts else {}
    finally:
        await consumer.stop()
    ends = await true_end_offsets(bootstrap, parts) if parts else {}
    out: set[Position] = set()
    for partition, offset in wanted:
        if partition is not None:
            out.add((partition, offset))
            continue
        holding = sorted(tp.partition for tp in parts if begins[tp] <= offset < ends[tp])
        if len(holding) != 1:
            where = f"in partitions {', '.join(map(str, holding))}" if holding else "in no partition"
            raise DeadLetterNotFound(
                f"offset {offset} of {topic} is {where}: give --offset PARTITION:{offset}"
                " (see `zoho-cdc dlq list`)"
            )
        out.add((holding[0], offset))
    return out


class _Selection:
    """Which dead letters a reprocess run re-drives, and which it passes as handled before."""

    def __init__(self, positions: set[Position] | None, since_ms: int | None, done: set[Position]) -> None:
        self._positions = positions
        self._since_ms = since_ms
        self._done = done  # letters with a sync-log row of the reprocess group: re-driven by an earlier run
        self._redriven: set[str] = set()  # letter ids this run re-drives
        self.copies = 0

    def handled_before(self, record: Any) -> bool:
        if (record.partition, record.offset) in self._done:
            return True
        lid = letter_id(parse_headers(record.headers))
        if lid is None or lid not in self._redriven:
            return False
        self.copies += 1
        log.info(
            "a second copy of a dead letter is passed", dlq=f"{record.partition}:{record.offset}", letter=lid
        )
        return True

    def accept(self, record: Any) -> bool:
        if self._positions is not None and (record.partition, record.offset) not in self._positions:
            return False
        if self._since_ms is not None and record.timestamp < self._since_ms:
            return False
        lid = letter_id(parse_headers(record.headers))
        if lid is not None:
            self._redriven.add(lid)
        return True


async def reprocess(
    session: SyncSession,
    *,
    offsets: set[tuple[int | None, int]] | set[int] | None = None,
    since: datetime | None = None,
    dry_run: bool = False,
) -> BackfillResult:
    """Re-drive dead letters: all not yet re-driven, or those at `offsets` ((partition, offset), or a plain
    offset when only one partition holds it) and/or written since `since`."""
    group = reprocess_group(session)
    topic = session.settings.dlq_topic
    since_ms = int(since.timestamp() * 1000) if since else None
    positions = None
    if offsets:
        wanted = {o if isinstance(o, tuple) else (None, o) for o in offsets}
        positions = await resolve_positions(session.settings.kafka_bootstrap_servers, topic, wanted)
    # the DLQ positions the reprocess group has a sync-log row for
    selection = _Selection(positions, since_ms, await session.store.logged_positions(group, topic))
    options = session.run_options(group, topics=(topic,))
    # The range from the group's committed position to the end offsets captured now.
    letters = ReplayRange(accept=selection.accept, handled_before=selection.handled_before)
    planned = PlannedCalls() if dry_run else None
    before = dict(session.metrics.tally)
    attempts_before = session.metrics.attempts
    if planned is not None:
        parts = EngineParts(
            applier=DryRunApplier(planned),
            store=DryRunStore(session.store, planned),
            dead_letters=DryRunDeadLetters(planned, session.settings.dlq_topic),
        )
        worker = Worker(session, options, reading=letters, engine=parts)
        # A dry run must not move the reprocess group's offsets either.
        worker.runner.commit = _no_commit  # type: ignore[method-assign]
    else:
        worker = Worker(session, options, reading=letters)
    summary = await worker.run()
    outcomes = (
        dict(planned.outcomes)
        if planned
        else {k: session.metrics.tally[k] - before.get(k, 0) for k in session.metrics.tally}
    )
    return BackfillResult(
        group_id=group,
        records=summary.records,
        outcomes={k: v for k, v in outcomes.items() if v},
        zoho_attempts=session.metrics.attempts - attempts_before,
        http_429=0,
        elapsed_s=summary.elapsed_s,
        planned=planned,
    )


async def _no_commit(*_: Any, **__: Any) -> dict[Any, int]:
    return {}
