"""Customer mapping rules: the Zoho customer body of a `customers` row, and the status it should have.

Pure. Columns absent from a row (unavailable TOAST values) are left out of the body, so a PUT leaves
Zoho's value alone; internal test accounts are never sent and are inactive if they once were.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from consumer.model import plan as rules
from consumer.model.plan import MappingConfig

INTERNAL_TEST_ACCOUNT_TYPE: Final = "internal_test"


_ADDRESS_KEYS: Final = ("street", "city", "state", "zip", "country")


CUSTOMER_CLOSED: Final = "closed"


CUSTOMER_SUSPENDED: Final = "suspended"


def is_internal_test(row: Mapping[str, Any]) -> bool:
    """Internal test accounts are never synced (and are marked inactive if they once were)."""
    return row.get("account_type") == INTERNAL_TEST_ACCOUNT_TYPE


def customer_zoho_status(row: Mapping[str, Any], config: MappingConfig) -> str:
    """The Zoho status a customer row should have: `closed` is inactive; `suspended` as configured
    (default active: a suspended account still owes); internal test accounts are inactive."""
    status = rules.as_text(row.get("status")).lower()
    if is_internal_test(row) or status == CUSTOMER_CLOSED:
        return "inactive"
    if status == CUSTOMER_SUSPENDED:
        return config.suspended_status
    return "active"


def customer_display_name(row: Mapping[str, Any]) -> str:
    """Company name, else "first last" (either part may be missing), else the account number."""
    company = rules.as_text(row.get("company_name"))
    if company:
        return company
    person = " ".join(
        p for p in (rules.as_text(row.get("first_name")), rules.as_text(row.get("last_name"))) if p
    )
    return person or rules.as_text(row.get("account_number"))


def customer_payload(
    row: Mapping[str, Any], config: MappingConfig, *, currency_code: str | None = None
) -> dict[str, Any]:
    """The Zoho customer create/update body for a customer row.

    Columns absent from `row` (unavailable TOAST values) are left out of the body, so a PUT
    leaves Zoho's value alone. Name and phone columns that are NULL are sent as "" so a value
    cleared in the source is cleared in Zoho; email is omitted when NULL/empty (Zoho rejects "").
    """
    payload: dict[str, Any] = {
        "display_name": customer_display_name(row),
        "currency_code": currency_code or config.default_currency,
    }
    for column in ("first_name", "last_name", "company_name", "phone"):
        if column in row:
            payload[column] = rules.as_text(row[column])
    email = rules.as_text(row.get("email"))
    if email:
        payload["email"] = email
    address = _billing_address(row.get("billing_address"))
    if address:
        payload["billing_address"] = address
    if "account_number" in row:
        payload["custom_fields"] = [
            {"label": config.account_number_field, "value": rules.as_text(row["account_number"])}
        ]
    return payload


def _billing_address(raw: Any) -> dict[str, str]:
    """Zoho's address keys from the jsonb, as strings; other keys and empty values are dropped."""
    if not isinstance(raw, Mapping):
        return {}
    out = {}
    for key in _ADDRESS_KEYS:
        value = raw.get(key)
        if isinstance(value, bool) or value is None or isinstance(value, dict | list):
            continue
        text = str(value).strip()
        if text:
            out[key] = text
    return out
