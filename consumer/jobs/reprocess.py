"""Dead-letter reprocessing and listing.

Reprocessing re-drives DLQ records through the same pipeline under its own consumer group on the
DLQ topic (so running it twice sends nothing twice); the source's newest state wins (stale skip),
a record that fails again goes back to the DLQ with its reprocess count raised, and after
REPROCESS_MAX_ATTEMPTS it is parked with outcome `failed` instead of looping.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer

from consumer.jobs.backfill import BackfillResult
from consumer.jobs.dry_run import DryRunApplier, DryRunDeadLetters, DryRunStore, PlannedCalls
from consumer.pipeline.dead_letters import (
    H_ATTEMPTS,
    H_FIRST_FAILED_AT,
    H_OFFSET,
    H_REASON,
    H_REPROCESS_COUNT,
    H_TOPIC,
    header_int,
    parse_headers,
)
from consumer.pipeline.end_offsets import end_offsets as true_end_offsets
from consumer.pipeline.end_offsets import topic_partitions
from consumer.pipeline.wiring import SyncSession


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


def reprocess_group(session: SyncSession) -> str:
    return f"{session.settings.consumer_group}.dlq-reprocess"


async def list_dead_letters(bootstrap: str, topic: str, limit: int = 50) -> list[DeadLetterEntry]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await topic_partitions(consumer, [topic])
        if not parts:
            return []
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await true_end_offsets(bootstrap, parts)
        out: list[DeadLetterEntry] = []
        now_ms = time.time() * 1000
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
                        )
                    )
        return out[-limit:]
    finally:
        await consumer.stop()


async def reprocess(
    session: SyncSession,
    *,
    offsets: set[int] | None = None,
    since: datetime | None = None,
    dry_run: bool = False,
) -> BackfillResult:
    group = reprocess_group(session)
    since_ms = int(since.timestamp() * 1000) if since else None

    def accept(record: Any) -> bool:
        if offsets and record.offset not in offsets:
            return False
        return not (since_ms is not None and record.timestamp < since_ms)

    options = session.run_options(
        group,
        topics=(session.settings.dlq_topic,),
        bounded=True,
        accept=accept if (offsets or since_ms is not None) else None,
    )
    planned = PlannedCalls() if dry_run else None
    before = dict(session.metrics.tally)
    attempts_before = session.metrics.attempts
    if planned is not None:
        runner = session.runner(
            options,
            applier=DryRunApplier(planned),
            store=DryRunStore(session.store, planned),
            dead_letters=DryRunDeadLetters(planned, session.settings.dlq_topic),
        )
        # A dry run must not move the reprocess group's offsets either.
        runner.commit = _no_commit  # type: ignore[method-assign]
    else:
        runner = session.runner(options)
    summary = await session.consume(runner)
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
