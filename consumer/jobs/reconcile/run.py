"""`zoho-cdc reconcile` as one job: read both sides, compare them, and with `fix` repair and report.

A report makes no write call to Zoho and writes nothing to PostgreSQL; the Zoho calls both phases made
are counted in the report.
"""

from __future__ import annotations

from typing import Any

from consumer.entities.registry import registered
from consumer.jobs.reconcile.comparison import compare
from consumer.jobs.reconcile.findings import ReconcileReport, RepairResult
from consumer.jobs.reconcile.repair import repair
from consumer.jobs.reconcile.sides import read_source, read_zoho
from consumer.settings import Settings


async def inspect(settings: Settings, client: Any, *, details: bool = True) -> ReconcileReport:
    """Read both sides and compare them (no writes anywhere)."""
    from consumer.model.plan import MappingConfig

    source = await read_source(settings.database_url, settings.zoho_organization_id)
    with client.tracking() as tracker:
        zoho = await read_zoho(client, source, details=details)
    report = compare(
        source,
        zoho,
        MappingConfig.from_settings(settings),
        list_filter=client.config.account_number_list_filter,
    )
    report.zoho_calls = tracker.attempts
    return report


async def reconcile(settings: Settings, *, fix: bool = False, details: bool = True) -> ReconcileReport:
    """Compare the source with Zoho; with `fix`, repair missing and drifted entities, then report.

    Raises `consumer.service.wiring.ServiceUnavailable` when PostgreSQL (or, to fix, Kafka) cannot be
    reached, and the Zoho client's errors when Zoho cannot be read.
    """
    from consumer.migrations import migrate
    from consumer.service.wiring import check_database, sync_session, zoho_client

    check_database(settings)
    migrate(settings.database_url)
    if not fix:
        client = zoho_client(settings)
        try:
            return await inspect(settings, client, details=details)
        finally:
            await client.aclose()
    async with sync_session(settings) as session:
        report = await inspect(settings, session.client, details=details)
        if any(report.ids_to_repair(entity_type) for entity_type in registered()):
            with session.client.tracking() as tracker:
                report.repair = await repair(session, report)
            report.zoho_calls += tracker.attempts
        else:
            report.repair = RepairResult("", 0, {}, [])
        return report
