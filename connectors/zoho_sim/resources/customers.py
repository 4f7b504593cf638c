"""Simulated Billing customers: create, read, update, delete, (in)activate and list with filters.

Validation follows what Billing answers: a display name is required, an email must look like one
(and may be required), display names are unique (code 3062) when `unique_display_names` is on, and
custom fields are set by label. Lists show Books-style `cf_<label>` columns for custom fields.
"""

from __future__ import annotations

from typing import Any

from connectors.zoho.config import custom_field_filter
from connectors.zoho.wire.protocol import CODE_DUPLICATE_NAME, CODE_INVALID_INPUT, CODE_INVALID_VALUE
from connectors.zoho_sim.envelopes import (
    EMAIL,
    Reply,
    Resource,
    error,
    id_order,
    invalid,
    merge_custom_fields,
    of_status,
    paged,
    success,
    timestamp,
)

CUSTOMER_FIELDS = (
    "display_name salutation first_name last_name email company_name phone mobile department designation "
    "website billing_address shipping_address payment_terms payment_terms_label currency_code notes "
    "is_portal_enabled ach_supported tags"
).split()
CUSTOMER_LIST_FIELDS = (
    "customer_id display_name salutation first_name last_name email tags company_name phone mobile website "
    "department designation currency_code unused_credits outstanding status created_time updated_time"
).split()
STATUS_FILTERS = {"Status.All": None, "Status.Active": "active", "Status.Inactive": "inactive"}


class Customers(Resource):
    kind = "customer"
    label = "Customer"

    def _validate(self, body: dict[str, Any], *, creating: bool, own_id: str | None = None) -> Reply | None:
        name = body.get("display_name")
        if creating or "display_name" in body:
            if not isinstance(name, str) or not name.strip():
                return invalid("display_name", CODE_INVALID_INPUT)
        email = body.get("email")
        if email not in (None, ""):
            if not isinstance(email, str) or not EMAIL.match(email):
                return invalid("email", CODE_INVALID_VALUE)
        elif creating and self.config.require_email:
            return invalid("email", CODE_INVALID_INPUT)
        if name and self.config.unique_display_names:
            for rid, other in self.store.customers.items():
                if rid != own_id and other["display_name"].strip().lower() == name.strip().lower():
                    message = f'The customer "{name}" already exists. Please specify a different name.'
                    return error(400, CODE_DUPLICATE_NAME, message)
        fields = body.get("custom_fields", [])
        if not isinstance(fields, list) or not all(isinstance(f, dict) and "label" in f for f in fields):
            return invalid("custom_fields", CODE_INVALID_INPUT)
        return None

    def _defined(self, fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The custom fields whose label the organisation defines (the others are dropped: a guess)."""
        defined = self.config.customer_custom_fields
        return fields if defined is None else [f for f in fields if f["label"] in defined]

    def create(self, body: dict[str, Any]) -> Reply:
        if (failure := self._validate(body, creating=True)) is not None:
            return failure
        rid = self.store.new_id()
        now = timestamp()
        record = {
            "customer_id": rid,
            **{k: body[k] for k in CUSTOMER_FIELDS if k in body},
            "currency_code": body.get("currency_code") or self.config.currency_code,
            "currency_id": "903000000000097",
            "status": "active",
            "unused_credits": 0.0,
            "outstanding": 0.0,
            "price_precision": 2,
            "custom_fields": merge_custom_fields([], self._defined(body.get("custom_fields") or [])),
            "created_time": now,
            "updated_time": now,
        }
        record.setdefault("email", "")
        return self.saved(201, "The customer has been created", rid, record)

    def update(self, rid: str, body: dict[str, Any]) -> Reply:
        record = self.store.customers.get(rid)
        if record is None:
            return self.not_found()
        if (failure := self._validate(body, creating=False, own_id=rid)) is not None:
            return failure
        updated = {
            **record,
            **{k: body[k] for k in CUSTOMER_FIELDS if k in body},
            "updated_time": timestamp(),
        }
        if "custom_fields" in body:
            updated["custom_fields"] = merge_custom_fields(
                record["custom_fields"], self._defined(body["custom_fields"])
            )
        return self.saved(200, "The customer details have been updated.", rid, updated)

    def delete(self, rid: str) -> Reply:
        if rid not in self.store.customers:
            return self.not_found()
        self.store.delete("customer", rid)
        return success(200, "The customer has been deleted.")

    def set_status(self, rid: str, status: str) -> Reply:
        record = self.store.customers.get(rid)
        if record is None:
            return self.not_found()
        self.store.put("customer", rid, {**record, "status": status, "updated_time": timestamp()})
        return success(200, f"The customer has been marked as {status}.")

    def _list_item(self, record: dict[str, Any]) -> dict[str, Any]:
        item = {k: record.get(k) for k in CUSTOMER_LIST_FIELDS}
        if self.config.list_custom_fields:  # Books-style cf_<name> columns (Billing's list schema has none)
            # The organisation's account-number field is a column of every item, empty where unset.
            item[custom_field_filter(self.config.account_number_label)] = ""
            for f in record.get("custom_fields", []):
                item[custom_field_filter(f["label"])] = f.get("value")
        return item

    def list_page(self, query: dict[str, str]) -> Reply:
        items = of_status([self._list_item(r) for r in self.store.customers.values()], query, STATUS_FILTERS)
        if items is None:
            return invalid("filter_by", CODE_INVALID_VALUE)
        if "email" in query:
            items = [i for i in items if (i.get("email") or "").lower() == query["email"].lower()]
        for key, value in query.items():
            if key.startswith("cf_"):
                items = [i for i in items if str(i.get(key, "")) == value]
        if text := query.get("search_text", "").lower():
            items = [i for i in items if text in " ".join(str(v) for v in i.values() if v).lower()]
        if name := query.get("display_name_contains", "").lower():
            items = [i for i in items if name in (i.get("display_name") or "").lower()]
        items.sort(key=lambda i: id_order(i["customer_id"]))
        return paged(items, "customers", query, query.get("filter_by", "Status.All"))
