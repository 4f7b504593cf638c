"""Wiring: settings -> store, Zoho client, DLQ producer and engine, with a clean lifecycle.

Every command that moves events (run, backfill, dlq reprocess, reconcile's repair) goes through
`sync_session` and builds its engine with `SyncSession.engine`, so all of them share one pipeline:
decode, map, coalesce, limiter, sync log, idempotent creates.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import psycopg

from consumer.entities.registry import source_topics
from consumer.metrics import Metrics
from consumer.migrations import migrate
from consumer.model.plan import MappingConfig
from consumer.pipeline.decision.entity_map import Listing
from consumer.pipeline.durability.organisations import Organisation, OrganisationUnsettled, settle
from consumer.pipeline.durability.store import SyncStore
from consumer.pipeline.effects.apply import Applier, ApplyOptions, ZohoApplier
from consumer.pipeline.effects.dead_letter_topic import DeadLetterPublisher
from consumer.pipeline.intake.engine import EngineOptions, IntakeStrategy, SyncEngine
from consumer.pipeline.intake.kafka_clients import kafka_producer
from consumer.pipeline.intake.runner import RunOptions
from consumer.pipeline.intake.scheduler import InboundRecord
from consumer.pipeline.replay.memo import payload_settings
from consumer.settings import Settings


class ServiceUnavailable(Exception):
    """A required service cannot be reached (or cannot be used yet); the message says what to do."""


def check_database(settings: Settings) -> None:
    try:
        with psycopg.connect(settings.database_url, connect_timeout=5):
            pass
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ServiceUnavailable(f"Cannot connect to PostgreSQL at DATABASE_URL: {first}") from None


def check_broker(settings: Settings) -> None:
    for server in settings.kafka_bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=3):
                return
        except OSError:
            continue
    raise ServiceUnavailable(
        f"Cannot reach the Kafka broker at KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers}; "
        "start it (make dev-up) or fix the setting."
    )


def zoho_client(settings: Settings) -> Any:
    from connectors.zoho.client import ZohoClient
    from connectors.zoho.stores import PgDailyBudgetStore, PgRateWindowStore, PgTokenStore
    from consumer.service.zoho_config import zoho_config

    return ZohoClient(
        zoho_config(settings),
        token_store=PgTokenStore(settings.database_url),
        budget_store=PgDailyBudgetStore(settings.database_url),
        window_store=PgRateWindowStore(settings.database_url),
    )


@dataclass
class EngineParts:
    """What one run changes in the engine its session builds; the live sync changes nothing."""

    resync: bool = False  # ignore stored payload hashes and check every entity against Zoho
    ignore_stale: bool = False  # source rows read now (a repair): never older than what was applied
    applier: Applier | None = None  # a dry run's, or a replay's that matches against Zoho's listing
    store: Any = None  # a dry run's
    dead_letters: Any = None  # a dry run's
    listing: Listing | None = None  # a resync's view of what Zoho holds
    intake: IntakeStrategy | None = None  # a backfill's second pass (`consumer.pipeline.replay`)


@dataclass
class SyncSession:
    settings: Settings
    store: SyncStore
    client: Any
    metrics: Metrics
    producer: Any
    organisation: Organisation  # the Zoho organisation it works in; `live`: it writes back to the source

    def engine(
        self,
        group: str,
        *,
        on_done: Callable[[InboundRecord], None] | None = None,
        parts: EngineParts | None = None,
    ) -> SyncEngine:
        """The one way a `SyncEngine` is built (run, backfill, dlq reprocess, reconcile's repair): on the
        session's store, Zoho client and dead-letter producer, under the sync-log group `group`.

        `on_done` is where a record whose outcome is durable goes (a worker's watermarks); `parts` is
        what the run changes (see `EngineParts`)."""
        parts = parts or EngineParts()
        settings = self.settings
        return SyncEngine(
            options=EngineOptions(
                consumer_group=group,
                topic_prefix=settings.topic_prefix,
                mapping=MappingConfig.from_settings(settings),
                payload_settings=payload_settings(settings),
                resync=parts.resync,
                ignore_stale=parts.ignore_stale,
                dlq_topic=settings.dlq_topic,
                reprocess_max_attempts=settings.reprocess_max_attempts,
            ),
            store=parts.store or self.store,
            applier=parts.applier
            or ZohoApplier(self.client, self.store, ApplyOptions.from_settings(settings)),
            dead_letters=parts.dead_letters or DeadLetterPublisher(self.producer, settings.dlq_topic),
            on_done=on_done,
            metrics=self.metrics,
            listing=parts.listing,
            intake=parts.intake,
        )

    def run_options(self, group_id: str, topics: tuple[str, ...] | None = None, **kw: Any) -> RunOptions:
        s = self.settings
        return RunOptions(
            topics=topics or source_topics(s.topic_prefix),
            group_id=group_id,
            bootstrap_servers=s.kafka_bootstrap_servers,
            max_in_flight=kw.pop("max_in_flight", None) or s.max_in_flight,
            commit_interval=s.commit_interval_seconds,
            shutdown_timeout=s.shutdown_timeout_seconds,
            revoke_drain_timeout=min(s.shutdown_timeout_seconds, s.kafka_session_timeout_ms / 4000),
            static_join_timeout=max(30.0, 3 * s.kafka_session_timeout_ms / 1000),
            **kw,
        )


@asynccontextmanager
async def sync_session(
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    live_sync: bool = False,
    vet_zoho: Callable[[Any], Awaitable[None]] | None = None,
) -> AsyncIterator[SyncSession]:
    """Open everything a sync needs (checked first, with one-sentence errors) and close it after.

    `live_sync` (`zoho-cdc run`) records ZOHO_ORGANIZATION_ID as the live sync's organisation; other
    commands work in it and write back to the source only if it is that one
    (`consumer.pipeline.durability.organisations`). `vet_zoho(client)` runs before that record is made and may
    raise to refuse the start (`run`: a wrong organisation must never be recorded as the live one)."""
    check_database(settings)
    check_broker(settings)
    migrate(settings.database_url)
    client = zoho_client(settings)
    try:
        if vet_zoho is not None:
            await vet_zoho(client)
        organisation = settle(settings.database_url, settings.zoho_organization_id, live_sync=live_sync)
    except OrganisationUnsettled as exc:
        await client.aclose()
        raise ServiceUnavailable(str(exc)) from None
    except BaseException:
        await client.aclose()
        raise
    store = SyncStore(
        settings.database_url,
        max_size=max(4, settings.zoho_max_concurrency + 2),
        organization_id=organisation.organization_id,
        writes_back=organisation.live,
    )
    await store.open()
    if organisation.followed:  # the live sync moved: apply the source ids queued to follow the map
        store.write_backs.poke()
    producer = kafka_producer(settings.kafka_bootstrap_servers)
    try:
        await producer.start()
        yield SyncSession(settings, store, client, metrics or Metrics(), producer, organisation)
    finally:
        await producer.stop()
        await client.aclose()
        await store.close()


def database_name(settings: Settings) -> str:
    return urlsplit(settings.database_url).path.lstrip("/")
