"""How an invoice is compared with its Zoho record (reconcile, resync): derived from `invoice_payload`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any

from consumer.entities.comparison import EntityComparison, ZohoView, cents, text
from consumer.entities.invoices.payload import invoice_payload
from consumer.entities.invoices.status import invoice_source_stage, zoho_invoice_stage


def invoice_number_of(record: Mapping[str, Any]) -> str | None:
    """The number a Zoho invoice shows (`invoice_number`, `number` in some list shapes)."""
    value = record.get("invoice_number", record.get("number"))
    return str(value) if value else None


def _same_stage(want: str, shown: str, _expected: Mapping[str, str]) -> bool:
    return zoho_invoice_stage(shown or None) == want  # overdue and partially paid count as sent


def _same_amount(want: str, shown: str, _expected: Mapping[str, str]) -> bool:
    return bool(shown) and Decimal(want) == Decimal(shown)


class InvoiceComparison(EntityComparison):
    zoho_id_field = "invoice_id"
    key_column = "invoice_number"
    name_field = "customer_name"
    agrees = {"status": _same_stage, "total": _same_amount}

    def pages(self, client: Any, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        pages: AsyncIterator[dict[str, Any]] = client.iter_invoices(**filters)
        return pages

    def created(self, row: Mapping[str, Any]) -> bool:
        return invoice_source_stage(row) != "void"  # a void invoice is never created only to be voided

    def expected(self, row: Mapping[str, Any], view: ZohoView, parent_zoho_id: str | None) -> dict[str, str]:
        # Line items and the reference number are not in Zoho's invoice list, so they are not compared
        # (the entity map's payload hash stands for them); without line_items the builder cannot fail.
        payload = invoice_payload({k: v for k, v in row.items() if k != "line_items"}, parent_zoho_id or "")
        out = {"invoice_number": payload.get("invoice_number", "")}
        out |= {name: payload[name] for name in ("date", "due_date") if name in payload}
        # The items and the adjustment the builder sends add up to total_amount to the cent, by design.
        total = cents(row.get("total_amount"))
        if total is not None:
            out["total"] = str(total)
        out["status"] = invoice_source_stage(row)  # draft, sent, paid or void
        if parent_zoho_id:
            out["customer_id"] = parent_zoho_id
        return out

    def read(self, record: Mapping[str, Any], name: str, view: ZohoView) -> str | None:
        if name == "invoice_number":
            return text(invoice_number_of(record))
        if name == "date":
            return text(record.get("date") or record.get("invoice_date"))
        if name == "total":
            total = cents(record.get("total"))
            return "" if total is None else str(total)
        if name == "customer_id":
            return text(record.get("customer_id")) or None  # a list item may leave it out
        return text(record.get(name))

    def natural_key(self, record: Mapping[str, Any], view: ZohoView) -> str | None:
        return invoice_number_of(record)
