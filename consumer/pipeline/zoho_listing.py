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

from connectors.zoho.customers import account_number_of
from consumer.jobs.reconcile import _customer_drift, _invoice_drift, _invoice_number
from consumer.pipeline.events import EntityType
from consumer.pipeline.plan import MappingConfig

#: Customer statuses, each read with its own listing (the list items carry no status).
CUSTOMER_STATUS_FILTERS = {"Status.Active": "active", "Status.Inactive": "inactive"}


@dataclass
class ZohoListing:
    """Zoho's customers and invoices by id and by natural key, as listed when the resync started."""

    account_number_field: str
    list_filter: str
    records: dict[EntityType, dict[str, dict[str, Any]]] = field(default_factory=dict)
    by_key: dict[EntityType, dict[str, str]] = field(default_factory=dict)
    reads: int = 0  # list pages read

    @classmethod
    async def read(cls, client: Any, entity_types: Iterable[EntityType]) -> ZohoListing:
        """List every record of these types (customers are always listed: invoices need them)."""
        listing = cls(client.config.account_number_field, client.config.account_number_list_filter)
        wanted = set(entity_types) | {EntityType.CUSTOMER}
        with client.tracking() as tracker:
            customers: dict[str, dict[str, Any]] = {}
            keys: dict[str, str] = {}
            for status_filter, status in CUSTOMER_STATUS_FILTERS.items():
                async for item in client.iter_customers(filter_by=status_filter):
                    zoho_id = str(item["customer_id"])
                    customers[zoho_id] = {**item, "status": status}
                    key = account_number_of(item, listing.account_number_field, listing.list_filter)
                    if key:
                        keys.setdefault(key, zoho_id)
            listing.records[EntityType.CUSTOMER] = customers
            listing.by_key[EntityType.CUSTOMER] = keys
            if EntityType.INVOICE in wanted:
                invoices: dict[str, dict[str, Any]] = {}
                numbers: dict[str, str] = {}
                async for item in client.iter_invoices():
                    zoho_id = str(item["invoice_id"])
                    invoices[zoho_id] = item
                    number = _invoice_number(item)
                    if number:
                        numbers.setdefault(number, zoho_id)
                listing.records[EntityType.INVOICE] = invoices
                listing.by_key[EntityType.INVOICE] = numbers
        listing.reads = tracker.attempts
        return listing

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
        if entity_type is EntityType.CUSTOMER:
            drift = _customer_drift(row, record, mapping, self.list_filter, False)
        else:
            drift = _invoice_drift(row, record, customer_zoho_id)
        return any(name != "status" for name in drift)

    @staticmethod
    def zoho_id_of(entity_type: EntityType, record: Mapping[str, Any]) -> str:
        return str(record["customer_id"] if entity_type is EntityType.CUSTOMER else record["invoice_id"])
