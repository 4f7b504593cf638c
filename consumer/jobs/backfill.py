"""Backfill by replay: the live pipeline over a bounded range of the topics, under its own group.

Two passes over one range (end offsets captured at start; the live group's offsets are never touched).
The first reads every record once and keeps, per entity, where its newest record is (`ReplayIndex`,
memory per distinct entity); the second applies only those records through the live pipeline and
records every other one `superseded` in bulk, so each entity costs at most one call however long the
backlog. Already-synced entities cost no call (payload hash); `resync` checks every entity against
Zoho's listings instead (`consumer.jobs.zoho_listing`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from consumer.entities.registry import specs
from consumer.jobs.dry_run import DryRunApplier, DryRunDeadLetters, DryRunStore, PlannedCalls
from consumer.jobs.zoho_listing import ZohoListing
from consumer.pipeline.decode import summarize_change
from consumer.pipeline.events import DecodeError, EntityType, Op
from consumer.pipeline.replay_index import ReplayIndex
from consumer.pipeline.runner import RunOptions, SyncRunner, assign_range, kafka_consumer
from consumer.pipeline.wiring import SyncSession


def chosen_entities(entity: str) -> tuple[EntityType, ...]:
    """`all` (parents first), or one entity by its plural name (`customers`, `invoices`)."""
    if entity == "all":
        return tuple(spec.entity for spec in specs())
    return (EntityType(entity.removesuffix("s")),)


@dataclass
class BackfillResult:
    group_id: str
    records: int
    outcomes: dict[str, int]
    zoho_attempts: int
    http_429: int
    elapsed_s: float  # the whole run: index pass, listing reads (a resync's) and apply pass
    planned: PlannedCalls | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def backfill_topics(session: SyncSession, entity: str) -> tuple[str, ...]:
    return tuple(chosen.topic(session.settings.topic_prefix) for chosen in chosen_entities(entity))


async def run_backfill(
    session: SyncSession,
    *,
    entity: str = "all",
    since: datetime | None = None,
    dry_run: bool = False,
    resync: bool = False,
    group_id: str | None = None,
    on_progress: Any = None,
) -> BackfillResult:
    group = group_id or f"{session.settings.consumer_group}.backfill.{int(time.time() * 1000)}"
    options = session.run_options(
        group,
        topics=backfill_topics(session, entity),
        bounded=True,
        from_beginning=since is None,
        since=since,
        read_ahead=False,
    )
    started = time.monotonic()  # the run's time covers both passes: the index is part of the replay
    replay, options.bounds = await index_range(options, session.settings.topic_prefix)
    index_s = time.monotonic() - started
    entities = len(replay)  # the second pass forgets each entity once it is handed out
    planned = PlannedCalls() if dry_run else None
    listing = None
    if resync and planned is None:  # a dry run makes no Zoho call at all, not even a read
        listing = await ZohoListing.read(session.client, chosen_entities(entity))
    http_429_before = _client_429(session.client)
    if planned is not None:
        runner: SyncRunner = session.runner(
            options,
            resync=resync,
            applier=DryRunApplier(planned),
            store=DryRunStore(session.store, planned),
            dead_letters=DryRunDeadLetters(planned, session.settings.dlq_topic),
            on_progress=on_progress,
            replay=replay,
        )
    else:
        runner = session.runner(
            options,
            resync=resync,
            on_progress=on_progress,
            replay=replay,
            listing=listing,
            unchanged_in_bulk=not resync,
        )
    before = dict(session.metrics.tally)
    attempts_before = session.metrics.attempts
    summary = await session.consume(runner)
    outcomes = {k: session.metrics.tally[k] - before.get(k, 0) for k in session.metrics.tally}
    if planned is not None:
        outcomes = dict(planned.outcomes)
    return BackfillResult(
        group_id=group,
        records=summary.records,
        outcomes={k: v for k, v in outcomes.items() if v},
        zoho_attempts=session.metrics.attempts - attempts_before,
        http_429=_client_429(session.client) - http_429_before,
        elapsed_s=time.monotonic() - started,
        planned=planned,
        extra={
            "entities": entities,
            "index_s": round(index_s, 2),
            "listing_reads": listing.reads if listing else 0,
        },
    )


async def index_range(
    options: RunOptions, topic_prefix: str
) -> tuple[ReplayIndex, dict[TopicPartition, tuple[int, int]]]:
    """The first pass: read the run's range once, without a group, and index each entity's newest record.

    Records are only summarized (entity, op, source position, whole image or not), not decoded.

    Returns the index and the (start, end) offsets read, which the second pass reads again exactly."""
    index = ReplayIndex()
    consumer = kafka_consumer(options.bootstrap_servers, None)  # type: ignore[arg-type]
    await consumer.start()
    try:
        ends = await assign_range(consumer, options)
        bounds = {tp: (await consumer.position(tp), end) for tp, end in ends.items()}
        pending = {tp for tp, (start, end) in bounds.items() if start < end}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=200, max_records=options.max_poll_records * 4)
            for tp, messages in batch.items():
                end = ends[tp]
                for m in messages:
                    if m.offset >= end:
                        break
                    _index_record(index, m, topic_prefix)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return index, bounds


def _index_record(index: ReplayIndex, m: ConsumerRecord[bytes, bytes], topic_prefix: str) -> None:
    try:
        change = summarize_change(m.topic, m.key, m.value, topic_prefix=topic_prefix)
    except DecodeError:
        index.read_in_full(m.topic, m.partition, m.offset)  # dead-lettered by the second pass
        return
    if change.op is Op.TOMBSTONE and m.value is not None:
        index.read_in_full(m.topic, m.partition, m.offset)  # a tombstone only its value tells
    index.add(change, m.topic, m.partition, m.offset)


def _client_429(client: Any) -> int:
    """The 429s the Zoho client has seen so far (its `metrics` counters)."""
    return int(client.metrics.http_429)
