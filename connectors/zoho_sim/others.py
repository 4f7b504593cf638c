"""Records made by others: customers and invoices a person or an older integration put in Zoho.

They are stored as they are given (any id, no Account Number custom field unless given), with the
fields Zoho derives filled in, so the simulator answers for them exactly as for its own records. Ids
must be unique across the store; a record that is not well formed is refused with one sentence.
"""

from __future__ import annotations

from typing import Any

from connectors.zoho_sim.envelopes import timestamp
from connectors.zoho_sim.resources.invoices import opening_figures
from connectors.zoho_sim.store import RecordStore


class NotLoadable(ValueError):
    """Raised when a record made by others cannot be stored as given (one sentence says why)."""


def load_records(store: RecordStore, given: dict[str, Any], currency_code: str) -> dict[str, list[str]]:
    """Store `given["customers"]` then `given["invoices"]`; returns the ids stored, by kind.

    Checked before anything is stored, so a refused load leaves the store as it was."""
    customers = [_customer(c, currency_code) for c in given.get("customers") or []]
    known = set(store.customers) | {c["customer_id"] for c in customers}
    invoices = [_invoice(i, known, store) for i in given.get("invoices") or []]
    ids = [c["customer_id"] for c in customers] + [i["invoice_id"] for i in invoices]
    taken = [rid for rid in ids if rid in store.customers or rid in store.invoices]
    if taken or len(set(ids)) != len(ids):
        raise NotLoadable(f"record ids must be new and unique; taken or repeated: {taken or ids}")
    for customer in customers:
        store.put("customer", customer["customer_id"], customer)
    for invoice in invoices:
        store.put("invoice", invoice["invoice_id"], invoice)
    return {
        "customers": [c["customer_id"] for c in customers],
        "invoices": [i["invoice_id"] for i in invoices],
    }


def _id(record: dict[str, Any], field: str) -> str:
    value = record.get(field)
    if not isinstance(value, str | int) or not str(value).strip():
        raise NotLoadable(f"a record made by others needs a non-empty {field}")
    return str(value)


def _customer(given: dict[str, Any], currency_code: str) -> dict[str, Any]:
    rid = _id(given, "customer_id")
    if not str(given.get("display_name") or "").strip():
        raise NotLoadable(f"customer {rid} needs a display_name")
    now = timestamp()
    return {
        "currency_code": currency_code,
        "currency_id": "903000000000097",
        "status": "active",
        "unused_credits": 0.0,
        "outstanding": 0.0,
        "price_precision": 2,
        "email": "",
        "custom_fields": [],
        "created_time": now,
        "updated_time": now,
        **given,
        "customer_id": rid,
    }


def _invoice(given: dict[str, Any], customers: set[str], store: RecordStore) -> dict[str, Any]:
    rid = _id(given, "invoice_id")
    number = _id(given, "invoice_number")
    customer = _id(given, "customer_id")
    if customer not in customers:
        raise NotLoadable(f"invoice {rid} names customer {customer}, which is not in the simulator")
    total = float(given.get("total") or 0)
    now = timestamp()
    return {
        "date": now[:10],
        "status": "sent",
        "currency_code": (store.customers.get(customer) or {}).get("currency_code", "ZAR"),
        "customer_name": (store.customers.get(customer) or {}).get("display_name", ""),
        "invoice_items": [],
        "custom_fields": [],
        "reference_number": "",
        "sub_total": total,
        **opening_figures(total, now),
        **given,
        "invoice_id": rid,
        "invoice_number": number,
        "customer_id": customer,
    }
