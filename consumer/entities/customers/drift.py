"""How a customer is compared with its Zoho record (reconcile, resync): derived from `customer_payload`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

from connectors.zoho.resources.customers import account_number_of, disambiguated_name
from consumer.entities.comparison import EntityComparison, ZohoView, text
from consumer.entities.customers.rules import customer_payload, customer_zoho_status, is_internal_test

_CUSTOMER_TEXT_FIELDS: Final = ("display_name", "first_name", "last_name", "company_name", "phone", "email")


def _same_display_name(want: str, shown: str, expected: Mapping[str, str]) -> bool:
    # A name Zoho already held for another customer is sent again with the account number appended.
    return shown in (want, disambiguated_name(want, expected.get("account_number", "")))


def _same_email(want: str, shown: str, _expected: Mapping[str, str]) -> bool:
    return want.lower() == shown.lower()  # Zoho keeps an address in the case it was typed


class CustomerComparison(EntityComparison):
    zoho_id_field = "customer_id"
    key_column = "account_number"
    name_field = "display_name"
    agrees = {"display_name": _same_display_name, "email": _same_email}
    # The list items carry no status: each status is read with its own listing.
    status_filters = {"Status.Active": "active", "Status.Inactive": "inactive"}

    def pages(self, client: Any, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        pages: AsyncIterator[dict[str, Any]] = client.iter_customers(**filters)
        return pages

    def sent(self, row: Mapping[str, Any]) -> bool:
        return not is_internal_test(row)

    def created(self, row: Mapping[str, Any]) -> bool:
        return not is_internal_test(row)

    def expected(self, row: Mapping[str, Any], view: ZohoView, parent_zoho_id: str | None) -> dict[str, str]:
        status = {"status": customer_zoho_status(row, view.mapping)}
        if is_internal_test(row):  # never synced; one that once was must be inactive, nothing more
            return status
        # currency_code is not compared: Zoho takes it on create only, and a customer keeps it.
        payload = customer_payload(row, view.mapping)
        out = {name: payload[name] for name in _CUSTOMER_TEXT_FIELDS if name in payload}
        for custom in payload.get("custom_fields", ()):
            if custom["label"] == view.mapping.account_number_field:
                out["account_number"] = custom["value"]
        address = payload.get("billing_address", {})
        out |= {f"billing_address.{part}": value for part, value in address.items()}
        return out | status

    def read(self, record: Mapping[str, Any], name: str, view: ZohoView) -> str | None:
        if name == "status":
            return text(record.get("status")) or "active"  # an active customer's list item may omit it
        if name == "account_number":
            return self.natural_key(record, view)
        if name.startswith("billing_address."):
            if not view.detailed:  # list items carry no address
                return None
            address = record.get("billing_address")
            return text(address.get(name.split(".", 1)[1])) if isinstance(address, Mapping) else ""
        return text(record.get(name))

    def natural_key(self, record: Mapping[str, Any], view: ZohoView) -> str | None:
        return account_number_of(dict(record), view.mapping.account_number_field, view.list_filter)
