"""Carry out one planned Zoho call, without ever creating a second record for one source row.

Before a create, an intent is written durably; if a previous process died with an intent in
place (the create may have reached Zoho), the record is first looked up by its natural key.
Creates go through the client's idempotent helpers, which resolve a lost response the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from connectors.zoho.errors import NotFound
from consumer.events import EntityType
from consumer.mapping import Action, Plan
from consumer.store import SyncStore


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
    ) -> Applied: ...


def natural_key(entity_type: EntityType, row: Mapping[str, Any] | None) -> str | None:
    if row is None:
        return None
    value = row.get("account_number") if entity_type is EntityType.CUSTOMER else row.get("invoice_number")
    return str(value) if value else None


class ZohoApplier:
    """Applies plans with the Zoho client; one instance shared by every worker."""

    def __init__(self, client: Any, store: SyncStore) -> None:
        self._client = client
        self._store = store

    async def apply(
        self,
        entity_type: EntityType,
        entity_id: str,
        plan: Plan,
        row: Mapping[str, Any] | None,
        state_zoho_id: str | None,
    ) -> Applied:
        with self._client.tracking() as tracker:
            zoho_id, status = await self._call(entity_type, entity_id, plan, row, state_zoho_id)
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
        c = self._client
        payload = plan.payload or {}
        match plan.action:
            case Action.CREATE_CUSTOMER | Action.CREATE_INVOICE:
                return await self._create(entity_type, entity_id, payload, row)
            case Action.UPDATE_CUSTOMER:
                assert zoho_id is not None
                try:
                    body = await c.update_customer(zoho_id, payload)
                except NotFound:  # deleted in Zoho by hand: recreate (never blindly: lookup first)
                    return await self._create(entity_type, entity_id, payload, row)
                if body.get("status") == "inactive":
                    await c.mark_customer_active(zoho_id)
                return zoho_id, "active"
            case Action.MARK_CUSTOMER_ACTIVE:
                assert zoho_id is not None
                await c.mark_customer_active(zoho_id)
                if plan.payload:
                    await c.update_customer(zoho_id, payload)
                return zoho_id, "active"
            case Action.MARK_CUSTOMER_INACTIVE:
                zoho_id = zoho_id or await self._created_before(entity_type, entity_id)
                if zoho_id is None:
                    return None, None
                await c.mark_customer_inactive(zoho_id)
                return zoho_id, "inactive"
            case Action.UPDATE_INVOICE:
                assert zoho_id is not None
                try:
                    body = await c.update_invoice(zoho_id, payload)
                except NotFound:
                    return await self._create(entity_type, entity_id, payload, row)
                return zoho_id, body.get("status")
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
                return zoho_id, "deleted"
        raise ValueError(f"plan {plan.action} makes no Zoho call")

    async def _created_before(self, entity_type: EntityType, entity_id: str) -> str | None:
        """The Zoho id of a record an unresolved create intent may have made, found by its natural key.

        A delete that arrives while a create is unresolved (the call was sent, the outcome never
        recorded) must reach that record, or it would stay active in Zoho.
        """
        intent = await self._store.intent(entity_type, entity_id)
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
        key = natural_key(entity_type, row)
        if key is None:
            raise ValueError(f"{entity_type.value} {entity_id} has no natural key to create it safely")
        c = self._client
        email = (row or {}).get("email") or None
        existing: dict[str, Any] | None = None
        if await self._store.intent(entity_type, entity_id) is not None:
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
            return _zoho_id(entity_type, body), body.get("status")
        zoho_id = _zoho_id(entity_type, existing)
        assert zoho_id is not None
        if entity_type is EntityType.CUSTOMER:
            await c.update_customer(zoho_id, payload)
            return zoho_id, "active"
        body = await c.update_invoice(zoho_id, payload)
        return zoho_id, body.get("status")


def _zoho_id(entity_type: EntityType, body: Mapping[str, Any]) -> str | None:
    value = body.get("customer_id") if entity_type is EntityType.CUSTOMER else body.get("invoice_id")
    return str(value) if value is not None else None
