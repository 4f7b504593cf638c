"""Recording adoptions: the plan's (`zoho-cdc adopt`), and links made or undone by hand.

Each is one sync-log row (group `<CONSUMER_GROUP>.adopt.<ms>`, topic `adopt`, partition -1) written in
one transaction with the entity-map row and the write-back of the Zoho id. A linked entity's map row
holds no payload hash unless every mapped field was seen to match, so the live sync brings the record up
to the source (one PUT) when the echo of the write-back arrives. An unlinked entity forgets the record
for good (`zoho_adoption_refused`): its next change matches again without it, or creates.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from connectors.zoho.errors import NotFound
from consumer.entities.registry import spec_of
from consumer.jobs.adoption_plan import AdoptionPlan, Decision, adoptions
from consumer.model.events import EntityType
from consumer.model.outcomes import SyncOutcome
from consumer.pipeline.durability.organisations import settle
from consumer.pipeline.durability.rows import EntityUpdate, OutcomeRow
from consumer.pipeline.durability.store import SyncStore
from consumer.pipeline.effects.write_back import WriteBack

ADOPT_TOPIC = "adopt"  # the sync-log topic of adoptions recorded outside the stream


class LinkRefused(Exception):
    """Raised when a link or unlink cannot be made as asked; the message is one sentence for the operator."""


def _store(settings: Any) -> SyncStore:
    """The store of the configured organisation; it writes ids back to the source only when it is the
    live sync's organisation (`consumer.pipeline.durability.organisations`)."""
    organisation = settle(settings.database_url, settings.zoho_organization_id, live_sync=False)
    return SyncStore(
        settings.database_url, organization_id=organisation.organization_id, writes_back=organisation.live
    )


def _group(settings: Any) -> str:
    return f"{settings.consumer_group}.adopt.{int(time.time() * 1000)}"


def _row(
    group: str, offset: int, entity_type: EntityType, entity_id: str, outcome: SyncOutcome, **fields: Any
) -> OutcomeRow:
    return OutcomeRow(group, ADOPT_TOPIC, -1, offset, entity_type.value, entity_id, outcome, **fields)


async def record_plan(settings: Any, plan: AdoptionPlan) -> list[Decision]:
    """Record the plan's adoptions (claims, map rows, sync-log rows, write-backs); returns those recorded.
    An entity another process adopted or mapped meanwhile is left to the live sync's rules."""
    group, done = _group(settings), []
    async with _store(settings) as store:
        for offset, d in enumerate(adoptions(plan)):
            entity_type = EntityType(d.entity_type)
            assert d.zoho_id is not None
            if await store.claims.claim(entity_type, d.zoho_id, d.entity_id, d.verdict) != d.entity_id:
                continue
            note = f"{d.verdict}: Zoho {d.entity_type} {d.zoho_id} (zoho-cdc adopt)" + (
                f"; {d.note}" if d.note else ""
            )
            await store.record(
                [
                    _row(
                        group,
                        offset,
                        entity_type,
                        d.entity_id,
                        SyncOutcome.SYNCED,
                        operation="adopt",
                        zoho_id=d.zoho_id,
                        error=note,
                    )
                ],
                entity=EntityUpdate(
                    entity_type,
                    d.entity_id,
                    d.zoho_id,
                    d.payload_hash,
                    None,
                    d.zoho_status,
                    d.natural_key or None,
                ),
                write_back=WriteBack(entity_type, d.entity_id, d.zoho_id, "synced", called=False),
            )
            done.append(d)
    return done


async def link(settings: Any, client: Any, entity_type: EntityType, entity_id: str, zoho_id: str) -> str:
    """Map a source entity to a Zoho record by hand (one read of the record); returns the sync-log note."""
    spec = spec_of(entity_type)
    async with _store(settings) as store:
        row = await store.source_row(entity_type, entity_id)
        if row is None:
            raise LinkRefused(f"there is no source {entity_type.value} {entity_id} in {entity_type.table}")
        try:
            record = await _read(client, entity_type, zoho_id)
        except NotFound:
            raise LinkRefused(f"Zoho has no {entity_type.value} {zoho_id} in this organisation") from None
        holder = await store.claims.holder(entity_type, zoho_id, entity_id)
        if holder is not None:
            raise LinkRefused(
                f"Zoho {entity_type.value} {zoho_id} belongs to source {entity_type.value} {holder}:"
                f" unlink it first (zoho-cdc adopt unlink {entity_type.value} {holder})"
            )
        before = await _mapped(settings, entity_type, entity_id)
        await _forget(settings, entity_type, entity_id, refuse=None, clear_source=False)
        await store.claims.claim(entity_type, zoho_id, entity_id, "linked by hand")
        note = f"linked by hand to Zoho {entity_type.value} {zoho_id}" + (
            f" (was {before})" if before else ""
        )
        await store.record(
            [
                _row(
                    _group(settings),
                    0,
                    entity_type,
                    entity_id,
                    SyncOutcome.SYNCED,
                    operation="link",
                    zoho_id=zoho_id,
                    error=note,
                )
            ],
            entity=EntityUpdate(
                entity_type, entity_id, zoho_id, None, None, record.get("status"), spec.natural_key_of(row)
            ),
            write_back=WriteBack(entity_type, entity_id, zoho_id, "synced", called=False),
        )
    return note


async def unlink(settings: Any, entity_type: EntityType, entity_id: str) -> str:
    """Undo an adoption: the entity forgets its record (and never matches it again); returns the note."""
    before = await _mapped(settings, entity_type, entity_id)
    if before is None:
        raise LinkRefused(f"source {entity_type.value} {entity_id} is not linked to any Zoho record")
    live = settle(settings.database_url, settings.zoho_organization_id, live_sync=False).live
    await _forget(settings, entity_type, entity_id, refuse=before, clear_source=live)
    note = (
        f"unlinked by hand from Zoho {entity_type.value} {before}; its next change is matched again without"
        " that record, or created"
    )
    async with _store(settings) as store:
        await store.record(
            [
                _row(
                    _group(settings),
                    0,
                    entity_type,
                    entity_id,
                    SyncOutcome.SKIPPED,
                    operation="unlink",
                    zoho_id=before,
                    error=note,
                )
            ]
        )
    return note


async def _read(client: Any, entity_type: EntityType, zoho_id: str) -> dict[str, Any]:
    reader = {EntityType.CUSTOMER: client.get_customer, EntityType.INVOICE: client.get_invoice}[entity_type]
    record: dict[str, Any] = await reader(zoho_id)
    return record


async def _mapped(settings: Any, entity_type: EntityType, entity_id: str) -> str | None:
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        cur = await conn.execute(
            "SELECT zoho_id FROM zoho_entity_map WHERE organization_id = %s AND entity_type = %s"
            " AND entity_id = %s AND zoho_id IS NOT NULL",
            (settings.zoho_organization_id, entity_type.value, entity_id),
        )
        row = await cur.fetchone()
    return str(row[0]) if row else None


async def _forget(
    settings: Any, entity_type: EntityType, entity_id: str, *, refuse: str | None, clear_source: bool
) -> None:
    """Drop the entity's map row and claims in this organisation, in one transaction; `refuse` is never
    matched to it again; with `clear_source` (the live organisation) the source row's Zoho id is cleared
    too, else it would be adopted again by that id."""
    spec = spec_of(entity_type)
    values = (settings.zoho_organization_id, entity_type.value, entity_id)
    where = " WHERE organization_id = %s AND entity_type = %s AND entity_id = %s"
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn, conn.transaction():
        await conn.execute("DELETE FROM zoho_entity_map" + where, values)
        await conn.execute("DELETE FROM zoho_adoption_claim" + where, values)
        if refuse is not None:
            await conn.execute(
                "INSERT INTO zoho_adoption_refused (organization_id, entity_type, entity_id, zoho_id)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (*values, refuse),
            )
        if clear_source:
            await conn.execute(
                "DELETE FROM zoho_pending_write_back WHERE entity_type = %s AND entity_id = %s", values[1:]
            )
            await conn.execute(
                f"UPDATE {entity_type.table} SET {spec.write_back_id_column} = NULL,"  # noqa: S608 - spec names
                " zoho_sync_status = NULL WHERE id = %s::uuid",
                (entity_id,),
            )
