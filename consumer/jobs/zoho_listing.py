"""What Zoho holds, read page by page (200 records a call) for a resync, and compared field by field.

A resync used to distrust every stored payload hash and write every entity again (and read each invoice
with its own call). With a listing it writes only what differs: an entity whose listed fields match the
mapping and whose stored payload hash matches what it would send costs no call at all.

What the listings show (Billing's OpenAPI `list-all-customers-response` / `list-all-invoices-response`):

- customers: names, company, email, phone; **not** the status (read by listing `Status.Active` and
  `Status.Inactive` apart), the billing address or the custom fields (the account number). Those are
  trusted to the entity map's payload hash of what Zoho last acknowledged: a billing address edited by
  hand in Zoho is not seen by a resync (`zoho-cdc reconcile`, without `--quick`, reads each customer in
  full and finds it). A `cf_*` column, where Zoho adds one to the list, also matches by account number.
- invoices: number, date, due date, total, status, customer; **not** the line items or the reference
  number, trusted to the payload hash the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from consumer.entities.comparison import ZohoView, drift
from consumer.entities.registry import comparison_of, spec_of, specs
from consumer.model.events import EntityType
from consumer.model.plan import MappingConfig


@dataclass
class ZohoListing:
    """Zoho's records of each listed entity by id and by natural key, as listed when the resync started."""

    account_number_field: str
    list_filter: str
    records: dict[EntityType, dict[str, dict[str, Any]]] = field(default_factory=dict)
    by_key: dict[EntityType, dict[str, str]] = field(default_factory=dict)
    reads: int = 0  # list pages read

    @classmethod
    async def read(cls, client: Any, entity_types: Iterable[EntityType]) -> ZohoListing:
        """List every record of these types and of their parents (a child needs its parent's record)."""
        listing = cls(client.config.account_number_field, client.config.account_number_list_filter)
        wanted = set(entity_types)
        wanted |= {parent.entity for t in entity_types if (parent := spec_of(t).parent) is not None}
        with client.tracking() as tracker:
            for spec in specs():
                if spec.entity in wanted:
                    await listing._list(client, spec.entity)
        listing.reads = tracker.attempts
        return listing

    async def _list(self, client: Any, entity_type: EntityType) -> None:
        spec = comparison_of(entity_type)
        # Reading a natural key needs only the account-number label, which the client's config names.
        view = ZohoView(MappingConfig(account_number_field=self.account_number_field), self.list_filter)
        records: dict[str, dict[str, Any]] = {}
        keys: dict[str, str] = {}
        for status_filter, status in spec.status_filters.items():
            filters = {} if status_filter is None else {"filter_by": status_filter}
            async for item in spec.pages(client, **filters):
                zoho_id = spec.zoho_id(item)
                records[zoho_id] = item if status is None else {**item, "status": status}
                key = spec.natural_key(item, view)
                if key:
                    keys.setdefault(key, zoho_id)  # the first listed carrying the key
        self.records[entity_type] = records
        self.by_key[entity_type] = keys

    def covers(self, entity_type: EntityType) -> bool:
        return entity_type in self.records

    def has(self, entity_type: EntityType, zoho_id: str | None) -> bool:
        return zoho_id is not None and zoho_id in self.records.get(entity_type, {})

    def find(
        self, entity_type: EntityType, zoho_id: str | None, natural_key: str | None
    ) -> dict[str, Any] | None:
        """The listed record: by the id we hold, else by natural key (when the listing shows it)."""
        records = self.records.get(entity_type, {})
        if zoho_id is not None and zoho_id in records:
            return records[zoho_id]
        found = self.by_key.get(entity_type, {}).get(natural_key or "")
        return records.get(found) if found else None

    def differs(
        self,
        entity_type: EntityType,
        row: Mapping[str, Any],
        record: Mapping[str, Any],
        mapping: MappingConfig,
        customer_zoho_id: str | None = None,
    ) -> bool:
        """True when a listed field differs from what the mapping sends (status aside: the plan's
        status rules compare it, from the record's `status`)."""
        found = drift(
            comparison_of(entity_type), row, record, ZohoView(mapping, self.list_filter), customer_zoho_id
        )
        return any(name != "status" for name in found)

    @staticmethod
    def zoho_id_of(entity_type: EntityType, record: Mapping[str, Any]) -> str:
        return comparison_of(entity_type).zoho_id(record)
