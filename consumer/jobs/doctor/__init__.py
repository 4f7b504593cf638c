"""`zoho-cdc doctor`: every dependency checked in one place, one line each, never writing.

PostgreSQL (server, source tables, write-back columns, publication, slot, migrations), Kafka (broker,
topics, dead-letter topic, the group's lag), Kafka Connect when configured, and Zoho (token, data
centre, organisation, custom field, default item, limits). The Zoho lines marked fatal are the ones
`zoho-cdc run` refuses to start on, with the same sentence.
"""

from __future__ import annotations

import asyncio

from consumer.jobs.doctor.checks import Check
from consumer.jobs.doctor.kafka import connect_checks, kafka_checks
from consumer.jobs.doctor.postgres import postgres_checks
from consumer.jobs.doctor.zoho import fatal_zoho_problem, zoho_checks
from consumer.settings import Settings

__all__ = ["Check", "diagnose", "fatal_zoho_problem"]


async def diagnose(settings: Settings) -> list[Check]:
    """Every check, PostgreSQL first; the other areas run meanwhile."""
    database = asyncio.to_thread(postgres_checks, settings)
    results = await asyncio.gather(
        database, kafka_checks(settings), connect_checks(settings), zoho_checks(settings)
    )
    return [check for area in results for check in area]
