"""Customers, invoices, items and payments as Zoho Billing answers: validation, envelopes, filters, pages.

Each operation takes plain data and returns `(http_status, body)`; no HTTP here, so the rules can be
read (and tested) on their own. Envelopes and codes follow the reference, sections 4-7.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from connectors.zoho.config import custom_field_filter
from connectors.zoho.protocol import (
    CODE_ALREADY_EXISTS,
    CODE_DUPLICATE_NAME,
    CODE_INTERNAL,
    CODE_INVALID_INPUT,
    CODE_INVALID_VALUE,
    CODE_ITEM_NOT_FOUND,
    CODE_NOT_FOUND,
)
from connectors.zoho_sim.config import SimConfig
from connectors.zoho_sim.store import RecordStore

Reply = tuple[int, dict[str, Any]]

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_PER_PAGE = 200

CUSTOMER_FIELDS = (
    "display_name salutation first_name last_name email company_name phone mobile department designation "
    "website billing_address shipping_address payment_terms payment_terms_label currency_code notes "
    "is_portal_enabled ach_supported tags"
).split()
CUSTOMER_LIST_FIELDS = (
    "customer_id display_name salutation first_name last_name email tags company_name phone mobile website "
    "department designation currency_code unused_credits outstanding status created_time updated_time"
).split()
INVOICE_FIELDS = (
    "customer_id date due_date reference_number payment_terms payment_terms_label notes terms discount "
    "is_discount_before_tax discount_type is_inclusive_tax exchange_rate salesperson_name shipping_charge "
    "adjustment adjustment_description allow_partial_payments template_id"
).split()


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def error(status: int, code: int, message: str) -> Reply:
    return status, {"code": code, "message": message}


def _paged(items: list[dict[str, Any]], key: str, query: dict[str, str], applied: str) -> Reply:
    try:
        page = max(1, int(query.get("page", 1)))
        per_page = min(MAX_PER_PAGE, max(1, int(query.get("per_page", MAX_PER_PAGE))))
    except ValueError:
        return error(400, CODE_INVALID_VALUE, "Invalid value passed for page")
    chunk = items[(page - 1) * per_page : page * per_page]
    context = {
        "page": page,
        "per_page": per_page,
        "has_more_page": page * per_page < len(items),
        "applied_filter": applied,
        "sort_column": "created_time",
        "sort_order": "A",
    }
    return 200, {"code": 0, "message": "success", key: chunk, "page_context": context}


class Resources:
    def __init__(self, config: SimConfig, store: RecordStore) -> None:
        self.config = config
        self.store = store

    # --- customers ---------------------------------------------------------------------------

    def _not_found(self, what: str) -> Reply:
        return error(self.config.not_found_status, CODE_NOT_FOUND, f"{what} does not exist.")

    def _validate_customer(
        self, body: dict[str, Any], *, creating: bool, own_id: str | None = None
    ) -> Reply | None:
        name = body.get("display_name")
        if creating or "display_name" in body:
            if not isinstance(name, str) or not name.strip():
                return error(400, CODE_INVALID_INPUT, "Invalid value passed for display_name")
        email = body.get("email")
        if email not in (None, ""):
            if not isinstance(email, str) or not EMAIL.match(email):
                return error(400, CODE_INVALID_VALUE, "Invalid value passed for email")
        elif creating and self.config.require_email:
            return error(400, CODE_INVALID_INPUT, "Invalid value passed for email")
        if name and self.config.unique_display_names:
            for rid, other in self.store.customers.items():
                if rid != own_id and other["display_name"].strip().lower() == name.strip().lower():
                    message = f'The customer "{name}" already exists. Please specify a different name.'
                    return error(400, CODE_DUPLICATE_NAME, message)
        fields = body.get("custom_fields", [])
        if not isinstance(fields, list) or not all(isinstance(f, dict) and "label" in f for f in fields):
            return error(400, CODE_INVALID_INPUT, "Invalid value passed for custom_fields")
        return None

    @staticmethod
    def _merge_custom_fields(
        existing: list[dict[str, Any]], given: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        by_label = {f["label"]: dict(f) for f in existing}
        for f in given:
            by_label[f["label"]] = {"label": f["label"], "value": f.get("value"), "data_type": "string"}
        return [{**f, "index": i + 1} for i, f in enumerate(by_label.values())]

    def create_customer(self, body: dict[str, Any]) -> Reply:
        if (failure := self._validate_customer(body, creating=True)) is not None:
            return failure
        rid = self.store.new_id()
        now = _now()
        record = {
            "customer_id": rid,
            **{k: body[k] for k in CUSTOMER_FIELDS if k in body},
            "currency_code": body.get("currency_code") or self.config.currency_code,
            "currency_id": "903000000000097",
            "status": "active",
            "unused_credits": 0.0,
            "outstanding": 0.0,
            "price_precision": 2,
            "custom_fields": self._merge_custom_fields([], body.get("custom_fields") or []),
            "created_time": now,
            "updated_time": now,
        }
        record.setdefault("email", "")
        self.store.put("customer", rid, record)
        return 201, {"code": 0, "message": "The customer has been created", "customer": record}

    def get_customer(self, rid: str) -> Reply:
        record = self.store.customers.get(rid)
        if record is None:
            return self._not_found("Customer")
        return 200, {"code": 0, "message": "success", "customer": record}

    def update_customer(self, rid: str, body: dict[str, Any]) -> Reply:
        record = self.store.customers.get(rid)
        if record is None:
            return self._not_found("Customer")
        if (failure := self._validate_customer(body, creating=False, own_id=rid)) is not None:
            return failure
        updated = {**record, **{k: body[k] for k in CUSTOMER_FIELDS if k in body}, "updated_time": _now()}
        if "custom_fields" in body:
            updated["custom_fields"] = self._merge_custom_fields(
                record["custom_fields"], body["custom_fields"]
            )
        self.store.put("customer", rid, updated)
        return 200, {"code": 0, "message": "The customer details have been updated.", "customer": updated}

    def delete_customer(self, rid: str) -> Reply:
        if rid not in self.store.customers:
            return self._not_found("Customer")
        self.store.delete("customer", rid)
        return 200, {"code": 0, "message": "The customer has been deleted."}

    def set_customer_status(self, rid: str, status: str) -> Reply:
        record = self.store.customers.get(rid)
        if record is None:
            return self._not_found("Customer")
        self.store.put("customer", rid, {**record, "status": status, "updated_time": _now()})
        return 200, {"code": 0, "message": f"The customer has been marked as {status}."}

    def _list_item(self, record: dict[str, Any]) -> dict[str, Any]:
        item = {k: record.get(k) for k in CUSTOMER_LIST_FIELDS}
        for f in record.get("custom_fields", []):  # Books-style cf_<name> columns
            item[custom_field_filter(f["label"])] = f.get("value")
        return item

    def list_customers(self, query: dict[str, str]) -> Reply:
        status_filter = query.get("filter_by", "Status.All")
        wanted = {"Status.All": None, "Status.Active": "active", "Status.Inactive": "inactive"}
        if status_filter not in wanted:
            return error(400, CODE_INVALID_VALUE, "Invalid value passed for filter_by")
        items = [self._list_item(r) for r in self.store.customers.values()]
        if wanted[status_filter]:
            items = [i for i in items if i["status"] == wanted[status_filter]]
        if "email" in query:
            items = [i for i in items if (i.get("email") or "").lower() == query["email"].lower()]
        for key, value in query.items():
            if key.startswith("cf_"):
                items = [i for i in items if str(i.get(key, "")) == value]
        if text := query.get("search_text", "").lower():
            items = [i for i in items if text in " ".join(str(v) for v in i.values() if v).lower()]
        if name := query.get("display_name_contains", "").lower():
            items = [i for i in items if name in (i.get("display_name") or "").lower()]
        items.sort(key=lambda i: int(i["customer_id"]))
        return _paged(items, "customers", query, status_filter)

    # --- invoices ----------------------------------------------------------------------------

    def _number_taken(self, number: str, own_id: str | None = None) -> bool:
        return any(r["invoice_number"] == number and rid != own_id for rid, r in self.store.invoices.items())

    def _items(self, given: Any) -> list[dict[str, Any]] | Reply:
        if not isinstance(given, list) or not given:
            return error(400, CODE_INVALID_INPUT, "Invalid value passed for invoice_items")
        out = []
        for index, item in enumerate(given):
            price = item.get("price", item.get("rate")) if isinstance(item, dict) else None
            try:
                price = float(price)
                quantity = float(item.get("quantity", 1))
            except (TypeError, ValueError):
                return error(400, CODE_INVALID_INPUT, "Invalid value passed for invoice_items.price")
            product_id = str(item.get("product_id") or "")
            if product_id and product_id not in self.store.items:
                return error(400, CODE_ITEM_NOT_FOUND, "Item does not exist.")
            if not product_id and self.config.require_product_id:
                # The spec (create-an-invoice-request) marks product_id required on every line.
                return error(400, CODE_INVALID_INPUT, "Invalid value passed for invoice_items.product_id")
            discount = float(item.get("discount_amount", 0) or 0)
            out.append(
                {
                    "item_id": str(FIRST_ITEM_ID + index),
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
            )
        return out

    def _invoice_view(self, record: dict[str, Any]) -> dict[str, Any]:
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

    def create_invoice(self, body: dict[str, Any], query: dict[str, str]) -> Reply:
        customer = self.store.customers.get(str(body.get("customer_id", "")))
        if customer is None:
            return error(400, CODE_NOT_FOUND, "Customer does not exist.")
        if not isinstance(body.get("date"), str) or not DATE.match(body["date"]):
            return error(400, CODE_INVALID_INPUT, "Invalid value passed for date")
        items = self._items(body.get("invoice_items"))
        if isinstance(items, tuple):
            return items
        keep_number = query.get("ignore_auto_number_generation", "false").lower() == "true"
        if keep_number:
            number = body.get("invoice_number")
            if not isinstance(number, str) or not number.strip():
                return error(400, CODE_INVALID_INPUT, "Invalid value passed for invoice_number")
            if self._number_taken(number):
                return error(400, CODE_ALREADY_EXISTS, f'Invoice "{number}" already exists.')
        else:
            while True:
                number = f"INV-{self.store.take_invoice_number():06d}"
                if not self._number_taken(number):
                    break
        rid = self.store.new_id()
        total = round(sum(i["item_total"] for i in items), 2)
        now = _now()
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
            "custom_fields": self._merge_custom_fields([], body.get("custom_fields") or []),
            "sub_total": total,
            "tax_total": 0.0,
            # Zoho's total is the items plus the invoice-level adjustment (where zoho-cdc puts VAT).
            "total": round(total + _adjustment(body), 2),
            "balance": round(total + _adjustment(body), 2),
            "payment_made": 0.0,
            "credits_applied": 0.0,
            "write_off_amount": 0.0,
            "price_precision": 2,
            "created_time": now,
            "last_modified_time": now,
        }
        record.setdefault("due_date", record["date"])
        self.store.put("invoice", rid, record)
        return 201, {
            "code": 0,
            "message": "The invoice has been created.",
            "invoice": self._invoice_view(record),
        }

    def get_invoice(self, rid: str) -> Reply:
        record = self.store.invoices.get(rid)
        if record is None:
            return self._not_found("Invoice")
        return 200, {"code": 0, "message": "success", "invoice": self._invoice_view(record)}

    def update_invoice(self, rid: str, body: dict[str, Any], query: dict[str, str]) -> Reply:
        record = self.store.invoices.get(rid)
        if record is None:
            return self._not_found("Invoice")
        if record["status"] == "void":
            return error(400, CODE_INVALID_INPUT, "This operation is not allowed for void invoices.")
        if record["status"] == "paid":
            return error(400, CODE_INVALID_INPUT, "Paid invoices cannot be edited.")
        updated = {**record, **{k: body[k] for k in INVOICE_FIELDS if k in body}}
        if "customer_id" in body and str(body["customer_id"]) not in self.store.customers:
            return error(400, CODE_NOT_FOUND, "Customer does not exist.")
        if "date" in body and (not isinstance(body["date"], str) or not DATE.match(body["date"])):
            return error(400, CODE_INVALID_INPUT, "Invalid value passed for date")
        if "invoice_items" in body:  # items left out are deleted, as in Zoho
            items = self._items(body["invoice_items"])
            if isinstance(items, tuple):
                return items
            sub_total = round(sum(i["item_total"] for i in items), 2)
            total = round(sub_total + _adjustment(updated), 2)
            paid = record["payment_made"] + record["credits_applied"]
            updated.update(
                invoice_items=items, sub_total=sub_total, total=total, balance=round(total - paid, 2)
            )
        keep_number = query.get("ignore_auto_number_generation", "false").lower() == "true"
        number = body.get("invoice_number")
        if keep_number and isinstance(number, str) and number != record["invoice_number"]:
            if self._number_taken(number, own_id=rid):
                return error(400, CODE_ALREADY_EXISTS, f'Invoice "{number}" already exists.')
            updated["invoice_number"] = number
        if "custom_fields" in body:
            updated["custom_fields"] = self._merge_custom_fields(
                record["custom_fields"], body["custom_fields"]
            )
        updated["last_modified_time"] = _now()
        self.store.put("invoice", rid, updated)
        view = self._invoice_view(updated)
        return 200, {"code": 0, "message": "Invoice information has been updated.", "invoice": view}

    def void_invoice(self, rid: str) -> Reply:
        record = self.store.invoices.get(rid)
        if record is None:
            return self._not_found("Invoice")
        # Voiding unassociates payments (they become customer credits, not modelled here).
        for pid in record.get("payment_ids", []):
            payment = self.store.payments.get(pid)
            if payment is not None:
                kept = [i for i in payment["invoices"] if i["invoice_id"] != rid]
                self.store.put("payment", pid, {**payment, "invoices": kept})
        voided = {**record, "status": "void", "balance": 0.0, "payment_made": 0.0, "payment_ids": []}
        self.store.put("invoice", rid, {**voided, "last_modified_time": _now()})
        return 200, {"code": 0, "message": "Invoice status has been changed to Void."}

    def convert_to_open(self, rid: str) -> Reply:
        record = self.store.invoices.get(rid)
        if record is None:
            return self._not_found("Invoice")
        if record["status"] != "draft":
            return error(400, CODE_INVALID_INPUT, "Only draft invoices can be converted to open.")
        self.store.put("invoice", rid, {**record, "status": "sent", "last_modified_time": _now()})
        return 200, {"code": 0, "message": "Status of the invoice has been changed to open."}

    def delete_invoice(self, rid: str) -> Reply:
        record = self.store.invoices.get(rid)
        if record is None:
            return self._not_found("Invoice")
        if record.get("payment_ids"):
            return error(400, CODE_INVALID_INPUT, "Invoices with payments applied cannot be deleted.")
        self.store.delete("invoice", rid)
        return 200, {"code": 0, "message": "The invoice has been deleted."}

    def list_invoices(self, query: dict[str, str]) -> Reply:
        status_filter = query.get("filter_by", "Status.All")
        statuses = {"Status.All": None, "Status.Draft": "draft", "Status.Sent": "sent", "Status.Void": "void"}
        statuses.update({"Status.Unpaid": "sent", "Status.Paid": "paid", "Status.OverDue": "overdue"})
        statuses.update({"Status.PartiallyPaid": "partially_paid"})
        if status_filter not in statuses:
            return error(400, CODE_INVALID_VALUE, "Invalid value passed for filter_by")
        records = [self._invoice_view(r) for r in self.store.invoices.values()]
        if statuses[status_filter]:
            records = [r for r in records if r["status"] == statuses[status_filter]]
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
        records.sort(key=lambda r: int(r["invoice_id"]))
        items = [
            {
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
            for r in records
        ]
        return _paged(items, "invoices", query, status_filter)


FIRST_ITEM_ID = 903000000500001
ITEM_FIELDS = "name rate description sku product_type tax_id".split()
PAYMENT_MODES = frozenset("check cash creditcard banktransfer bankremittance autotransaction others".split())


class Catalogue:
    """Items and payments (openapi/items.yml, openapi/payments.yml), on the same record store."""

    def __init__(self, config: SimConfig, store: RecordStore) -> None:
        self.config = config
        self.store = store

    # --- items -------------------------------------------------------------------------------

    def create_item(self, body: dict[str, Any]) -> Reply:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            return error(400, CODE_INVALID_INPUT, "Invalid value passed for name")
        try:
            rate = float(body["rate"])
        except (KeyError, TypeError, ValueError):
            return error(400, CODE_INVALID_INPUT, "Invalid value passed for rate")
        if any(i["name"].strip().lower() == name.strip().lower() for i in self.store.items.values()):
            return error(400, CODE_INTERNAL, "The item name already exist")
        rid = self.store.new_id()
        now = _now()
        record = {
            "item_id": rid,
            **{k: body[k] for k in ITEM_FIELDS if k in body},
            "rate": rate,
            "status": "active",
            "created_time": now,
            "last_modified_time": now,
        }
        record.setdefault("sku", "")
        record.setdefault("description", "")
        self.store.put("item", rid, record)
        return 201, {"code": 0, "message": "The item has been added.", "item": record}

    def get_item(self, rid: str) -> Reply:
        record = self.store.items.get(rid)
        if record is None:
            return error(self.config.not_found_status, CODE_ITEM_NOT_FOUND, "Item does not exist.")
        return 200, {"code": 0, "message": "success", "item": record}

    def list_items(self, query: dict[str, str]) -> Reply:
        items = sorted(self.store.items.values(), key=lambda i: int(i["item_id"]))
        if "name" in query:
            items = [i for i in items if i["name"].lower() == query["name"].lower()]
        if "name_contains" in query:
            items = [i for i in items if query["name_contains"].lower() in i["name"].lower()]
        if "sku" in query:  # not a documented filter: real Zoho may ignore it (callers verify)
            items = [i for i in items if i.get("sku") == query["sku"]]
        if text := query.get("search_text", "").lower():
            items = [i for i in items if text in i["name"].lower() or text in i["description"].lower()]
        return _paged(list(items), "items", query, query.get("filter_by", "Status.All"))

    # --- payments ----------------------------------------------------------------------------

    def create_payment(self, body: dict[str, Any]) -> Reply:
        customer_id = str(body.get("customer_id", ""))
        if customer_id not in self.store.customers:
            return error(400, CODE_NOT_FOUND, "Customer does not exist.")
        if body.get("payment_mode") not in PAYMENT_MODES:
            return error(400, CODE_INVALID_VALUE, "Invalid value passed for payment_mode")
        try:
            amount = round(float(body["amount"]), 2)
        except (KeyError, TypeError, ValueError):
            return error(400, CODE_INVALID_INPUT, "Invalid value passed for amount")
        applied = body.get("invoices") or []
        if not isinstance(applied, list):
            return error(400, CODE_INVALID_INPUT, "Invalid value passed for invoices")
        checked = []
        for entry in applied:
            invoice = self.store.invoices.get(str((entry or {}).get("invoice_id", "")))
            if invoice is None:
                return error(400, CODE_NOT_FOUND, "Invoice does not exist.")
            if invoice["customer_id"] != customer_id:
                return error(400, CODE_INVALID_VALUE, "The invoice does not belong to this customer.")
            if invoice["status"] in ("draft", "void"):
                return error(
                    400, CODE_INVALID_INPUT, f"Payments cannot be applied to {invoice['status']} invoices."
                )
            try:
                share = round(float(entry["amount_applied"]), 2)
            except (KeyError, TypeError, ValueError):
                return error(400, CODE_INVALID_INPUT, "Invalid value passed for amount_applied")
            if share <= 0 or share > invoice["balance"] + 0.001:
                return error(400, CODE_INVALID_VALUE, "Amount applied is more than the invoice balance.")
            checked.append((invoice, share))
        if sum(share for _, share in checked) > amount + 0.001:
            return error(400, CODE_INVALID_VALUE, "Amount applied to invoices exceeds the payment amount.")
        rid = self.store.new_id()
        date = body.get("date") or dt.date.today().isoformat()
        record = {
            "payment_id": rid,
            "customer_id": customer_id,
            "payment_mode": body["payment_mode"],
            "amount": amount,
            "date": date,
            "reference_number": str(body.get("reference_number") or ""),
            "description": str(body.get("description") or ""),
            "status": "success",
            "invoices": [],
            "created_time": _now(),
        }
        for invoice, share in checked:
            paid = round(invoice["payment_made"] + share, 2)
            balance = round(invoice["total"] - paid - invoice["credits_applied"], 2)
            status = "paid" if balance <= 0 else "partially_paid"
            ids = [*invoice.get("payment_ids", []), rid]
            self.store.put(
                "invoice",
                invoice["invoice_id"],
                {
                    **invoice,
                    "payment_made": paid,
                    "balance": max(balance, 0.0),
                    "status": status,
                    "payment_ids": ids,
                    "last_modified_time": _now(),
                },
            )
            record["invoices"].append(
                {
                    "invoice_id": invoice["invoice_id"],
                    "invoice_number": invoice["invoice_number"],
                    "amount_applied": share,
                    "balance_amount": max(balance, 0.0),
                }
            )
        self.store.put("payment", rid, record)
        return 201, {"code": 0, "message": "The payment has been created.", "payment": record}

    def get_payment(self, rid: str) -> Reply:
        record = self.store.payments.get(rid)
        if record is None:
            return error(self.config.not_found_status, CODE_NOT_FOUND, "Payment does not exist.")
        return 200, {"code": 0, "message": "success", "payment": record}

    def list_payments(self, query: dict[str, str]) -> Reply:
        """Not in Billing's payments spec (only create/get/update/delete): a Books-style list, for tests."""
        records = sorted(self.store.payments.values(), key=lambda p: int(p["payment_id"]))
        for key in ("reference_number", "customer_id"):
            if key in query:
                records = [p for p in records if p.get(key) == query[key]]
        return _paged(list(records), "payments", query, "Status.All")


def _adjustment(body: dict[str, Any]) -> float:
    try:
        return float(body.get("adjustment") or 0)
    except (TypeError, ValueError):
        return 0.0
