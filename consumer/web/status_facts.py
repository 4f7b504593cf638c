"""What the status page, /metrics and `zoho-cdc status` read at request time: status, samples, budget.

Kafka being down never fails a read: what it did not answer is None (or logged), and the rest is shown.
Token checks ask the token manager, which answers from its cache when it can, so a page view costs no
Zoho call.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from dataclasses import asdict
from typing import Any

import structlog

from consumer.entities.registry import source_topics
from consumer.jobs.health import HealthFacts, History, Sample, assess
from consumer.jobs.status import (
    PartitionLag,
    Status,
    collect_database_status,
    collect_lag,
    dlq_depth,
    replication_slot_active,
    zoho_ahead_by_entity,
)
from consumer.web.status_page import DLQ_SHOWN

log = structlog.get_logger(__name__)

READY_TIMEOUT_SECONDS = 5.0
TOKEN_CHECK_SECONDS = 2.0
SAMPLE_SECONDS = 15.0


async def group_lag(settings: Any, group: str) -> list[PartitionLag]:
    """The group's lag by partition, read within READY_TIMEOUT_SECONDS."""
    return await asyncio.wait_for(
        collect_lag(settings.kafka_bootstrap_servers, group, source_topics(settings.topic_prefix)),
        READY_TIMEOUT_SECONDS,
    )


async def dlq_records(settings: Any) -> int:
    """The records in the dead-letter topic, read within READY_TIMEOUT_SECONDS."""
    return await asyncio.wait_for(
        dlq_depth(settings.kafka_bootstrap_servers, settings.dlq_topic), READY_TIMEOUT_SECONDS
    )


async def budget_state(client: Any, timeout: float | None = None) -> dict[str, Any]:
    """The Zoho client's budget state ({} for clients without one); some clients answer it awaitably."""
    if client is None or not hasattr(client, "budget_state"):
        return {}
    state = client.budget_state()
    if inspect.isawaitable(state):
        state = await asyncio.wait_for(state, timeout)
    return dict(state)


def zoho_calls_made(client: Any) -> int:
    metrics = getattr(client, "metrics", None)
    return 0 if metrics is None else int(sum(metrics.calls.values()))


async def token_facts(client: Any) -> tuple[str | None, bool]:
    """(refused message, throttled): asks the token manager, which answers from its cache when it can."""
    from connectors.zoho.errors import AuthError

    auth = getattr(client, "auth", None)
    if auth is None:
        return None, False
    try:
        await asyncio.wait_for(auth.token(), TOKEN_CHECK_SECONDS)
    except AuthError as exc:
        return type(exc).__name__, False  # the class, never the message: it may quote a request
    except TimeoutError:
        return None, True  # backing off after refusals (or Zoho accounts is slow)
    except Exception:
        return None, False
    return None, False


async def take_sample(settings: Any, group: str, client: Any) -> Sample:
    """Lag, DLQ depth and the client's call count now (None for what Kafka did not answer)."""
    lag: int | None = None
    depth: int | None = None
    try:
        lag = sum(p.lag for p in await group_lag(settings, group))
        depth = await dlq_records(settings)
    except Exception as exc:
        log.warning("status sample: kafka unavailable", error=str(exc))
    return Sample(time.time(), lag, depth, zoho_calls_made(client))


async def sample_forever(settings: Any, group: str, client: Any, history: History) -> None:
    while True:
        history.add(await take_sample(settings, group, client))
        await asyncio.sleep(SAMPLE_SECONDS)


async def gather_status(
    settings: Any, group: str, client: Any = None, history: History | None = None
) -> Status:
    status = await asyncio.to_thread(
        collect_database_status, settings.database_url, group, slot_name=settings.debezium_slot_name
    )
    kafka_reachable = True
    try:
        status.lag = await collect_lag(
            settings.kafka_bootstrap_servers, group, source_topics(settings.topic_prefix)
        )
        status.dlq_depth = await dlq_depth(settings.kafka_bootstrap_servers, settings.dlq_topic)
        if status.dlq_depth:
            from consumer.jobs.reprocess import list_dead_letters

            entries = await asyncio.wait_for(
                list_dead_letters(settings.kafka_bootstrap_servers, settings.dlq_topic, limit=DLQ_SHOWN),
                READY_TIMEOUT_SECONDS,
            )
            status.dead_letters = [
                {**asdict(e), "age_s": None if e.age_s is None else round(e.age_s, 1)}
                for e in reversed(entries)
            ]
    except Exception as exc:  # the page must render even when Kafka is down
        kafka_reachable = False
        log.warning("status: kafka unavailable", error=str(exc))
    status.budget = await budget_state(client) or status.budget
    now = time.time()
    if history is not None:
        history.add(
            Sample(
                now, status.total_lag if kafka_reachable else None, status.dlq_depth, zoho_calls_made(client)
            )
        )
    refused, throttled = await token_facts(client)
    facts = HealthFacts(
        kafka_reachable=kafka_reachable,
        slot_name=settings.debezium_slot_name,
        slot_active=status.replication_slot.get("active"),
        token_refused=refused,
        token_throttled=throttled,
        daily_paused_until=status.budget.get("paused_until"),
        limiter_paused_seconds=float(status.budget.get("paused_for_seconds") or 0.0),
        slot_retained_bytes=status.replication_slot.get("retained_wal_bytes"),
        slot_warn_bytes=settings.slot_wal_warn_bytes,
        outcomes_last_hour=dict(status.outcomes_last_hour),
    )
    samples = list(history.samples) if history is not None else []
    status.health = assess(samples, facts, now).as_dict()
    return status


def group_members(database_url: str, group: str) -> list[dict[str, Any]]:
    """The consumer group's live instances, from PostgreSQL (blocking: run it in a thread)."""
    import psycopg

    from consumer.service.members import live_members

    with psycopg.connect(database_url, connect_timeout=5) as conn:
        return live_members(conn, group)


def slot_active(database_url: str, slot_name: str) -> bool:
    """Whether Debezium's replication slot streams now (blocking: run it in a thread)."""
    import psycopg

    with psycopg.connect(database_url, connect_timeout=5) as conn:
        return bool(replication_slot_active(conn, slot_name))


def zoho_ahead_counts(database_url: str, organization_id: str) -> dict[str, int]:
    """Entities Zoho is ahead of now in the organisation, by entity type (blocking: run it in a thread)."""
    import psycopg

    with psycopg.connect(database_url, connect_timeout=5) as conn:
        return zoho_ahead_by_entity(conn, organization_id)
