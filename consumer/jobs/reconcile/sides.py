"""Reading both sides of a reconcile: the source tables with the entity map, and Zoho's records.

Zoho is read only through the `ZohoClient` listings (and a customer's full record where its list item
falls short), so every call spends the same limiter, concurrency slots and daily budget as the live sync.
Nothing here writes, to Zoho or to PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from psycopg.rows import dict_row

from connectors.zoho.resources.customers import account_number_of
from consumer.entities.registry import comparison_of, registered, spec_of
from consumer.model.events import EntityType

#: The snapshot field holding each entity's rows (source) or records (Zoho).
_SNAPSHOT_FIELDS: Final = {EntityType.CUSTOMER: "customers", EntityType.INVOICE: "invoices"}
#: How Zoho lists each entity's records, page by page.
_ZOHO_LISTS: Final[Mapping[EntityType, Callable[[Any], AsyncIterator[dict[str, Any]]]]] = {
    EntityType.CUSTOMER: lambda client: client.iter_customers(),
    EntityType.INVOICE: lambda client: client.iter_invoices(),
}


@dataclass
class SourceSnapshot:
    customers: list[dict[str, Any]]
    invoices: list[dict[str, Any]]
    entity_map: dict[tuple[str, str], str]  # (entity_type, entity_id) -> zoho_id
    # The source's id columns hold this organisation's ids (it is the live sync's, or none is recorded);
    # in another organisation they name records it does not have.
    source_ids: bool = True
    # (entity_type, entity_id) -> (the Zoho status the map holds, Zoho's status when Zoho is ahead)
    map_status: dict[tuple[str, str], tuple[str | None, str | None]] = field(default_factory=dict)

    def rows(self, entity_type: EntityType) -> list[dict[str, Any]]:
        return getattr(self, _SNAPSHOT_FIELDS[entity_type])  # type: ignore[no-any-return]

    def mapped(self, entity_type: EntityType, row: Mapping[str, Any]) -> list[str]:
        """The Zoho ids the entity map and the source write-back column give for a row, in that order."""
        ids = [
            self.entity_map.get((entity_type.value, row["id"])),
            row.get(spec_of(entity_type).write_back_id_column) if self.source_ids else None,
        ]
        return [str(i) for i in dict.fromkeys(ids) if i]


@dataclass
class ZohoSnapshot:
    customers: list[dict[str, Any]]  # list items, replaced by the full record where it was read
    invoices: list[dict[str, Any]]
    detailed: set[tuple[EntityType, str]] = field(default_factory=set)  # records read in full

    def records(self, entity_type: EntityType) -> list[dict[str, Any]]:
        return getattr(self, _SNAPSHOT_FIELDS[entity_type])  # type: ignore[no-any-return]


async def fetch_rows(database_url: str, query: str, params: Any = None) -> list[dict[str, Any]]:
    """The rows of one query, as dicts with uuids as strings (the form events and the entity map use)."""
    async with await psycopg.AsyncConnection.connect(database_url, connect_timeout=5) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(query, params)  # type: ignore[arg-type]  # callers pass fixed SQL
        return [
            {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in r.items()}
            for r in await cur.fetchall()
        ]


async def read_source(database_url: str, organization_id: str = "") -> SourceSnapshot:
    """Every source row of each entity, and the Zoho ids of the organisation's entity map."""
    rows = {
        entity_type: await fetch_rows(
            database_url,
            f"SELECT * FROM {entity_type.table} ORDER BY {comparison_of(entity_type).key_column}",  # noqa: S608 - fixed names
        )
        for entity_type in registered()
    }
    mapped = await fetch_rows(
        database_url,
        "SELECT entity_type, entity_id, zoho_id, zoho_status, zoho_ahead FROM zoho_entity_map"
        " WHERE organization_id = %s AND zoho_id IS NOT NULL",
        (organization_id,),
    )
    live = await fetch_rows(database_url, "SELECT organization_id FROM zoho_live_organization")
    return SourceSnapshot(
        **{_SNAPSHOT_FIELDS[t]: found for t, found in rows.items()},
        entity_map={(r["entity_type"], r["entity_id"]): r["zoho_id"] for r in mapped},
        source_ids=not live or live[0]["organization_id"] == organization_id,
        map_status={(r["entity_type"], r["entity_id"]): (r["zoho_status"], r["zoho_ahead"]) for r in mapped},
    )


async def current_rows(
    database_url: str, entity_type: EntityType, ids: Iterable[str]
) -> list[dict[str, Any]]:
    """The source rows with these ids as they are now, in id order."""
    wanted = [uuid.UUID(i) for i in ids]
    if not wanted:
        return []
    return await fetch_rows(
        database_url,
        f"SELECT * FROM {entity_type.table} WHERE id = ANY(%s) ORDER BY id",  # noqa: S608 - fixed names
        (wanted,),
    )


async def read_zoho(client: Any, source: SourceSnapshot, *, details: bool = True) -> ZohoSnapshot:
    """List every record of each entity; read a customer's full record when the list does not show
    its account number, or (with `details`) when it stands for a source row, to compare the
    fields the list leaves out (billing address)."""
    listed = {t: [r async for r in _ZOHO_LISTS[t](client)] for t in registered()}
    snapshot = ZohoSnapshot(**{_SNAPSHOT_FIELDS[t]: records for t, records in listed.items()})
    # Only a customer's full record shows more than its list item (billing address, custom fields).
    wanted_keys = {str(c.get("account_number")) for c in source.customers}
    wanted_ids = {z for c in source.customers for z in source.mapped(EntityType.CUSTOMER, c)}
    wanted_ids |= {z for (kind, _), z in source.entity_map.items() if kind == EntityType.CUSTOMER.value}
    label, column = client.config.account_number_field, client.config.account_number_list_filter
    for index, item in enumerate(snapshot.customers):
        zoho_id = str(item["customer_id"])
        shown = account_number_of(item, label, column)
        if shown is None or (details and (shown in wanted_keys or zoho_id in wanted_ids)):
            snapshot.customers[index] = await client.get_customer(zoho_id)
            snapshot.detailed.add((EntityType.CUSTOMER, zoho_id))
    return snapshot
