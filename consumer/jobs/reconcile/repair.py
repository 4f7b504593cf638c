"""The repair of a reconcile: the missing and drifted rows, as they are now, through the live pipeline.

`repair` never calls Zoho itself: it hands each row to a `SyncEngine` as a snapshot read with `resync`
on, so mapping, idempotent creates (intent + natural-key lookup), the sync log, the entity map, the
write-back and the dead-letter topic are exactly the live sync's. Parents go first (customers, then
invoices), so an invoice always finds its customer. Nothing is ever deleted in Zoho.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Final

from consumer.entities.registry import registered
from consumer.jobs.reconcile.findings import ReconcileReport, RepairResult
from consumer.jobs.reconcile.sides import current_rows, fetch_rows
from consumer.model.events import snapshot_read
from consumer.pipeline.effects.apply import ApplyOptions, ZohoApplier
from consumer.pipeline.effects.dead_letter_topic import DeadLetterPublisher
from consumer.pipeline.intake.engine import EngineOptions, SyncEngine
from consumer.pipeline.intake.scheduler import InboundRecord
from consumer.settings import Settings

#: Sync-log partition of the rows a repair feeds to the engine: they come from the source tables,
#: not from a Kafka partition, and -1 says so wherever the row is shown.
RECONCILE_PARTITION: Final = -1


class ReconcileError(Exception):
    """The reconcile could not run to the end; the message is one sentence for the operator."""


def repair_engine(session: Any, group: str, *, resync: bool = True) -> SyncEngine:
    """A `SyncEngine` on the session's store, Zoho client and producer, under its own sync-log group.

    `resync` (a reconcile's) checks against Zoho instead of the stored payload hash; without it (a
    backfill applying rows its replay lost) the entity map decides, as in the live sync."""
    from consumer.model.plan import MappingConfig

    settings: Settings = session.settings
    return SyncEngine(
        options=EngineOptions(
            consumer_group=group,
            topic_prefix=settings.topic_prefix,
            mapping=MappingConfig.from_settings(settings),
            resync=resync,
            ignore_stale=True,  # source rows read now: never older than what was applied
            dlq_topic=settings.dlq_topic,
            reprocess_max_attempts=settings.reprocess_max_attempts,
        ),
        store=session.store,
        applier=ZohoApplier(session.client, session.store, ApplyOptions.from_settings(settings)),
        dead_letters=DeadLetterPublisher(session.producer, settings.dlq_topic),
        on_done=lambda _record: None,
        metrics=session.metrics,
    )


async def repair(session: Any, report: ReconcileReport) -> RepairResult:
    """Sync the missing and drifted entities through the live pipeline (see the module docstring)."""
    settings: Settings = session.settings
    group = f"{settings.consumer_group}.reconcile.{int(time.time() * 1000)}"
    engine = repair_engine(session, group)
    submitted = 0
    try:
        for entity_type in registered():  # parents before their children
            ids = report.ids_to_repair(entity_type)
            topic = entity_type.topic(settings.topic_prefix)
            for row in await current_rows(settings.database_url, entity_type, ids):
                # The record only names the sync-log position; the row is handed over decoded.
                record = InboundRecord(topic, RECONCILE_PARTITION, submitted, None, None)
                engine.submit(
                    record,
                    snapshot_read(entity_type, str(row["id"]), row, read_at_ms=int(time.time() * 1000)),
                )
                submitted += 1
            await engine.wait_idle()
            if engine.fatal is not None:
                raise ReconcileError(f"the repair stopped: {engine.fatal}")
    finally:
        await engine.close()
    rows = await fetch_rows(
        settings.database_url,
        "SELECT entity_type, entity_id, outcome, operation, zoho_id, error FROM zoho_sync_log"
        " WHERE consumer_group = %s ORDER BY kafka_offset",
        (group,),
    )
    return RepairResult(group, submitted, dict(Counter(row["outcome"] for row in rows)), rows)
