"""The Zoho calls of an invoice: create, update, and the status walk (open, pay, void) or delete.

Lines name Zoho items (`consumer.entities.invoices.items`); an item we remembered but Zoho no longer has is
found or created again. A payment is recorded exactly once: its intent is written first, and after a
lost reply or a crash it is found again on the invoice by our reference before any new one is made.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

from connectors import clock
from connectors.zoho.errors import NotFound, PermanentError
from connectors.zoho.wire.protocol import CODE_ITEM_NOT_FOUND
from consumer.entities.invoices.items import ItemCatalogue
from consumer.entities.invoices.status import (
    EDITABLE_INVOICE_STAGES,
    StatusBackwards,
    invoice_status_steps,
    zoho_invoice_stage,
)
from consumer.entities.spec import ApplyContext, Record, Row
from consumer.model.call_errors import ZohoAhead
from consumer.model.events import EntityType
from consumer.model.plan import Action, Plan, as_text

#: The intent operation written before a payment is recorded (the intent of a create is "create").
PAYMENT_INTENT: Final = "payment"
_ITEM_RETRIES: Final = 3
#: The rules an invoice is matched by before it is created (ZOHO_INVOICE_MATCH_RULES).
MATCH_RULES: Final = ("invoice_number",)


class InvoiceCalls:
    """Carries out invoice plans with the Zoho client."""

    def __init__(self, ctx: ApplyContext) -> None:
        self._ctx = ctx
        self._client = ctx.client
        self._items = ItemCatalogue(ctx.client, ctx.store, ctx.options.lines)

    async def find(self, natural_key: str, entity_id: str, row: Row) -> Record | None:
        found: dict[str, Any] | None = await self._client.find_invoice_by_number(
            natural_key, reference=entity_id
        )
        return found

    async def create(self, payload: Record, natural_key: str, row: Row) -> Record:
        body: dict[str, Any] = await self._client.create_invoice_idempotent(payload, natural_key)
        return body

    async def adopt(self, existing: Record, payload: Record) -> Record:
        if zoho_invoice_stage(existing.get("status")) not in ("draft", "sent"):
            # Paid or void already (a payment recorded before a crash): Zoho refuses edits, and the
            # content was sent before the payment was made.
            return existing
        body: dict[str, Any] = await self._client.update_invoice(str(existing["invoice_id"]), payload)
        return body

    # --- matching records made by others (`consumer.pipeline.adoption.finder`) ---------------------
    async def read(self, zoho_id: str) -> Record:
        body: dict[str, Any] = await self._client.get_invoice(zoho_id)
        return body

    async def candidates(self, rule: str, entity_id: str, row: Row) -> list[Record] | None:
        """Invoices holding the row's invoice number (exactly, as listed)."""
        if rule != "invoice_number":
            raise ValueError(f"unknown invoice match rule {rule!r}; known: {', '.join(MATCH_RULES)}")
        number = as_text((row or {}).get("invoice_number"))
        if not number:
            return None
        c = self._client
        found = []
        async for item in c.iter_invoices(**{c.config.invoice_number_filter: number}):
            listed = item.get("invoice_number", item.get("number"))
            if listed == number:
                found.append({**item, "invoice_number": listed})
        return found

    def listing(self) -> AsyncIterator[Record]:
        listed: AsyncIterator[Record] = self._client.iter_invoices()
        return listed

    def listed(self, record: Record, rule: str) -> str | None:
        number = record.get("invoice_number", record.get("number"))
        return None if number is None else as_text(number)

    def wanted(self, rule: str, row: Row) -> str:
        return as_text((row or {}).get("invoice_number"))

    async def foreign_key(self, record: Record, entity_id: str, row: Row) -> str | None:
        """Another source invoice's id in `reference_number` (read in full when the list does not show it)."""
        if "reference_number" not in record:
            record.update(await self.read(str(record["invoice_id"])))
        shown = as_text(record.get("reference_number"))
        return f"reference {shown}" if shown and shown != entity_id else None

    async def carry_out(
        self, plan: Plan, entity_id: str, row: Mapping[str, Any] | None, zoho_id: str | None
    ) -> tuple[str | None, str | None]:
        if plan.payload:
            for _ in range(_ITEM_RETRIES):
                try:
                    return await self._carry_out(plan, entity_id, row, zoho_id)
                except PermanentError as exc:
                    if exc.code != CODE_ITEM_NOT_FOUND:
                        raise
                    # An item we remembered was deleted in Zoho (or Zoho was wiped): find or create it again.
                    # Concurrent invoices may still hold the old id for a moment, hence a few tries.
                    await self._items.forget(plan.payload)
        return await self._carry_out(plan, entity_id, row, zoho_id)

    async def _carry_out(
        self, plan: Plan, entity_id: str, row: Mapping[str, Any] | None, zoho_id: str | None
    ) -> tuple[str | None, str | None]:
        payload = await self._items.resolve(plan.payload) if plan.payload else {}
        match plan.action:
            case Action.CREATE_INVOICE:
                zoho_id, body = await self._create(entity_id, payload, row)
                return zoho_id, await self._walk_status(entity_id, zoho_id, body, plan, row)
            case Action.UPDATE_INVOICE:
                assert zoho_id is not None
                zoho_id, body = await self._update_or_recreate(entity_id, zoho_id, payload, plan, row)
                return zoho_id, await self._walk_status(entity_id, zoho_id, body, plan, row)
            case Action.OPEN_INVOICE | Action.RECORD_PAYMENT:
                assert zoho_id is not None
                body = await self._current(entity_id, zoho_id, plan)
                return zoho_id, await self._walk_status(entity_id, zoho_id, body, plan, row)
            case Action.VOID_INVOICE:
                return await self._void(entity_id, zoho_id)
            case Action.DELETE_INVOICE:
                assert zoho_id is not None
                return zoho_id, await self._delete(zoho_id)
        raise ValueError(f"plan {plan.action} makes no Zoho invoice call")

    async def _update_or_recreate(
        self, entity_id: str, zoho_id: str, payload: dict[str, Any], plan: Plan, row: Mapping[str, Any] | None
    ) -> tuple[str, dict[str, Any] | None]:
        """The invoice updated while Zoho still lets it be edited (draft or sent), created again when it is
        gone from Zoho; its id and the body Zoho last showed (None when nothing was read or sent)."""
        try:
            body = await self._current(entity_id, zoho_id, plan)
            if body is None or zoho_invoice_stage(body.get("status")) in ("draft", "sent"):
                body = await self._update(zoho_id, payload, plan)
        except NotFound:  # deleted in Zoho (by hand, or the organisation was wiped): recreate
            zoho_id, body = await self._create(entity_id, payload, row)
        return zoho_id, body

    async def _void(self, entity_id: str, zoho_id: str | None) -> tuple[str | None, str | None]:
        """Void the invoice, or the one an unresolved create may have made; (None, None) if none exists."""
        c = self._client
        zoho_id = zoho_id or await self._ctx.created_before(EntityType.INVOICE, entity_id)
        if zoho_id is None:
            return None, None
        try:
            await c.void_invoice(zoho_id)
        except PermanentError:  # "already void" (by hand, or a lost reply) is read back, not trusted
            if (await c.get_invoice(zoho_id)).get("status") != "void":
                raise
        return zoho_id, "void"

    async def _update(self, zoho_id: str, payload: dict[str, Any], plan: Plan) -> dict[str, Any]:
        """PUT the invoice. A refusal is read back once: an invoice Zoho moved on its own (paid in the
        portal, voided by hand) is Zoho ahead, one already where the source wants it is settled as is."""
        try:
            body: dict[str, Any] = await self._client.update_invoice(zoho_id, payload)
        except PermanentError as exc:
            if isinstance(exc, NotFound) or exc.code == CODE_ITEM_NOT_FOUND:
                raise
            invoice: dict[str, Any] = await self._client.get_invoice(zoho_id)
            stage = zoho_invoice_stage(invoice.get("status"))
            if stage in EDITABLE_INVOICE_STAGES:
                raise  # a refusal of the content itself
            if stage != plan.status:
                raise _ahead(zoho_id, invoice, plan, exc) from None
            return invoice  # already where the source wants it (paid or void): nothing left to edit
        return body

    async def _delete(self, zoho_id: str) -> str:
        try:
            await self._client.delete_invoice(zoho_id)
        except NotFound:
            pass
        except PermanentError:
            # Zoho refuses to delete an invoice with payments (it is no draft after all): void it.
            await self._client.void_invoice(zoho_id)
            return "void"
        return "deleted"

    async def _create(
        self, entity_id: str, payload: dict[str, Any], row: Mapping[str, Any] | None
    ) -> tuple[str, dict[str, Any]]:
        zoho_id, body = await self._ctx.create(EntityType.INVOICE, entity_id, payload, row)
        assert zoho_id is not None
        return zoho_id, body

    async def _current(self, entity_id: str, zoho_id: str, plan: Plan) -> dict[str, Any] | None:
        """The invoice as Zoho has it now, read only when the entity map may be wrong about its status: the
        status is unknown (a resync, an older map row) or a payment intent is left (a crash after the
        payment may have made it paid). Else None, and no call. Raises NotFound when it is gone."""
        if plan.from_status is None:
            body: dict[str, Any] = await self._client.get_invoice(zoho_id)
            return body
        intent = await self._ctx.intent(EntityType.INVOICE, entity_id)
        if intent is None or intent.operation != PAYMENT_INTENT:
            return None
        body = await self._client.get_invoice(zoho_id)
        return body

    async def _walk_status(
        self,
        entity_id: str,
        zoho_id: str,
        body: Mapping[str, Any] | None,
        plan: Plan,
        row: Mapping[str, Any] | None,
    ) -> str | None:
        """Walk the Zoho invoice from its status to the source's (`plan.status`); returns the status reached.

        `body` is the invoice as Zoho last answered in this apply (None: the entity map's status is used).
        """
        known = body.get("status") if body else plan.from_status
        target = plan.status
        if target is None or target == "void":
            return known
        current = zoho_invoice_stage(known) or "draft"
        status = known
        try:
            steps = invoice_status_steps(current, target, row)
        except StatusBackwards as exc:  # Zoho's status was not the one the entity map knew
            if plan.from_status is not None and known != plan.from_status and body is not None:
                # e.g. opened by hand while zoho-cdc left it a draft; an editable invoice took our PUT first
                edited = plan.action is Action.UPDATE_INVOICE and current in EDITABLE_INVOICE_STAGES
                raise _ahead(zoho_id, body, plan, exc, content_sent=edited) from None
            raise PermanentError(exc.reason) from None
        for step in steps:
            if step == "open":
                await self._open(zoho_id, plan)
                status = "sent"
            elif step == "pay":
                status = await self._pay(entity_id, zoho_id, body, row)
        return status

    async def _open(self, zoho_id: str, plan: Plan) -> None:
        """converttoopen. A refusal (open already, after a lost reply or a crash) is checked, not trusted:
        paid or void in Zoho instead is Zoho ahead."""
        try:
            await self._client.open_invoice(zoho_id)
        except PermanentError as exc:
            invoice = await self._client.get_invoice(zoho_id)
            stage = zoho_invoice_stage(invoice.get("status"))
            if stage == "draft":
                raise
            if stage == "void" or (stage == "paid" and plan.status != "paid"):
                raise _ahead(zoho_id, invoice, plan, exc) from None

    async def _pay(
        self, entity_id: str, zoho_id: str, body: Mapping[str, Any] | None, row: Mapping[str, Any] | None
    ) -> str:
        """Record one payment for the invoice's balance, exactly once.

        The intent is written before the call; after a crash (intent left) or a lost reply the payment is
        looked for on the invoice by its reference (the source invoice id) before any new one is made.
        """
        c = self._client
        invoice: Mapping[str, Any]
        if body is not None and "balance" in body and "customer_id" in body and "payments" in body:
            invoice = body
        else:
            invoice = await c.get_invoice(zoho_id)
        if any(str(p.get("reference_number") or "") == entity_id for p in invoice.get("payments") or []):
            return str(invoice.get("status") or "paid")  # ours, recorded before a crash or a lost reply
        balance = float(invoice.get("balance") or 0)
        stage = zoho_invoice_stage(invoice.get("status"))
        if stage == "void":  # voided by hand: Zoho refuses payments on it
            raise ZohoAhead(zoho_id, "void", "Zoho is ahead: the invoice is void in Zoho, paid in the source")
        if stage == "paid" or balance <= 0:
            return "paid"  # paid already (in the portal, or before a lost reply): settled as it is
        number = str((row or {}).get("invoice_number") or invoice.get("invoice_number") or entity_id)
        await self._ctx.store.write_intent(EntityType.INVOICE, entity_id, PAYMENT_INTENT, number)
        amount = round(balance, 2)
        await c.create_payment_once(
            {
                "customer_id": str(invoice["customer_id"]),
                "payment_mode": self._ctx.options.payment_mode,
                "amount": amount,
                "date": clock.utc_now().date().isoformat(),
                "reference_number": entity_id,
                "description": f"Invoice {number} paid in the source (zoho-cdc)",
                "invoices": [{"invoice_id": zoho_id, "amount_applied": amount}],
            },
            zoho_id,
        )
        return "paid"


def _ahead(
    zoho_id: str, invoice: Mapping[str, Any], plan: Plan, refusal: Exception, *, content_sent: bool = False
) -> ZohoAhead:
    """Zoho ahead, in one sentence naming the invoice, both statuses and what Zoho answered."""
    status = str(invoice.get("status") or "")
    number = invoice.get("invoice_number") or zoho_id
    return ZohoAhead(
        zoho_id,
        status,
        f"Zoho is ahead: invoice {number} is {status} in Zoho, not set by zoho-cdc (which left it"
        f" {plan.from_status}), but {plan.status} in the source; Zoho answered: {refusal}",
        content_sent=content_sent,
    )
