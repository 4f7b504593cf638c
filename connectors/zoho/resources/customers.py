"""The client's customer calls: create (with display-name disambiguation), update, find by account number.

A customer is ours only when it carries our account number in the account-number custom field: lookups
verify that on every candidate (reading the whole record when the list hides custom fields), since the
list filters are unconfirmed for Billing, so another source row's customer is never adopted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from connectors.zoho import errors
from connectors.zoho.wire.at_most_once import BeforeSend, at_most_once
from connectors.zoho.wire.protocol import CODE_DUPLICATE_NAME
from connectors.zoho.wire.transport import ZohoTransport


def account_number_of(customer: dict[str, Any], label: str, list_filter: str) -> str | None:
    """The account number shown on a customer (`custom_fields` or a `cf_*` list column); None if not shown."""
    for custom in customer.get("custom_fields") or []:
        if isinstance(custom, dict) and custom.get("label") == label:
            value = custom.get("value")
            return "" if value is None else str(value)
    if list_filter in customer:
        value = customer[list_filter]
        return "" if value is None else str(value)
    return None


def with_account_number(payload: dict[str, Any], label: str, account_number: str) -> dict[str, Any]:
    """`payload` with the account-number custom field set (other custom fields kept)."""
    fields = [f for f in payload.get("custom_fields") or [] if f.get("label") != label]
    return {**payload, "custom_fields": [*fields, {"label": label, "value": account_number}]}


def disambiguated_name(display_name: str, account_number: str) -> str:
    suffix = f" ({account_number})"
    return display_name if display_name.endswith(suffix) else display_name + suffix


class CustomerEndpoints(ZohoTransport):
    """POST/PUT/GET /customers and the lookups that make a create happen exactly once."""

    def _account_number_in(self, payload: dict[str, Any]) -> str | None:
        return account_number_of(
            payload, self.config.account_number_field, self.config.account_number_list_filter
        )

    async def create_customer(
        self, payload: dict[str, Any], before_send: BeforeSend | None = None
    ) -> dict[str, Any]:
        """POST /customers. On a display-name clash (3062) retries once as "Name (<account number>)".
        `before_send` runs once, before the first request is sent: when it can go out at once, or once it
        holds its send slot.

        Raises InDoubt when the reply does not say whether it was made: resolve with find_customer.
        """
        before_send = at_most_once(before_send)

        async def create(body: dict[str, Any]) -> dict[str, Any]:
            reply = await self._request(
                "POST",
                "/customers",
                "POST /customers",
                body=body,
                before_send=before_send,
            )
            return reply["customer"]

        return await self._with_unique_name(payload, create, creating=True)

    async def _with_unique_name(
        self, payload: dict[str, Any], send: Any, *, creating: bool = False
    ) -> dict[str, Any]:
        try:
            return await send(payload)
        except errors.Duplicate as clash:
            account_number = self._account_number_in(payload)
            name = payload.get("display_name")
            if clash.code != CODE_DUPLICATE_NAME or not account_number or not name:
                raise
            if creating:
                # The name may be taken by this very customer, created by an earlier attempt whose
                # reply was lost: adopting it beats creating a renamed twin.
                mine = await self.find_customer(account_number)
                if mine is not None:
                    return mine
            renamed = disambiguated_name(str(name), account_number)
            if renamed == name:
                raise
            return await send({**payload, "display_name": renamed})

    async def update_customer(self, customer_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """PUT /customers/{id}, with the same display-name disambiguation as create."""

        async def update(body: dict[str, Any]) -> dict[str, Any]:
            reply = await self._request("PUT", f"/customers/{customer_id}", "PUT /customers/{id}", body=body)
            return reply["customer"]

        return await self._with_unique_name(payload, update)

    async def get_customer(self, customer_id: str) -> dict[str, Any]:
        return (await self._request("GET", f"/customers/{customer_id}", "GET /customers/{id}"))["customer"]

    async def mark_customer_inactive(self, customer_id: str) -> dict[str, Any]:
        """POST /customers/{id}/markasinactive; after an in-doubt reply the customer is read first."""
        return await self._mark(customer_id, "inactive")

    async def mark_customer_active(self, customer_id: str) -> dict[str, Any]:
        """POST /customers/{id}/markasactive; after an in-doubt reply the customer is read first."""
        return await self._mark(customer_id, "active")

    async def _mark(self, customer_id: str, status: str) -> dict[str, Any]:
        async def applied() -> dict[str, Any] | None:
            customer = await self.get_customer(customer_id)
            return customer if customer.get("status") == status else None

        path = f"/customers/{customer_id}/markas{status}"
        return await self.settle_write(
            lambda: self._request("POST", path, f"POST /customers/{{id}}/markas{status}"), applied
        )

    def iter_customers(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Every customer matching `filters` (Zoho list filters), page by page."""
        return self._pages("/customers", "customers", "GET /customers", dict(filters))

    async def find_customer(self, account_number: str, email: str | None = None) -> dict[str, Any] | None:
        """The customer carrying `account_number` in the account-number custom field (searched by the
        filter, then by `email`); None when there is none. Results are verified, never trusted blindly,
        since the list filters are unconfirmed for Billing: a customer without our account number is
        never adopted."""
        label, column = self.config.account_number_field, self.config.account_number_list_filter
        async for item in self.iter_customers(**{column: account_number}):
            if await self._carries(item, account_number, label, column):
                return item
        if email:
            async for item in self.iter_customers(**{self.config.customer_email_filter: email}):
                if str(item.get("email", "")).lower() != email.lower():
                    continue
                if await self._carries(item, account_number, label, column):
                    return item
        return None

    async def _carries(self, item: dict[str, Any], account_number: str, label: str, column: str) -> bool:
        shown = account_number_of(item, label, column)
        if shown is None:  # the list did not show custom fields: read the whole record
            shown = account_number_of(await self.get_customer(str(item["customer_id"])), label, column)
        return shown == account_number

    async def create_customer_idempotent(
        self,
        payload: dict[str, Any],
        account_number: str,
        email: str | None = None,
        before_send: BeforeSend | None = None,
    ) -> dict[str, Any]:
        """Create a customer exactly once: after a lost reply or failure, look it up before creating again.
        `before_send` (a durable create intent) runs once, right before the first POST is sent."""
        payload = with_account_number(payload, self.config.account_number_field, account_number)
        before_send = at_most_once(before_send)

        async def lookup() -> dict[str, Any] | None:
            return await self.find_customer(account_number, email)

        return await self._create_once(lambda: self.create_customer(payload, before_send), lookup)
