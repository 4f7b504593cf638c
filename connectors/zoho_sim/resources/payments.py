"""Simulated Billing payments (openapi/payments.yml): a customer's payment applied to its open invoices.

A payment is accepted only whole: every invoice must be the customer's, open (not draft or void) and
owe at least its share, and the shares together must not exceed the amount. Applying it moves each
invoice's balance and status (partially paid, paid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connectors import clock
from connectors.zoho.wire.protocol import CODE_INVALID_INPUT, CODE_INVALID_VALUE, CODE_NOT_FOUND
from connectors.zoho_sim.envelopes import Reply, Resource, error, invalid, paged, timestamp

PAYMENT_MODES = frozenset("check cash creditcard banktransfer bankremittance autotransaction others".split())
# Rounded amounts are compared with this allowance, so float noise never refuses an exact share.
TOLERANCE = 0.001


@dataclass(frozen=True)
class Application:
    """A share of the payment, checked against the invoice it is applied to."""

    invoice: dict[str, Any]
    share: float


class Payments(Resource):
    kind = "payment"
    label = "Payment"

    def _application(self, customer_id: str, entry: Any) -> Application | Reply:
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
            return invalid("amount_applied", CODE_INVALID_INPUT)
        if share <= 0 or share > invoice["balance"] + TOLERANCE:
            return error(400, CODE_INVALID_VALUE, "Amount applied is more than the invoice balance.")
        return Application(invoice, share)

    def _applications(self, customer_id: str, applied: Any, amount: float) -> list[Application] | Reply:
        if not isinstance(applied, list):
            return invalid("invoices", CODE_INVALID_INPUT)
        checked = []
        for entry in applied:
            application = self._application(customer_id, entry)
            if not isinstance(application, Application):
                return application
            checked.append(application)
        if sum(a.share for a in checked) > amount + TOLERANCE:
            return error(400, CODE_INVALID_VALUE, "Amount applied to invoices exceeds the payment amount.")
        return checked

    def _apply(self, application: Application, payment_id: str) -> dict[str, Any]:
        """Apply one share of payment `payment_id` to its invoice; returns the payment's line for it."""
        invoice, share = application.invoice, application.share
        paid = round(invoice["payment_made"] + share, 2)
        balance = round(invoice["total"] - paid - invoice["credits_applied"], 2)
        self.store.put(
            "invoice",
            invoice["invoice_id"],
            {
                **invoice,
                "payment_made": paid,
                "balance": max(balance, 0.0),
                "status": "paid" if balance <= 0 else "partially_paid",
                "payment_ids": [*invoice.get("payment_ids", []), payment_id],
                "last_modified_time": timestamp(),
            },
        )
        return {
            "invoice_id": invoice["invoice_id"],
            "invoice_number": invoice["invoice_number"],
            "amount_applied": share,
            "balance_amount": max(balance, 0.0),
        }

    def create(self, body: dict[str, Any]) -> Reply:
        customer_id = str(body.get("customer_id", ""))
        if customer_id not in self.store.customers:
            return error(400, CODE_NOT_FOUND, "Customer does not exist.")
        if body.get("payment_mode") not in PAYMENT_MODES:
            return invalid("payment_mode", CODE_INVALID_VALUE)
        try:
            amount = round(float(body["amount"]), 2)
        except (KeyError, TypeError, ValueError):
            return invalid("amount", CODE_INVALID_INPUT)
        checked = self._applications(customer_id, body.get("invoices") or [], amount)
        if isinstance(checked, tuple):
            return checked
        rid = self.store.new_id()
        record = {
            "payment_id": rid,
            "customer_id": customer_id,
            "payment_mode": body["payment_mode"],
            "amount": amount,
            "date": body.get("date") or clock.utc_now().date().isoformat(),
            "reference_number": str(body.get("reference_number") or ""),
            "description": str(body.get("description") or ""),
            "status": "success",
            "invoices": [],
            "created_time": timestamp(),
        }
        record["invoices"] = [self._apply(application, rid) for application in checked]
        return self.saved(201, "The payment has been created.", rid, record)

    def list_page(self, query: dict[str, str]) -> Reply:
        """Not in Billing's payments spec (only create/get/update/delete): a Books-style list, for tests."""
        records = sorted(self.store.payments.values(), key=lambda p: int(p["payment_id"]))
        for key in ("reference_number", "customer_id"):
            if key in query:
                records = [p for p in records if p.get(key) == query[key]]
        return paged(list(records), "payments", query, "Status.All")
