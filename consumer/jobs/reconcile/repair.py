"""The repair of a reconcile: the missing and drifted rows, as they are now, through the live pipeline.

`repair` never calls Zoho itself: it hands each row to the session's engine (`SyncSession.engine`) as a
snapshot read with `resync` on, so mapping, idempotent creates (intent + natural-key lookup), the sync
log, the entity map, the write-back and the dead-letter topic are exactly the live sync's. Parents go
first (customers, then invoices), so an invoice always finds its customer. Nothing is ever deleted in
Zoho.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Final

from consumer.entities.registry import registered
from consumer.jobs.reconcile.findings import ReconcileReport, RepairResult
from consumer.jobs.reconcile.sides import current_rows, fetch_rows
from consumer.model.events import snapshot_read
from consumer.pipeline.intake.scheduler import InboundRecord
from consumer.service.wiring import EngineParts
from consumer.settings import Settings

#: Sync-log partition of the rows a repair feeds to the engine: they come from the source tables,
#: not from a Kafka partition, and -1 says so wherever the row is shown.
RECONCILE_PARTITION: Final = -1


class ReconcileError(Exception):
    """The reconcile could not run to the end; the message is one sentence for the operator."""


async def repair(session: Any, report: ReconcileReport) -> RepairResult:
    """Sync the missing and drifted entities through the live pipeline (see the module docstring)."""
    settings: Settings = session.settings
    group = f"{settings.consumer_group}.reconcile.{int(time.time() * 1000)}"
    # `resync`: checked against Zoho, not the stored payload hash; source rows read now are never stale.
    engine = session.engine(group, parts=EngineParts(resync=True, ignore_stale=True))
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
