"""Carry out one planned Zoho call, without ever creating a second record for one source row.

Before a create, an intent is written durably; if a previous process died with an intent in
place (the create may have reached Zoho), the record is first looked up by its natural key.
Creates go through the client's idempotent helpers, which resolve a lost response the same way.
An invoice's status then follows the source (`invoice_status_steps`): converttoopen, a payment for
its balance (exactly once: written as an intent first, found again on the invoice by our reference
after a lost reply or a crash), or void. Invoice lines name Zoho items (`consumer.pipeline.zoho_items`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from connectors.zoho.errors import NotFound, PermanentError
from connectors.zoho.protocol import CODE_ITEM_NOT_FOUND
from consumer.pipeline.events import EntityType
from consumer.pipeline.plan import Action, Plan, StatusBackwards, invoice_status_steps, zoho_invoice_stage
from consumer.pipeline.store import Intent, SyncStore
from consumer.pipeline.zoho_items import ItemCatalogue, LineItemRules

#: The intent operation written before a payment is recorded (the intent of a create is "create").
PAYMENT_INTENT: Final = "payment"
_ITEM_RETRIES: Final = 3
#: False while applying a plan whose entity-map read showed no intent: the intent reads are skipped.
#: A context variable, because one applier serves every worker task at once.
_INTENT_LEFT: ContextVar[bool] = ContextVar("intent_left", default=True)


@dataclass(frozen=True, slots=True)
class Applied:
    """What Zoho now holds after the call."""

    zoho_id: str | None
    zoho_status: str | None
    http_status: int | None
    attempts: int
    calls: int


class Applier(Protocol):
    async def apply(
        self,
        entity_type: EntityType,
        entity_id: str,
        plan: Plan,
        row: Mapping[str, Any] | None,
        state_zoho_id: str | None,
        *,
        intent_left: bool = True,
    ) -> Applied: ...


def natural_key(entity_type: EntityType, row: Mapping[str, Any] | None) -> str | None:
    if row is None:
        return None
    value = row.get("account_number") if entity_type is EntityType.CUSTOMER else row.get("invoice_number")
    return str(value) if value else None


@dataclass(frozen=True, slots=True)
class ApplyOptions:
    """Settings the calls need: ZOHO_PAYMENT_MODE and the invoice-line item rules."""

    payment_mode: str = "banktransfer"
    lines: LineItemRules = field(default_factory=LineItemRules)

    @classmethod
    def from_settings(cls, settings: Any) -> ApplyOptions:
        return cls(
            payment_mode=settings.zoho_payment_mode,
            lines=LineItemRules(
                default_item_id=settings.zoho_default_item_id,
                default_item_name=settings.zoho_default_item_name,
                adhoc_lines=settings.zoho_adhoc_line_items,
            ),
        )


class ZohoApplier:
    """Applies plans with the Zoho client; one instance shared by every worker."""

    def __init__(self, client: Any, store: SyncStore, options: ApplyOptions | None = None) -> None:
        self._client = client
        self._store = store
        self.options = options or ApplyOptions()
        self._items = ItemCatalogue(client, store, self.options.lines)

    async def apply(
        self,
        entity_type: EntityType,
        entity_id: str,
        plan: Plan,
        row: Mapping[str, Any] | None,
        state_zoho_id: str | None,
        *,
        intent_left: bool = True,
    ) -> Applied:
        """`intent_left` False: the entity map just showed no intent for this entity, so none is read
        before a create (the intent read is for creates a crash or a lost reply left unresolved)."""
        with self._client.tracking() as tracker:
            token = _INTENT_LEFT.set(intent_left)
            try:
                zoho_id, status = await self._call(entity_type, entity_id, plan, row, state_zoho_id)
            finally:
                _INTENT_LEFT.reset(token)
        return Applied(
            zoho_id=zoho_id,
            zoho_status=status,
            http_status=tracker.http_status,
            attempts=tracker.attempts,
            calls=tracker.attempts,
        )

    async def _call(
        self,
        entity_type: EntityType,
        entity_id: str,
        plan: Plan,
        row: Mapping[str, Any] | None,
        zoho_id: str | None,
    ) -> tuple[str | None, str | None]:
        if entity_type is EntityType.INVOICE and plan.payload:
            for _ in range(_ITEM_RETRIES):
                try:
                    return await self._match(entity_type, entity_id, plan, row, zoho_id, plan.payload)
                except PermanentError as exc:
                    if exc.code != CODE_ITEM_NOT_FOUND:
                        raise
                    # An item we remembered was deleted in Zoho (or Zoho was wiped): find or create it again.
                    # Concurrent invoices may still hold the old id for a moment, hence a few tries.
                    await self._items.forget(plan.payload)
        return await self._match(entity_type, entity_id, plan, row, zoho_id, plan.payload or {})

    async def _match(
        self,
        entity_type: EntityType,
        entity_id: str,
        plan: Plan,
        row: Mapping[str, Any] | None,
        zoho_id: str | None,
        payload: dict[str, Any],
    ) -> tuple[str | None, str | None]:
        c = self._client
        if entity_type is EntityType.INVOICE and payload:
            payload = await self._items.resolve(payload)
        match plan.action:
            case Action.CREATE_CUSTOMER:
                zoho_id, status = await self._create(entity_type, entity_id, payload, row)
                assert zoho_id is not None
                return zoho_id, await self._customer_status(zoho_id, status, plan.status)
            case Action.UPDATE_CUSTOMER:
                assert zoho_id is not None
                try:
                    body = await c.update_customer(zoho_id, payload)
                except NotFound:  # deleted in Zoho by hand: recreate (never blindly: lookup first)
                    zoho_id, _ = await self._create(entity_type, entity_id, payload, row)
                    assert zoho_id is not None
                    body = {}
                return zoho_id, await self._customer_status(zoho_id, body.get("status"), plan.status)
            case Action.MARK_CUSTOMER_ACTIVE:
                assert zoho_id is not None
                try:
                    await c.mark_customer_active(zoho_id)
                except NotFound:  # deleted in Zoho (by hand, or the organisation was wiped): recreate
                    if not plan.payload:
                        raise
                    zoho_id, status = await self._create(entity_type, entity_id, payload, row)
                    assert zoho_id is not None
                    return zoho_id, await self._customer_status(zoho_id, status, "active")
                if plan.payload:
                    await c.update_customer(zoho_id, payload)
                return zoho_id, "active"
            case Action.MARK_CUSTOMER_INACTIVE:
                zoho_id = zoho_id or await self._created_before(entity_type, entity_id)
                if zoho_id is None:
                    return None, None
                if plan.payload:  # content first: what an inactive customer accepts is unconfirmed
                    try:
                        await c.update_customer(zoho_id, payload)
                    except NotFound:  # deleted in Zoho (a closed account; the organisation wiped): recreate
                        zoho_id, _ = await self._create(entity_type, entity_id, payload, row)
                        assert zoho_id is not None
                await c.mark_customer_inactive(zoho_id)
                return zoho_id, "inactive"
            case Action.CREATE_INVOICE:
                zoho_id, body = await self._create_invoice(entity_id, payload, row)
                return zoho_id, await self._invoice_status(entity_id, zoho_id, body, plan, row)
            case Action.UPDATE_INVOICE:
                assert zoho_id is not None
                try:
                    body = await self._current_invoice(entity_id, zoho_id, plan)
                    if body is None or zoho_invoice_stage(body.get("status")) in ("draft", "sent"):
                        body = await c.update_invoice(zoho_id, payload)
                except NotFound:  # deleted in Zoho (by hand, or the organisation was wiped): recreate
                    zoho_id, body = await self._create_invoice(entity_id, payload, row)
                return zoho_id, await self._invoice_status(entity_id, zoho_id, body, plan, row)
            case Action.OPEN_INVOICE | Action.RECORD_PAYMENT:
                assert zoho_id is not None
                body = await self._current_invoice(entity_id, zoho_id, plan)
                return zoho_id, await self._invoice_status(entity_id, zoho_id, body, plan, row)
            case Action.VOID_INVOICE:
                zoho_id = zoho_id or await self._created_before(entity_type, entity_id)
                if zoho_id is None:
                    return None, None
                await c.void_invoice(zoho_id)
                return zoho_id, "void"
            case Action.DELETE_INVOICE:
                assert zoho_id is not None
                try:
                    await c.delete_invoice(zoho_id)
                except NotFound:
                    pass
                except PermanentError:
                    # Zoho refuses to delete an invoice with payments (it is no draft after all): void it.
                    await c.void_invoice(zoho_id)
                    return zoho_id, "void"
                return zoho_id, "deleted"
        raise ValueError(f"plan {plan.action} makes no Zoho call")

    async def _customer_status(self, zoho_id: str, status: str | None, target: str | None) -> str:
        """Mark the customer active or inactive when Zoho's status is not the one the source asks for."""
        current = status or "active"
        target = target or "active"
        if current == target:
            return current
        if target == "inactive":
            await self._client.mark_customer_inactive(zoho_id)
        else:
            await self._client.mark_customer_active(zoho_id)
        return target

    async def _create_invoice(
        self, entity_id: str, payload: dict[str, Any], row: Mapping[str, Any] | None
    ) -> tuple[str, dict[str, Any]]:
        zoho_id, body = await self._create_record(EntityType.INVOICE, entity_id, payload, row)
        assert zoho_id is not None
        return zoho_id, body

    async def _current_invoice(self, entity_id: str, zoho_id: str, plan: Plan) -> dict[str, Any] | None:
        """The invoice as Zoho has it now, read only when the entity map may be wrong about its status: the
        status is unknown (a resync, an older map row) or a payment intent is left (a crash after the
        payment may have made it paid). Else None, and no call. Raises NotFound when it is gone."""
        if plan.from_status is None:
            return await self._client.get_invoice(zoho_id)
        intent = await self._intent(EntityType.INVOICE, entity_id)
        if intent is None or intent.operation != PAYMENT_INTENT:
            return None
        return await self._client.get_invoice(zoho_id)

    async def _invoice_status(
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
            raise PermanentError(exc.reason) from None
        for step in steps:
            if step == "open":
                await self._open(zoho_id)
                status = "sent"
            elif step == "pay":
                status = await self._pay(entity_id, zoho_id, body, row)
        return status

    async def _open(self, zoho_id: str) -> None:
        """converttoopen. A refusal (open already, after a lost reply or a crash) is checked, not trusted."""
        try:
            await self._client.open_invoice(zoho_id)
        except PermanentError:
            invoice = await self._client.get_invoice(zoho_id)
            if zoho_invoice_stage(invoice.get("status")) == "draft":
                raise

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
        if zoho_invoice_stage(invoice.get("status")) == "paid" or balance <= 0:
            return "paid"
        number = str((row or {}).get("invoice_number") or invoice.get("invoice_number") or entity_id)
        await self._store.write_intent(EntityType.INVOICE, entity_id, PAYMENT_INTENT, number)
        amount = round(balance, 2)
        await c.create_payment_once(
            {
                "customer_id": str(invoice["customer_id"]),
                "payment_mode": self.options.payment_mode,
                "amount": amount,
                "date": dt.datetime.now(dt.UTC).date().isoformat(),
                "reference_number": entity_id,
                "description": f"Invoice {number} paid in the source (zoho-cdc)",
                "invoices": [{"invoice_id": zoho_id, "amount_applied": amount}],
            },
            zoho_id,
        )
        return "paid"

    async def _intent(self, entity_type: EntityType, entity_id: str) -> Intent | None:
        if not _INTENT_LEFT.get():
            return None
        return await self._store.intent(entity_type, entity_id)

    async def _created_before(self, entity_type: EntityType, entity_id: str) -> str | None:
        """The Zoho id of a record an unresolved create intent may have made, found by its natural key.

        A delete that arrives while a create is unresolved (the call was sent, the outcome never
        recorded) must reach that record, or it would stay active in Zoho.
        """
        intent = await self._intent(entity_type, entity_id)
        if intent is None:
            return None
        if entity_type is EntityType.CUSTOMER:
            found = await self._client.find_customer(intent.natural_key)
        else:
            found = await self._client.find_invoice_by_number(intent.natural_key, reference=entity_id)
        return _zoho_id(entity_type, found) if found else None

    async def _create(
        self, entity_type: EntityType, entity_id: str, payload: dict[str, Any], row: Mapping[str, Any] | None
    ) -> tuple[str | None, str | None]:
        zoho_id, body = await self._create_record(entity_type, entity_id, payload, row)
        return zoho_id, body.get("status")

    async def _create_record(
        self, entity_type: EntityType, entity_id: str, payload: dict[str, Any], row: Mapping[str, Any] | None
    ) -> tuple[str | None, dict[str, Any]]:
        key = natural_key(entity_type, row)
        if key is None:
            raise ValueError(f"{entity_type.value} {entity_id} has no natural key to create it safely")
        c = self._client
        email = (row or {}).get("email") or None
        existing: dict[str, Any] | None = None
        if await self._intent(entity_type, entity_id) is not None:
            # A previous process died between intent and outcome: the create may have happened.
            if entity_type is EntityType.CUSTOMER:
                existing = await c.find_customer(key, email)
            else:
                existing = await c.find_invoice_by_number(key, reference=entity_id)
        if existing is None:
            # written once the create holds its Zoho send slot, so waiting for the rate window leaves
            # no intent behind (a crash then costs no natural-key lookups for calls never sent)
            async def intent() -> None:
                await self._store.write_intent(entity_type, entity_id, "create", key)

            if entity_type is EntityType.CUSTOMER:
                body = await c.create_customer_idempotent(payload, key, email, before_send=intent)
            else:
                body = await c.create_invoice_idempotent(payload, key, before_send=intent)
            return _zoho_id(entity_type, body), body
        zoho_id = _zoho_id(entity_type, existing)
        assert zoho_id is not None
        if entity_type is EntityType.CUSTOMER:
            body = await c.update_customer(zoho_id, payload)
            return zoho_id, {**body, "status": body.get("status", existing.get("status"))}
        if zoho_invoice_stage(existing.get("status")) not in ("draft", "sent"):
            # Paid or void already (a payment recorded before a crash): Zoho refuses edits, and the
            # content was sent before the payment was made.
            return zoho_id, existing
        return zoho_id, await c.update_invoice(zoho_id, payload)


def _zoho_id(entity_type: EntityType, body: Mapping[str, Any]) -> str | None:
    value = body.get("customer_id") if entity_type is EntityType.CUSTOMER else body.get("invoice_id")
    return str(value) if value is not None else None
