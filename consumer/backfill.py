"""Backfill by replay: the live pipeline over a bounded range of the topics, under its own group.

The end offsets are captured at start and the run finishes when it reaches them; the live group's
offsets are never touched. Already-synced entities cost no call (payload hash), coalescing folds many
updates of one entity into one call, and `resync` checks every entity against Zoho instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from consumer.dry_run import DryRunApplier, DryRunDeadLetters, DryRunStore, PlannedCalls
from consumer.runner import SyncRunner
from consumer.service import SyncSession

ENTITIES = {"customers": "customers", "invoices": "customer_invoices"}


@dataclass
class BackfillResult:
    group_id: str
    records: int
    outcomes: dict[str, int]
    zoho_attempts: int
    http_429: int
    elapsed_s: float
    planned: PlannedCalls | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def backfill_topics(session: SyncSession, entity: str) -> tuple[str, ...]:
    s = session.settings
    if entity == "all":
        return s.source_topics
    return (f"{s.topic_prefix}.public.{ENTITIES[entity]}",)


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
        max_in_flight=session.settings.backfill_read_ahead,
    )
    planned = PlannedCalls() if dry_run else None
    http_429_before = _client_429(session.client)
    if planned is not None:
        runner: SyncRunner = session.runner(
            options,
            resync=resync,
            applier=DryRunApplier(planned),
            store=DryRunStore(session.store, planned),
            dead_letters=DryRunDeadLetters(planned, session.settings.dlq_topic),
            on_progress=on_progress,
        )
    else:
        runner = session.runner(options, resync=resync, on_progress=on_progress)
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
        elapsed_s=summary.elapsed_s,
        planned=planned,
    )


def _client_429(client: Any) -> int:
    """The 429s the Zoho client has seen so far (its `metrics` counters)."""
    return int(client.metrics.http_429)
