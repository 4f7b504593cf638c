"""Backfill by replay: the live pipeline over a bounded range of the topics, under its own group.

Two passes over one range (end offsets captured at start; the live group's offsets are never touched).
The first reads every record once, keeps per entity where its newest record is (`ReplayIndex`,
memory per distinct entity) and records every older one `superseded` in bulk as it goes
(`consumer.pipeline.replay.first_pass`); the second applies only the newest records through the live
pipeline, so each entity costs at most one call however long the backlog. Already-synced entities cost
no call (payload hash); `resync` checks every entity against Zoho's listings instead
(`consumer.jobs.zoho_listing`). An entity whose newest record was removed between the passes (retention,
compaction) is applied from its source row as it is now; one whose row is gone too is named in the
result (`not_applied`) and the run does not report success.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from connectors import clock
from consumer.entities.registry import specs
from consumer.jobs.dry_run import DryRunApplier, DryRunDeadLetters, DryRunStore, PlannedCalls
from consumer.jobs.reconcile.repair import RECONCILE_PARTITION
from consumer.jobs.zoho_listing import ZohoListing
from consumer.model.events import EntityType, snapshot_read
from consumer.pipeline.adoption.match_index import MatchIndex
from consumer.pipeline.durability.recording import OutcomeRecorder
from consumer.pipeline.durability.source_reads import as_uuid
from consumer.pipeline.effects.apply import ApplyOptions, ZohoApplier
from consumer.pipeline.intake.scheduler import InboundRecord
from consumer.pipeline.replay.first_pass import first_pass
from consumer.pipeline.replay.range import ReplayRange
from consumer.pipeline.replay.second_pass import SecondPass
from consumer.service.wiring import EngineParts, SyncSession
from consumer.service.worker import Worker

log = structlog.get_logger(__name__)


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
    group = group_id or f"{session.settings.consumer_group}.backfill.{clock.wall_ms()}"
    options = session.run_options(group, topics=backfill_topics(session, entity))
    replay_range = ReplayRange(from_beginning=since is None, since=since, read_ahead=False)
    planned = PlannedCalls() if dry_run else None
    store: Any = session.store if planned is None else DryRunStore(session.store, planned)
    before = dict(session.metrics.tally)
    attempts_before = session.metrics.attempts
    already_applied_before = session.metrics.already_applied
    started = clock.monotonic()  # the run's time covers both passes: the index is part of the replay
    replay, replay_range.bounds = await first_pass(
        options, replay_range, session.settings.topic_prefix, OutcomeRecorder(store, group, session.metrics)
    )
    replay_range.first_pass = replay  # the records it recorded are passed unread
    index_s = clock.monotonic() - started
    entities = len(replay)  # the second pass forgets each entity once it is handed out
    listing = None
    applier = None
    if resync and planned is None:  # a dry run makes no Zoho call at all, not even a read
        listing = await ZohoListing.read(session.client, chosen_entities(entity))
    elif planned is None:
        applier = _matching_applier(session, chosen_entities(entity))
    http_429_before = _client_429(session.client)
    if planned is not None:
        parts = EngineParts(
            resync=resync,
            applier=DryRunApplier(planned),
            store=store,
            dead_letters=DryRunDeadLetters(planned, session.settings.dlq_topic),
            intake=SecondPass(replay),
        )
    else:
        # A replay that trusts the entity map settles the newest records Zoho already holds in bulk.
        bulk_reads = session.store if not resync else None
        parts = EngineParts(
            resync=resync, applier=applier, listing=listing, intake=SecondPass(replay, bulk_reads)
        )
    worker = Worker(session, options, reading=replay_range, engine=parts, on_progress=on_progress)
    summary = await worker.run()
    lost = replay.unapplied() if summary.stopped_by == "end" else []
    from_source, not_applied = 0, [f"{kind}:{entity_id}" for kind, entity_id in lost]
    if lost and planned is None:
        from_source, not_applied = await _apply_from_source(session, group, lost, resync=resync)
    outcomes = {k: session.metrics.tally[k] - before.get(k, 0) for k in session.metrics.tally}
    if planned is not None:
        outcomes = dict(planned.outcomes)
    return BackfillResult(
        group_id=group,
        records=summary.records,
        outcomes={k: v for k, v in outcomes.items() if v},
        zoho_attempts=session.metrics.attempts - attempts_before,
        http_429=_client_429(session.client) - http_429_before,
        elapsed_s=clock.monotonic() - started,
        planned=planned,
        extra={
            "entities": entities,
            "index_s": round(index_s, 2),
            "listing_reads": listing.reads if listing else applier.match_index.reads if applier else 0,
            # newest records recorded unchanged by their replay memo, without decoding or planning
            "already_applied": session.metrics.already_applied - already_applied_before,
            # entities whose newest record was removed between the two passes
            "applied_from_source": from_source,
            "not_applied": not_applied,
        },
    )


def _matching_applier(session: Any, entity_types: Any) -> ZohoApplier | None:
    """The applier of a replay that matches records made by others against Zoho's listing, read once
    (one call per 200 records, at the first match) instead of a lookup per entity and rule; None when no
    entity has rules."""
    options = ApplyOptions.from_settings(session.settings)
    matched = [t for t in entity_types if options.match_rules.get(t)]
    if not matched:
        return None
    applier = ZohoApplier(session.client, session.store, options)
    applier.match_index = MatchIndex(session.client, applier.calls, matched)
    return applier


async def _apply_from_source(
    session: SyncSession, group: str, lost: list[tuple[str, str]], *, resync: bool
) -> tuple[int, list[str]]:
    """Apply, through the live pipeline under the backfill's group, the current source rows of entities
    whose newest record the second pass never read; returns how many were handed over and the entities
    that have no source row either (named `entity:id`)."""
    # Source rows read now are never older than what was applied; without `resync` the entity map decides.
    engine = session.engine(group, parts=EngineParts(resync=resync, ignore_stale=True))
    handed, found = 0, set()
    try:
        for spec in specs():  # parents before their children
            kind = spec.entity
            ids = [entity_id for k, entity_id in lost if k == kind.value and as_uuid(entity_id) is not None]
            topic = kind.topic(session.settings.topic_prefix)
            rows = await session.store.source.rows(kind, ids)  # the store's reader: one database, one path
            for entity_id, row in sorted(rows.items()):
                found.add((kind.value, entity_id))
                # The record only names the sync-log position; the row is handed over decoded.
                record = InboundRecord(topic, RECONCILE_PARTITION, handed, None, None)
                engine.submit(record, snapshot_read(kind, entity_id, row, read_at_ms=clock.wall_ms()))
                handed += 1
            await engine.wait_idle()
            if engine.fatal is not None:
                raise engine.fatal
    finally:
        await engine.close()
    log.warning("entities whose newest record was removed between the passes", applied_from_source=handed)
    return handed, [f"{kind}:{entity_id}" for kind, entity_id in lost if (kind, entity_id) not in found]


def _client_429(client: Any) -> int:
    """The 429s the Zoho client has seen so far (its `metrics` counters)."""
    return int(client.metrics.http_429)
