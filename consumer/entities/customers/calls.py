"""The Zoho calls of a customer: create, update, mark active or inactive; never a delete.

A customer whose Zoho record was deleted by hand (or whose organisation was wiped) is created again,
never blindly: the create goes through the applier's intent and natural-key lookup.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from connectors.zoho.errors import NotFound, PermanentError
from connectors.zoho.resources.customers import account_number_of, disambiguated_name
from consumer.entities.spec import ApplyContext, Record, Row
from consumer.model.call_errors import ZohoAhead
from consumer.model.events import EntityType
from consumer.model.plan import Action, Plan, as_text, without_create_only

#: The rules a customer is matched by before it is created, in the order of ZOHO_CUSTOMER_MATCH_RULES.
MATCH_RULES = ("account_number", "email")


class CustomerCalls:
    """Carries out customer plans with the Zoho client."""

    def __init__(self, ctx: ApplyContext) -> None:
        self._ctx = ctx
        self._client = ctx.client

    async def find(self, natural_key: str, entity_id: str, row: Row) -> Record | None:
        found: dict[str, Any] | None = await self._client.find_customer(natural_key, _email(row))
        return found

    async def create(self, payload: Record, natural_key: str, row: Row) -> Record:
        body: dict[str, Any] = await self._client.create_customer_idempotent(
            payload, natural_key, _email(row)
        )
        return body

    async def adopt(self, existing: Record, payload: Record) -> Record:
        """Bring the record up to `payload`, with a PUT only when a mapped field differs (or is not shown)."""
        if not self._differs(existing, payload):
            return existing
        body = await self._client.update_customer(str(existing["customer_id"]), without_create_only(payload))
        return {**body, "status": body.get("status", existing.get("status"))}

    # --- matching records made by others (`consumer.pipeline.adoption.finder`) ---------------------
    async def read(self, zoho_id: str) -> Record:
        body: dict[str, Any] = await self._client.get_customer(zoho_id)
        return body

    async def candidates(self, rule: str, entity_id: str, row: Row) -> list[Record] | None:
        """Customers carrying the row's account number in the custom field, or having its e-mail (compared
        case-insensitively; an empty e-mail matches nothing)."""
        c, config = self._client, self._client.config
        value = as_text((row or {}).get(rule))
        if not value:
            return None
        if rule == "account_number":
            column = config.account_number_list_filter
            return [
                item
                async for item in c.iter_customers(**{column: value})
                if await self._account_number(item) == value
            ]
        if rule == "email":
            items = c.iter_customers(**{config.customer_email_filter: value})
            return [item async for item in items if as_text(item.get("email")).lower() == value.lower()]
        raise ValueError(f"unknown customer match rule {rule!r}; known: {', '.join(MATCH_RULES)}")

    def listing(self) -> AsyncIterator[Record]:
        listed: AsyncIterator[Record] = self._client.iter_customers()
        return listed

    def listed(self, record: Record, rule: str) -> str | None:
        if rule == "account_number":
            config = self._client.config
            return account_number_of(record, config.account_number_field, config.account_number_list_filter)
        return as_text(record.get(rule)).lower() if rule in record else None

    def wanted(self, rule: str, row: Row) -> str:
        value = as_text((row or {}).get(rule))
        return value if rule == "account_number" else value.lower()

    async def foreign_key(self, record: Record, entity_id: str, row: Row) -> str | None:
        ours = as_text((row or {}).get("account_number"))
        shown = await self._account_number(record)
        return f"account number {shown}" if shown and shown != ours else None

    async def _account_number(self, record: Record) -> str:
        """The account number the customer carries; read in full when the list item does not show it."""
        config = self._client.config
        label, column = config.account_number_field, config.account_number_list_filter
        shown = account_number_of(record, label, column)
        if shown is None and "custom_fields" not in record:
            whole = await self.read(str(record["customer_id"]))
            record.update(whole)  # the caller's candidate is now the whole record: no second read
            shown = account_number_of(whole, label, column)
        return shown or ""

    def _differs(self, existing: Record, payload: Record) -> bool:
        config = self._client.config
        return differs(existing, payload, config.account_number_field, config.account_number_list_filter)

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
                except PermanentError as exc:  # refused: read back once, in case Zoho moved on its own
                    current = await c.get_customer(zoho_id)
                    _check_ahead(zoho_id, current.get("status"), plan, content_sent=False, refusal=exc)
                    raise
                _check_ahead(zoho_id, body.get("status"), plan, content_sent=True)
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


def differs(existing: Mapping[str, Any], payload: Mapping[str, Any], label: str, list_filter: str) -> bool:
    """True when a mapped field of `payload` differs from the Zoho customer `existing`, or is not shown
    there (a list item has no address, and may have no custom fields): then it is sent, to be sure."""
    return any(
        _field_differs(existing, payload, name, want, label, list_filter)
        for name, want in without_create_only(dict(payload)).items()
    )


def _field_differs(
    existing: Mapping[str, Any],
    payload: Mapping[str, Any],
    name: str,
    want: Any,
    label: str,
    list_filter: str,
) -> bool:
    if name == "custom_fields":
        shown = account_number_of(dict(existing), label, list_filter)
        return any(f.get("label") == label and shown != f.get("value") for f in want)
    if name not in existing:
        return True
    return not _SAME.get(name, _same_text)(existing[name], want, payload, label)


def _same_text(shown: Any, want: Any, payload: Mapping[str, Any], label: str) -> bool:
    return as_text(shown) == as_text(want)


def _same_address(shown: Any, want: Any, payload: Mapping[str, Any], label: str) -> bool:
    return isinstance(shown, Mapping) and all(as_text(shown.get(k)) == v for k, v in want.items())


def _same_email(shown: Any, want: Any, payload: Mapping[str, Any], label: str) -> bool:
    """Emails match whatever their case."""
    return as_text(shown).lower() == as_text(want).lower()


def _same_display_name(shown: Any, want: Any, payload: Mapping[str, Any], label: str) -> bool:
    """The name as sent, or as made unique with the account number after a name clash."""
    account = _account_in(payload, label)
    return as_text(shown) in (as_text(want), disambiguated_name(as_text(want), account))


#: How a field Zoho shows is compared with the one to send, where plain text equality is not the rule.
_SAME = {"billing_address": _same_address, "email": _same_email, "display_name": _same_display_name}


def _account_in(payload: Mapping[str, Any], label: str) -> str:
    for custom in payload.get("custom_fields") or []:
        if custom.get("label") == label:
            return as_text(custom.get("value"))
    return ""


def _check_ahead(
    zoho_id: str, status: str | None, plan: Plan, *, content_sent: bool, refusal: Exception | None = None
) -> None:
    """Raise ZohoAhead when Zoho shows the customer inactive while zoho-cdc left it active and the source
    still wants it active: a person made it inactive in Zoho, and zoho-cdc does not undo that."""
    if status != "inactive" or plan.from_status != "active" or plan.status != "active":
        return
    answered = f"; Zoho answered: {refusal}" if refusal is not None else ""
    raise ZohoAhead(
        zoho_id,
        "inactive",
        f"Zoho is ahead: the customer is inactive in Zoho, not set by zoho-cdc (which left it active), but"
        f" active in the source; it is not made active again{answered}",
        content_sent=content_sent,
    )


def _email(row: Mapping[str, Any] | None) -> str | None:
    return (row or {}).get("email") or None
