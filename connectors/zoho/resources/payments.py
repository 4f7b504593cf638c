"""The client's payment calls: record a payment against an invoice exactly once.

Billing documents no payments list to search by reference, so a payment is found on its invoice
(`GET /invoices/{id}` lists the payments applied to it), which is why these calls build on invoices.
"""

from __future__ import annotations

from typing import Any

from connectors.zoho.resources.invoices import InvoiceEndpoints


class PaymentEndpoints(InvoiceEndpoints):
    """POST /payments and the lookup of a payment on the invoice it was applied to."""

    async def create_payment(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST /payments. Raises InDoubt when the reply does not say whether it was recorded (the payment
        may exist): resolve with find_payment_on_invoice, as create_payment_once does."""
        reply = await self._request("POST", "/payments", "POST /payments", body=payload)
        return reply["payment"]

    async def find_payment_on_invoice(self, invoice_id: str, reference: str) -> dict[str, Any] | None:
        """The payment applied to the invoice whose `reference_number` is `reference`, else None.

        Read from the invoice's own `payments` list (GET /invoices/{id}, in Billing's spec), since
        Billing's payments API documents no list endpoint to search by reference.
        """
        invoice = await self.get_invoice(invoice_id)
        for payment in invoice.get("payments") or []:
            if str(payment.get("reference_number") or "") == reference:
                return payment
        return None

    async def create_payment_once(self, payload: dict[str, Any], invoice_id: str) -> dict[str, Any]:
        """Record a payment exactly once: after an in-doubt reply (lost, a gateway's error page) or a
        failure, find it on the invoice by its reference before any new payment."""
        reference = str(payload.get("reference_number") or "")
        return await self._create_once(
            lambda: self.create_payment(payload),
            lambda: self.find_payment_on_invoice(invoice_id, reference),
        )
