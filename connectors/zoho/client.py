"""The async Zoho Billing client used by the consumer: customers and invoices, budget-aware.

Every HTTP attempt goes through the same gate, in this order: reserve one call of the daily budget
(waiting for the next UTC day when spent), get the shared access token, take a send slot and an
in-flight permit of the organisation's shared window (`SharedWindow`, shared by every process through
its `RateWindowStore`), send. Replies map to the `errors` hierarchy (success is `code == 0`),
and `RetryPolicy` decides retries by error family. Creates are never retried blindly once the
request may have reached Zoho: they raise `ResponseLost`, and the `*_idempotent` helpers resolve
the doubt by looking the record up by its natural key before creating again.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from connectors.zoho import errors, tracking
from connectors.zoho.auth import OAuthClient, TokenManager
from connectors.zoho.budget import DailyBudget
from connectors.zoho.config import ZohoConfig
from connectors.zoho.protocol import (
    API_PATH,
    AUTH_SCHEME,
    CODE_DUPLICATE_NAME,
    CODE_RATE_PER_DAY,
    CODE_RATE_PER_MINUTE,
    DEFAULT_API_BASE,
    ORG_HEADER,
    error_from_reply,
)
from connectors.zoho.retry import RetryPolicy
from connectors.zoho.send_guard import CURRENT_GUARD
from connectors.zoho.stores import (
    DailyBudgetStore,
    MemoryDailyBudgetStore,
    MemoryRateWindowStore,
    MemoryTokenStore,
    RateWindowStore,
    StoredToken,
    TokenStore,
    token_key,
)
from connectors.zoho.window import SharedWindow

PER_PAGE = 200

BeforeSend = Callable[[], Awaitable[None]]


def _once(step: BeforeSend | None) -> BeforeSend | None:
    """`step` made idempotent: the first call runs it, later calls return at once."""
    if step is None or getattr(step, "_runs_once", False):
        return step
    done = False

    async def run() -> None:
        nonlocal done
        if not done:
            await step()
            done = True

    run._runs_once = True  # type: ignore[attr-defined]
    return run


_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


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


class ZohoClient:
    """One organisation's Zoho Billing API over one shared keep-alive `httpx.AsyncClient`."""

    def __init__(
        self,
        config: ZohoConfig,
        *,
        token_store: TokenStore | None = None,
        budget_store: DailyBudgetStore | None = None,
        window_store: RateWindowStore | None = None,
        rng: random.Random | None = None,
        budget_clock: Any = None,
    ) -> None:
        self.config = config
        self.metrics = tracking.ClientMetrics()
        self._rng = rng or random.Random()
        timeout = httpx.Timeout(config.read_timeout, connect=config.connect_timeout)
        limits = httpx.Limits(
            max_connections=config.max_concurrency + 2, max_keepalive_connections=config.max_concurrency + 2
        )
        self._http = httpx.AsyncClient(timeout=timeout, limits=limits)
        self.token_store = token_store or MemoryTokenStore()
        self.budget_store = budget_store or MemoryDailyBudgetStore()
        self.window_store = window_store or MemoryRateWindowStore()
        oauth = OAuthClient(config.accounts_url, config.client_id, config.client_secret, config.refresh_token)
        self.auth = TokenManager(
            self._http,
            oauth,
            self.token_store,
            token_key(config.accounts_url, config.client_id, config.refresh_token),
            refresh_margin=config.token_refresh_margin,
            backoff_seconds=config.token_backoff_seconds,
            backoff_max_seconds=config.token_backoff_max_seconds,
            metrics=self.metrics,
            rng=self._rng,
        )
        self.window = SharedWindow(
            self.window_store,
            config.organization_id,
            rate_per_window=config.rate_per_window,
            window_seconds=config.rate_window_seconds,
            guard_seconds=config.rate_guard_seconds,
            concurrency=config.max_concurrency,
            mode=config.rate_pacing,
            block_size=config.rate_block_size,
            block_seconds=config.rate_block_seconds,
            label=config.instance_label,
            rng=self._rng,
        )
        budget_kwargs = {"clock": budget_clock} if budget_clock is not None else {}
        self.daily = DailyBudget(
            self.budget_store,
            config.organization_id,
            config.daily_limit,
            poll_seconds=config.budget_poll_seconds,
            **budget_kwargs,
        )
        self.retry_policy = RetryPolicy(
            max_attempts=config.max_attempts,
            max_seconds=config.retry_max_seconds,
            base_seconds=config.retry_base_seconds,
            cap_seconds=min(60.0, config.retry_max_seconds),
            rng=self._rng,
        )

    def __repr__(self) -> str:
        return f"<ZohoClient org={self.config.organization_id!r} api={self.config.api_base!r}>"

    @classmethod
    def from_settings(
        cls,
        settings: Any,
        token_store: TokenStore | None = None,
        budget_store: DailyBudgetStore | None = None,
        window_store: RateWindowStore | None = None,
        **overrides: Any,
    ) -> ZohoClient:
        """Build from `Settings`; `overrides` replace single `ZohoConfig` fields (tests)."""
        return cls(
            ZohoConfig.from_settings(settings, **overrides),
            token_store=token_store,
            budget_store=budget_store,
            window_store=window_store,
        )

    async def __aenter__(self) -> ZohoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        try:
            await self.daily.close()
        except Exception:  # noqa: BLE001 - closing must not fail on it; the block is lost for today only
            pass
        await self.window.aclose()
        await self._http.aclose()
        await self.token_store.aclose()
        await self.budget_store.aclose()
        await self.window_store.aclose()

    # --- accounting -------------------------------------------------------------------------

    @contextmanager
    def tracking(self) -> Iterator[tracking.CallTracker]:
        """Count this task's attempts (then read t.attempts, t.http_status, t.calls)."""
        with tracking.tracking() as tracker:
            yield tracker

    async def budget_state(self) -> dict[str, object]:
        """Calls this window (the organisation's, all processes) and today, the limits, the current
        adaptive rate, any pause and the processes sharing the window."""
        return {
            **self.window.state(),
            **await self.window.shared_state(),
            **await self.daily.state(),
            "max_concurrency": self.config.max_concurrency,
        }

    @property
    def current_rate_per_window(self) -> int:
        return int(self.window.rate)

    # --- the one request path ---------------------------------------------------------------

    def _api_base(self, token: StoredToken) -> str:
        if self.config.api_base == DEFAULT_API_BASE and token.api_domain:
            return token.api_domain.rstrip("/") + API_PATH
        return self.config.api_base

    async def _attempt(
        self,
        method: str,
        path: str,
        endpoint: str,
        params: dict[str, Any] | None,
        body: Any,
        before_send: BeforeSend | None = None,
    ) -> dict[str, Any]:
        waited = await self.daily.spend()
        if waited:
            self.metrics.daily_wait_seconds += waited
            tracking.record_budget_wait(waited)
        await self.auth.token()  # wait out a token refresh (or its back-off) before holding a slot
        before = self.window.metrics.wait_seconds
        async with self.window.send() as sent_at:
            self.metrics.limiter_wait_seconds += self.window.metrics.wait_seconds - before
            token = await self.auth.token()  # cached, unless it expired while we waited for the slot
            guard = CURRENT_GUARD.get()
            if guard is not None:
                guard.before_send()  # raises SendRevoked when the caller no longer owns this work
            if before_send is not None:
                await before_send()  # e.g. a durable create intent, written only once the call can go out
            headers = {
                "Authorization": f"{AUTH_SCHEME} {token.access_token}",
                ORG_HEADER: self.config.organization_id,
            }
            started = time.monotonic()
            try:
                reply = await self._http.request(
                    method, self._api_base(token) + path, params=params, json=body, headers=headers
                )
            except httpx.TransportError as exc:
                elapsed = time.monotonic() - started
                sent = not isinstance(exc, _NOT_SENT)
                kind = errors.ResponseLost if sent else errors.TransientError
                what = "no reply from Zoho" if sent else "could not reach Zoho"
                self._record(endpoint, None, None, elapsed, kind.__name__)
                raise kind(f"{what} for {endpoint} ({type(exc).__name__})") from None
        elapsed = time.monotonic() - started
        try:
            payload = reply.json()
        except ValueError:
            payload = None
        error = error_from_reply(reply.status_code, payload, reply.headers)
        code = payload.get("code") if isinstance(payload, dict) else None
        self._record(endpoint, reply.status_code, code, elapsed, type(error).__name__ if error else None)
        if error is None:
            self.window.on_success(sent_at)
            return payload  # type: ignore[return-value]
        if reply.status_code == 401:
            await self.auth.invalidate(token)
        elif isinstance(error, errors.RateLimited) and error.code in (CODE_RATE_PER_MINUTE, None):
            await self.window.on_rate_limited(sent_at, error.retry_after)
        elif isinstance(error, errors.DailyBudgetExhausted) or code == CODE_RATE_PER_DAY:
            await self.daily.mark_exhausted()
        raise error

    def _record(
        self, endpoint: str, status: int | None, code: Any, seconds: float, error: str | None
    ) -> None:
        call = tracking.CallRecord(endpoint, status, code if isinstance(code, int) else None, seconds, error)
        tracking.record(call)
        self.metrics.count(call)

    async def _request(
        self,
        method: str,
        path: str,
        endpoint: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        retry_in_doubt: bool = True,
        before_send: BeforeSend | None = None,
    ) -> dict[str, Any]:
        before_send = _once(before_send)
        attempts = 0
        token_retried = False
        started = time.monotonic()
        budget_wait_before = self.metrics.daily_wait_seconds
        while True:
            attempts += 1
            try:
                return await self._attempt(method, path, endpoint, params, body, before_send)
            except errors.ZohoError as error:
                error.attempts = attempts
                if type(error) is errors.AuthError and error.http_status == 401 and not token_retried:
                    token_retried = True  # the token was dropped in _attempt; the next attempt refreshes
                    continue
                if isinstance(error, errors.ResponseLost) and not retry_in_doubt:
                    raise
                # time spent waiting for the next day's budget is not charged to the retry window
                elapsed = time.monotonic() - started - (self.metrics.daily_wait_seconds - budget_wait_before)
                delay = self.retry_policy.delay(error, attempts, max(0.0, elapsed))
                if delay is None:
                    raise
                self.metrics.retries += 1
                if delay:
                    await asyncio.sleep(delay)

    async def _pages(
        self, path: str, key: str, endpoint: str, filters: dict[str, Any]
    ) -> AsyncIterator[dict]:
        per_page = int(filters.pop("per_page", PER_PAGE))
        page = int(filters.pop("page", 1))
        while True:
            body = await self._request(
                "GET", path, endpoint, params={**filters, "page": page, "per_page": per_page}
            )
            items = body.get(key) or []
            for item in items:
                yield item
            context = body.get("page_context")
            if isinstance(context, dict) and "has_more_page" in context:
                more = bool(context["has_more_page"])
            else:
                more = len(items) >= per_page
            if not more or not items:
                return
            page += 1

    # --- customers ---------------------------------------------------------------------------

    def _account_number_in(self, payload: dict[str, Any]) -> str | None:
        return account_number_of(
            payload, self.config.account_number_field, self.config.account_number_list_filter
        )

    async def create_customer(
        self, payload: dict[str, Any], before_send: BeforeSend | None = None
    ) -> dict[str, Any]:
        """POST /customers. On a display-name clash (3062) retries once as "Name (<account number>)".
        `before_send` runs once, when the first request holds its send slot, before it is sent.

        Raises ResponseLost when the reply was lost (the customer may exist): resolve with find_customer.
        """
        before_send = _once(before_send)

        async def create(body: dict[str, Any]) -> dict[str, Any]:
            reply = await self._request(
                "POST",
                "/customers",
                "POST /customers",
                body=body,
                retry_in_doubt=False,
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
        path = f"/customers/{customer_id}/markasinactive"
        return await self._request("POST", path, "POST /customers/{id}/markasinactive")

    async def mark_customer_active(self, customer_id: str) -> dict[str, Any]:
        path = f"/customers/{customer_id}/markasactive"
        return await self._request("POST", path, "POST /customers/{id}/markasactive")

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
        before_send = _once(before_send)

        async def lookup() -> dict[str, Any] | None:
            return await self.find_customer(account_number, email)

        return await self._create_once(lambda: self.create_customer(payload, before_send), lookup)

    # --- invoices ----------------------------------------------------------------------------

    async def create_invoice(
        self, payload: dict[str, Any], before_send: BeforeSend | None = None
    ) -> dict[str, Any]:
        """POST /invoices keeping our invoice number (ignore_auto_number_generation=true, send=false).

        Raises Duplicate (1001) when the number exists, ResponseLost when the reply was lost.
        """
        params = {"ignore_auto_number_generation": "true", "send": "false"}
        reply = await self._request(
            "POST",
            "/invoices",
            "POST /invoices",
            params=params,
            body=payload,
            retry_in_doubt=False,
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
        return await self._request("POST", f"/invoices/{invoice_id}/void", "POST /invoices/{id}/void")

    async def delete_invoice(self, invoice_id: str) -> dict[str, Any]:
        """DELETE /invoices/{id}; a NotFound after a lost reply means our earlier attempt deleted it."""
        with tracking.tracking() as mine:
            try:
                return await self._request("DELETE", f"/invoices/{invoice_id}", "DELETE /invoices/{id}")
            except errors.NotFound:
                if any(call.error == "ResponseLost" for call in mine.calls):
                    return {"code": 0, "message": "The invoice has been deleted."}
                raise

    async def open_invoice(self, invoice_id: str) -> dict[str, Any]:
        """POST /invoices/{id}/converttoopen: draft to open without emailing anyone (unlike /email)."""
        path = f"/invoices/{invoice_id}/converttoopen"
        return await self._request("POST", path, "POST /invoices/{id}/converttoopen")

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
        before_send = _once(before_send)
        return await self._create_once(
            lambda: self.create_invoice(payload, before_send),
            lambda: self.find_invoice_by_number(invoice_number, reference=reference),
        )

    # --- payments ----------------------------------------------------------------------------

    async def create_payment(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST /payments. Raises ResponseLost when the reply was lost (the payment may exist)."""
        reply = await self._request("POST", "/payments", "POST /payments", body=payload, retry_in_doubt=False)
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
        """Record a payment exactly once: after a lost reply or failure, find it on the invoice first."""
        reference = str(payload.get("reference_number") or "")
        return await self._create_once(
            lambda: self.create_payment(payload),
            lambda: self.find_payment_on_invoice(invoice_id, reference),
        )

    # --- items -------------------------------------------------------------------------------

    async def create_item(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST /items; a taken name answers code 1000 "The item name already exist" (a Duplicate)."""
        reply = await self._request("POST", "/items", "POST /items", body=payload, retry_in_doubt=False)
        return reply["item"]

    async def get_item(self, item_id: str) -> dict[str, Any]:
        return (await self._request("GET", f"/items/{item_id}", "GET /items/{id}"))["item"]

    async def find_item(self, name: str) -> dict[str, Any] | None:
        """The item named exactly `name` (case-insensitive, as Zoho compares item names), else None."""
        async for item in self._pages("/items", "items", "GET /items", {"name": name}):
            if str(item.get("name", "")).strip().lower() == name.strip().lower():
                return item
        return None

    async def create_item_once(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The item named `payload["name"]`: found, or created once (a lost reply or a clash is looked up)."""
        name = str(payload["name"])
        found = await self.find_item(name)
        if found is not None:
            return found
        try:
            return await self._create_once(lambda: self.create_item(payload), lambda: self.find_item(name))
        except errors.Duplicate:
            found = await self.find_item(name)
            if found is None:
                raise
            return found

    async def _create_once(self, create: Any, lookup: Any) -> dict[str, Any]:
        last: errors.ZohoError | None = None
        for _ in range(self.config.max_attempts):
            if last is not None:
                try:
                    found = await lookup()
                except errors.TransientError as exc:
                    last = exc
                    continue
                if found is not None:
                    return found
                if isinstance(last, errors.Duplicate):
                    raise last  # it exists under another key: not ours to adopt
            try:
                return await create()
            except (errors.TransientError, errors.Duplicate) as exc:
                last = exc
        assert last is not None
        raise last
