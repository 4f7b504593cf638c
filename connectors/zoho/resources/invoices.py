"""The client's invoice calls: create keeping our number, update, void, open, delete, find by number.

An invoice found by its number is ours only when its `reference_number` is our source id; another
invoice holding the number raises `NotOurs`, so it is never adopted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from connectors.zoho import errors, tracking
from connectors.zoho.wire.at_most_once import BeforeSend, at_most_once
from connectors.zoho.wire.transport import ZohoTransport

#: How a request that went out without a Zoho envelope for a reply is recorded (`CallRecord.error`).
_IN_DOUBT = frozenset({errors.ResponseLost.__name__, errors.ReplyUnreadable.__name__})


class InvoiceEndpoints(ZohoTransport):
    """POST/PUT/GET/DELETE /invoices, the status changes, and the lookup by invoice number."""

    async def create_invoice(
        self, payload: dict[str, Any], before_send: BeforeSend | None = None
    ) -> dict[str, Any]:
        """POST /invoices keeping our invoice number (ignore_auto_number_generation=true, send=false).

        Raises Duplicate (1001) when the number exists, InDoubt when the reply does not say whether it was
        made (resolve with find_invoice_by_number, as create_invoice_idempotent does).
        """
        params = {"ignore_auto_number_generation": "true", "send": "false"}
        reply = await self._request(
            "POST",
            "/invoices",
            "POST /invoices",
            params=params,
            body=payload,
            before_send=before_send,
        )
        return reply["invoice"]

    async def update_invoice(self, invoice_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        params = {"ignore_auto_number_generation": "true"}
        reply = await self._request(
            "PUT", f"/invoices/{invoice_id}", "PUT /invoices/{id}", params=params, body=payload
        )
        return reply["invoice"]

    async def get_invoice(self, invoice_id: str) -> dict[str, Any]:
        return (await self._request("GET", f"/invoices/{invoice_id}", "GET /invoices/{id}"))["invoice"]

    async def void_invoice(self, invoice_id: str) -> dict[str, Any]:
        """POST /invoices/{id}/void; after an in-doubt reply the invoice is read, and void there is done."""
        return await self.settle_write(
            lambda: self._request("POST", f"/invoices/{invoice_id}/void", "POST /invoices/{id}/void"),
            lambda: self._invoice_when(invoice_id, lambda status: status == "void"),
        )

    async def delete_invoice(self, invoice_id: str) -> dict[str, Any]:
        """DELETE /invoices/{id}; a NotFound after an in-doubt reply means our earlier attempt deleted it."""
        with tracking.tracking() as mine:
            try:
                return await self._request("DELETE", f"/invoices/{invoice_id}", "DELETE /invoices/{id}")
            except errors.NotFound:
                if any(call.error in _IN_DOUBT for call in mine.calls):
                    return {"code": 0, "message": "The invoice has been deleted."}
                raise

    async def open_invoice(self, invoice_id: str) -> dict[str, Any]:
        """POST /invoices/{id}/converttoopen: draft to open without emailing anyone (unlike /email). After an
        in-doubt reply the invoice is read: no longer a draft means it was opened."""
        path = f"/invoices/{invoice_id}/converttoopen"
        return await self.settle_write(
            lambda: self._request("POST", path, "POST /invoices/{id}/converttoopen"),
            lambda: self._invoice_when(invoice_id, lambda status: status not in ("draft", None)),
        )

    async def _invoice_when(self, invoice_id: str, shows: Any) -> dict[str, Any] | None:
        """The invoice as Zoho holds it now, if its status `shows` the effect sought; else None."""
        invoice = await self.get_invoice(invoice_id)
        return invoice if shows(invoice.get("status")) else None

    def iter_invoices(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Every invoice matching `filters` (e.g. customer_id, filter_by=Status.Void), page by page."""
        return self._pages("/invoices", "invoices", "GET /invoices", dict(filters))

    async def find_invoice_by_number(
        self, number: str, *, reference: str | None = None
    ) -> dict[str, Any] | None:
        """The invoice whose number is exactly `number` (as listed, `invoice_number` always set), or None.

        With `reference`, the invoice is ours only if its `reference_number` is that source id (read
        from the whole invoice when the list does not show it); another invoice holding the number
        raises `NotOurs`, so it is never adopted.
        """
        async for item in self.iter_invoices(**{self.config.invoice_number_filter: number}):
            listed = item.get("invoice_number", item.get("number"))
            if listed != number:
                continue
            found = {**item, "invoice_number": listed}
            if reference is None:
                return found
            shown = item.get("reference_number")
            if shown is None:
                shown = (await self.get_invoice(str(item["invoice_id"]))).get("reference_number")
            if str(shown or "") != reference:
                raise errors.NotOurs(
                    f"invoice number {number} is taken in Zoho by invoice {item['invoice_id']}, whose"
                    f" reference {shown or '(none)'} is not source invoice {reference}"
                )
            return found
        return None

    async def create_invoice_idempotent(
        self, payload: dict[str, Any], invoice_number: str, before_send: BeforeSend | None = None
    ) -> dict[str, Any]:
        """Create an invoice exactly once: after a lost reply, failure or duplicate, look it up first.

        A record found by its number is adopted only when its reference is our source id.
        `before_send` (a durable create intent) runs once, right before the first POST is sent."""
        payload = {**payload, "invoice_number": invoice_number}
        reference = payload.get("reference_number") or None
        before_send = at_most_once(before_send)
        return await self._create_once(
            lambda: self.create_invoice(payload, before_send),
            lambda: self.find_invoice_by_number(invoice_number, reference=reference),
        )
