"""Simulated Billing invoices: create (keeping our number or numbering them), update, void, open, list.

Line items must name an existing catalogue item (`product_id`, required by the spec unless
`require_product_id` is off); totals are the items plus the invoice-level adjustment. Void and paid
invoices refuse edits, invoices with payments refuse deletion, and voiding unapplies its payments.
"""

from __future__ import annotations

from typing import Any

from connectors.zoho.wire.protocol import (
    CODE_ALREADY_EXISTS,
    CODE_INVALID_INPUT,
    CODE_INVALID_VALUE,
    CODE_ITEM_NOT_FOUND,
    CODE_NOT_FOUND,
)
from connectors.zoho_sim.envelopes import (
    Reply,
    Resource,
    error,
    id_order,
    invalid,
    is_date,
    merge_custom_fields,
    of_status,
    paged,
    success,
    timestamp,
)

FIRST_LINE_ID = 903000000500001
INVOICE_FIELDS = (
    "customer_id date due_date reference_number payment_terms payment_terms_label notes terms discount "
    "is_discount_before_tax discount_type is_inclusive_tax exchange_rate salesperson_name shipping_charge "
    "adjustment adjustment_description allow_partial_payments template_id"
).split()
STATUS_FILTERS = {
    "Status.All": None,
    "Status.Draft": "draft",
    "Status.Sent": "sent",
    "Status.Void": "void",
    "Status.Unpaid": "sent",
    "Status.Paid": "paid",
    "Status.OverDue": "overdue",
    "Status.PartiallyPaid": "partially_paid",
}


def adjustment(body: dict[str, Any]) -> float:
    try:
        return float(body.get("adjustment") or 0)
    except (TypeError, ValueError):
        return 0.0


def _keeps_number(query: dict[str, str]) -> bool:
    return query.get("ignore_auto_number_generation", "false").lower() == "true"


class Invoices(Resource):
    kind = "invoice"
    label = "Invoice"

    def _number_taken(self, number: str, own_id: str | None = None) -> bool:
        return any(r["invoice_number"] == number and rid != own_id for rid, r in self.store.invoices.items())

    def _line(self, index: int, item: Any) -> dict[str, Any] | Reply:
        price = item.get("price", item.get("rate")) if isinstance(item, dict) else None
        try:
            price = float(price)
            quantity = float(item.get("quantity", 1))
        except (TypeError, ValueError):
            return invalid("invoice_items.price", CODE_INVALID_INPUT)
        product_id = str(item.get("product_id") or "")
        if product_id and product_id not in self.store.items:
            return error(400, CODE_ITEM_NOT_FOUND, "Item does not exist.")
        if not product_id and self.config.require_product_id:
            # The spec (create-an-invoice-request) marks product_id required on every line.
            return invalid("invoice_items.product_id", CODE_INVALID_INPUT)
        discount = float(item.get("discount_amount", 0) or 0)
        return {
            "item_id": str(FIRST_LINE_ID + index),
            "product_id": product_id,
            "name": item.get("name", ""),
            "description": item.get("description", ""),
            "price": price,
            "bcy_rate": price,
            "quantity": quantity,
            "discount_amount": discount,
            "item_total": round(price * quantity - discount, 2),
            "item_order": index + 1,
        }

    def _lines(self, given: Any) -> list[dict[str, Any]] | Reply:
        if not isinstance(given, list) or not given:
            return invalid("invoice_items", CODE_INVALID_INPUT)
        out = []
        for index, item in enumerate(given):
            line = self._line(index, item)
            if isinstance(line, tuple):
                return line
            out.append(line)
        return out

    def shown(self, record: dict[str, Any]) -> dict[str, Any]:
        """The invoice as Billing shows it: with its customer's name and the payments applied to it."""
        customer = self.store.customers.get(record["customer_id"], {})
        view = {k: v for k, v in record.items() if k != "payment_ids"}
        view["payments"] = [
            {
                "payment_id": p["payment_id"],
                "payment_mode": p["payment_mode"],
                "reference_number": p.get("reference_number", ""),
                "date": p["date"],
                "amount": next(
                    i["amount_applied"] for i in p["invoices"] if i["invoice_id"] == record["invoice_id"]
                ),
            }
            for pid in record.get("payment_ids", [])
            if (p := self.store.payments.get(pid)) is not None
        ]
        return {**view, "customer_name": customer.get("display_name", record.get("customer_name", ""))}

    def _new_number(self, body: dict[str, Any], query: dict[str, str]) -> str | Reply:
        if not _keeps_number(query):
            while True:
                number = f"INV-{self.store.take_invoice_number():06d}"
                if not self._number_taken(number):
                    return number
        given = body.get("invoice_number")
        if not isinstance(given, str) or not given.strip():
            return invalid("invoice_number", CODE_INVALID_INPUT)
        if self._number_taken(given):
            return error(400, CODE_ALREADY_EXISTS, f'Invoice "{given}" already exists.')
        return given

    def create(self, body: dict[str, Any], query: dict[str, str]) -> Reply:
        customer = self.store.customers.get(str(body.get("customer_id", "")))
        if customer is None:
            return error(400, CODE_NOT_FOUND, "Customer does not exist.")
        if not is_date(body.get("date")):
            return invalid("date", CODE_INVALID_INPUT)
        items = self._lines(body.get("invoice_items"))
        if isinstance(items, tuple):
            return items
        number = self._new_number(body, query)
        if isinstance(number, tuple):
            return number
        rid = self.store.new_id()
        total = round(sum(i["item_total"] for i in items), 2)
        now = timestamp()
        record = {
            "invoice_id": rid,
            "invoice_number": number,
            **{k: body[k] for k in INVOICE_FIELDS if k in body},
            "customer_id": customer["customer_id"],
            "status": "sent" if query.get("send", "false").lower() == "true" else "draft",
            "currency_code": customer.get("currency_code", self.config.currency_code),
            "currency_id": "903000000000097",
            "exchange_rate": body.get("exchange_rate", 1.0),
            "invoice_items": items,
            "custom_fields": merge_custom_fields([], body.get("custom_fields") or []),
            "sub_total": total,
            # Zoho's total is the items plus the invoice-level adjustment (where zoho-cdc puts VAT).
            **opening_figures(round(total + adjustment(body), 2), now),
        }
        record.setdefault("due_date", record["date"])
        return self.saved(201, "The invoice has been created.", rid, record)

    def _edit_refused(self, record: dict[str, Any], body: dict[str, Any]) -> Reply | None:
        if record["status"] == "void":
            return error(400, CODE_INVALID_INPUT, "This operation is not allowed for void invoices.")
        if record["status"] == "paid":
            return error(400, CODE_INVALID_INPUT, "Paid invoices cannot be edited.")
        if "customer_id" in body and str(body["customer_id"]) not in self.store.customers:
            return error(400, CODE_NOT_FOUND, "Customer does not exist.")
        if "date" in body and not is_date(body["date"]):
            return invalid("date", CODE_INVALID_INPUT)
        return None

    def update(self, rid: str, body: dict[str, Any], query: dict[str, str]) -> Reply:
        record = self.store.invoices.get(rid)
        if record is None:
            return self.not_found()
        if (refused := self._edit_refused(record, body)) is not None:
            return refused
        updated = {**record, **{k: body[k] for k in INVOICE_FIELDS if k in body}}
        if "invoice_items" in body:  # items left out are deleted, as in Zoho
            items = self._lines(body["invoice_items"])
            if isinstance(items, tuple):
                return items
            sub_total = round(sum(i["item_total"] for i in items), 2)
            total = round(sub_total + adjustment(updated), 2)
            paid = record["payment_made"] + record["credits_applied"]
            updated.update(
                invoice_items=items, sub_total=sub_total, total=total, balance=round(total - paid, 2)
            )
        number = body.get("invoice_number")
        if _keeps_number(query) and isinstance(number, str) and number != record["invoice_number"]:
            if self._number_taken(number, own_id=rid):
                return error(400, CODE_ALREADY_EXISTS, f'Invoice "{number}" already exists.')
            updated["invoice_number"] = number
        if "custom_fields" in body:
            updated["custom_fields"] = merge_custom_fields(record["custom_fields"], body["custom_fields"])
        updated["last_modified_time"] = timestamp()
        return self.saved(200, "Invoice information has been updated.", rid, updated)

    def void(self, rid: str) -> Reply:
        record = self.store.invoices.get(rid)
        if record is None:
            return self.not_found()
        # Voiding unassociates payments (they become customer credits, not modelled here).
        for pid in record.get("payment_ids", []):
            payment = self.store.payments.get(pid)
            if payment is not None:
                kept = [i for i in payment["invoices"] if i["invoice_id"] != rid]
                self.store.put("payment", pid, {**payment, "invoices": kept})
        voided = {**record, "status": "void", "balance": 0.0, "payment_made": 0.0, "payment_ids": []}
        self.store.put("invoice", rid, {**voided, "last_modified_time": timestamp()})
        return success(200, "Invoice status has been changed to Void.")

    def convert_to_open(self, rid: str) -> Reply:
        record = self.store.invoices.get(rid)
        if record is None:
            return self.not_found()
        if record["status"] != "draft":
            return error(400, CODE_INVALID_INPUT, "Only draft invoices can be converted to open.")
        self.store.put("invoice", rid, {**record, "status": "sent", "last_modified_time": timestamp()})
        return success(200, "Status of the invoice has been changed to open.")

    def delete(self, rid: str) -> Reply:
        record = self.store.invoices.get(rid)
        if record is None:
            return self.not_found()
        if record.get("payment_ids"):
            return error(400, CODE_INVALID_INPUT, "Invoices with payments applied cannot be deleted.")
        self.store.delete("invoice", rid)
        return success(200, "The invoice has been deleted.")

    def _list_item(self, r: dict[str, Any]) -> dict[str, Any]:
        return {
            "invoice_id": r["invoice_id"],
            "number": r["invoice_number"],
            "status": r["status"],
            "invoice_date": r["date"],
            "due_date": r.get("due_date"),
            "customer_id": r["customer_id"],
            "customer_name": r["customer_name"],
            "email": self.store.customers.get(r["customer_id"], {}).get("email", ""),
            "balance": r["balance"],
            "total": r["total"],
            "currency_code": r["currency_code"],
            "currency_symbol": "R" if r["currency_code"] == "ZAR" else "$",
            "has_attachment": False,
            "created_time": r["created_time"],
            "updated_time": r["last_modified_time"],
        }

    def list_page(self, query: dict[str, str]) -> Reply:
        records = of_status([self.shown(r) for r in self.store.invoices.values()], query, STATUS_FILTERS)
        if records is None:
            return invalid("filter_by", CODE_INVALID_VALUE)
        if "customer_id" in query:
            records = [r for r in records if r["customer_id"] == query["customer_id"]]
        for key in ("invoice_number", "number"):
            if key in query:
                records = [r for r in records if r["invoice_number"] == query[key]]
        if text := query.get("search_text", "").lower():
            records = [
                r
                for r in records
                if text in r["invoice_number"].lower() or text in r["customer_name"].lower()
            ]
        records.sort(key=lambda r: id_order(r["invoice_id"]))
        items = [self._list_item(r) for r in records]
        return paged(items, "invoices", query, query.get("filter_by", "Status.All"))


def opening_figures(total: float, now: str) -> dict[str, Any]:
    """The money and time fields of an invoice no one has paid yet: its whole total is its balance."""
    return {
        "tax_total": 0.0,
        "total": total,
        "balance": total,
        "payment_made": 0.0,
        "credits_applied": 0.0,
        "write_off_amount": 0.0,
        "price_precision": 2,
        "created_time": now,
        "last_modified_time": now,
    }
