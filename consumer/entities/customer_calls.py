"""The Zoho calls of a customer: create, update, mark active or inactive; never a delete.

A customer whose Zoho record was deleted by hand (or whose organisation was wiped) is created again,
never blindly: the create goes through the applier's intent and natural-key lookup.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.zoho.errors import NotFound
from consumer.entities.spec import ApplyContext, BeforeSend, Record, Row
from consumer.pipeline.events import EntityType
from consumer.pipeline.plan import Action, Plan


class CustomerCalls:
    """Carries out customer plans with the Zoho client."""

    def __init__(self, ctx: ApplyContext) -> None:
        self._ctx = ctx
        self._client = ctx.client

    async def find(self, natural_key: str, entity_id: str, row: Row) -> Record | None:
        found: dict[str, Any] | None = await self._client.find_customer(natural_key, _email(row))
        return found

    async def create(self, payload: Record, natural_key: str, row: Row, before_send: BeforeSend) -> Record:
        body: dict[str, Any] = await self._client.create_customer_idempotent(
            payload, natural_key, _email(row), before_send=before_send
        )
        return body

    async def adopt(self, existing: Record, payload: Record) -> Record:
        body = await self._client.update_customer(str(existing["customer_id"]), payload)
        return {**body, "status": body.get("status", existing.get("status"))}

    async def carry_out(
        self, plan: Plan, entity_id: str, row: Mapping[str, Any] | None, zoho_id: str | None
    ) -> tuple[str | None, str | None]:
        c = self._client
        payload = plan.payload or {}
        match plan.action:
            case Action.CREATE_CUSTOMER:
                zoho_id, status = await self._create(entity_id, payload, row)
                return zoho_id, await self._status(zoho_id, status, plan.status)
            case Action.UPDATE_CUSTOMER:
                assert zoho_id is not None
                try:
                    body = await c.update_customer(zoho_id, payload)
                except NotFound:  # deleted in Zoho by hand: recreate (never blindly: lookup first)
                    zoho_id, _ = await self._create(entity_id, payload, row)
                    body = {}
                return zoho_id, await self._status(zoho_id, body.get("status"), plan.status)
            case Action.MARK_CUSTOMER_ACTIVE:
                return await self._reactivate(plan, entity_id, row, zoho_id)
            case Action.MARK_CUSTOMER_INACTIVE:
                return await self._deactivate(plan, entity_id, row, zoho_id)
        raise ValueError(f"plan {plan.action} makes no Zoho customer call")

    async def _reactivate(
        self, plan: Plan, entity_id: str, row: Mapping[str, Any] | None, zoho_id: str | None
    ) -> tuple[str | None, str | None]:
        assert zoho_id is not None
        try:
            await self._client.mark_customer_active(zoho_id)
        except NotFound:  # deleted in Zoho (by hand, or the organisation was wiped): recreate
            if not plan.payload:
                raise
            zoho_id, status = await self._create(entity_id, plan.payload, row)
            return zoho_id, await self._status(zoho_id, status, "active")
        if plan.payload:
            await self._client.update_customer(zoho_id, plan.payload)
        return zoho_id, "active"

    async def _deactivate(
        self, plan: Plan, entity_id: str, row: Mapping[str, Any] | None, zoho_id: str | None
    ) -> tuple[str | None, str | None]:
        zoho_id = zoho_id or await self._ctx.created_before(EntityType.CUSTOMER, entity_id)
        if zoho_id is None:
            return None, None
        if plan.payload:  # content first: what an inactive customer accepts is unconfirmed
            try:
                await self._client.update_customer(zoho_id, plan.payload)
            except NotFound:  # deleted in Zoho (a closed account; the organisation wiped): recreate
                zoho_id, _ = await self._create(entity_id, plan.payload, row)
        await self._client.mark_customer_inactive(zoho_id)
        return zoho_id, "inactive"

    async def _create(
        self, entity_id: str, payload: dict[str, Any], row: Mapping[str, Any] | None
    ) -> tuple[str, str | None]:
        zoho_id, body = await self._ctx.create(EntityType.CUSTOMER, entity_id, payload, row)
        assert zoho_id is not None
        return zoho_id, body.get("status")

    async def _status(self, zoho_id: str, status: str | None, target: str | None) -> str:
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


def _email(row: Mapping[str, Any] | None) -> str | None:
    return (row or {}).get("email") or None
