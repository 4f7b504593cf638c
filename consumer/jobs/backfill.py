"""Backfill by replay: the live pipeline over a bounded range of the topics, under its own group.

Two passes over one range (end offsets captured at start; the live group's offsets are never touched).
The first reads every record once, keeps per entity where its newest record is (`ReplayIndex`,
memory per distinct entity) and records every older one `superseded` in bulk as it goes
(`consumer.pipeline.replay_first_pass`); the second applies only the newest records through the live
pipeline, so each entity costs at most one call however long the backlog. Already-synced entities cost
no call (payload hash); `resync` checks every entity against Zoho's listings instead
(`consumer.jobs.zoho_listing`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from consumer.entities.registry import specs
from consumer.jobs.dry_run import DryRunApplier, DryRunDeadLetters, DryRunStore, PlannedCalls
from consumer.jobs.zoho_listing import ZohoListing
from consumer.pipeline.apply import ApplyOptions, ZohoApplier
from consumer.pipeline.events import EntityType
from consumer.pipeline.match_index import MatchIndex
from consumer.pipeline.recording import OutcomeRecorder
from consumer.pipeline.replay_first_pass import first_pass
from consumer.pipeline.runner import SyncRunner
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
    planned = PlannedCalls() if dry_run else None
    store: Any = session.store if planned is None else DryRunStore(session.store, planned)
    before = dict(session.metrics.tally)
    attempts_before = session.metrics.attempts
    already_applied_before = session.metrics.already_applied
    started = time.monotonic()  # the run's time covers both passes: the index is part of the replay
    replay, options.bounds = await first_pass(
        options, session.settings.topic_prefix, OutcomeRecorder(store, group, session.metrics)
    )
    index_s = time.monotonic() - started
    entities = len(replay)  # the second pass forgets each entity once it is handed out
    listing = None
    applier = None
    if resync and planned is None:  # a dry run makes no Zoho call at all, not even a read
        listing = await ZohoListing.read(session.client, chosen_entities(entity))
    elif planned is None:
        applier = _matching_applier(session, chosen_entities(entity))
    http_429_before = _client_429(session.client)
    if planned is not None:
        runner: SyncRunner = session.runner(
            options,
            resync=resync,
            applier=DryRunApplier(planned),
            store=store,
            dead_letters=DryRunDeadLetters(planned, session.settings.dlq_topic),
            on_progress=on_progress,
            replay=replay,
        )
    else:
        runner = session.runner(
            options,
            resync=resync,
            applier=applier,
            on_progress=on_progress,
            replay=replay,
            listing=listing,
            unchanged_in_bulk=not resync,
        )
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
            "listing_reads": listing.reads if listing else applier.match_index.reads if applier else 0,
            # newest records recorded unchanged by their replay memo, without decoding or planning
            "already_applied": session.metrics.already_applied - already_applied_before,
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


def _client_429(client: Any) -> int:
    """The 429s the Zoho client has seen so far (its `metrics` counters)."""
    return int(client.metrics.http_429)
