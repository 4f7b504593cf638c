"""The one request path of the Zoho client: every call's gate, send, reply mapping and retry.

Each attempt reserves a call of the daily budget, gets the shared token, then holds a slot and permit of
the organisation's shared window while it sends; replies map to the `errors` tree and `RetryPolicy`
retries by family. Whether a failure is in doubt is decided in `in_doubt`, once; the writes that must not
be sent twice are made through `at_most_once`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any, Self

import httpx

from connectors import clock
from connectors.zoho import errors, tracking
from connectors.zoho.config import ZohoConfig
from connectors.zoho.limits.daily_budget import DailyBudget
from connectors.zoho.limits.shared_window import SharedWindow
from connectors.zoho.oauth.data_centres import effective_api_base
from connectors.zoho.oauth.tokens import OAuthClient, TokenManager
from connectors.zoho.send_guard import BEFORE_WRITE, CURRENT_GUARD
from connectors.zoho.stores.memory import MemoryDailyBudgetStore, MemoryRateWindowStore, MemoryTokenStore
from connectors.zoho.stores.protocols import (
    DailyBudgetStore,
    RateWindowStore,
    StoredToken,
    TokenStore,
    token_key,
)
from connectors.zoho.wire.at_most_once import BeforeSend, at_most_once, create_once, in_turn, settle_write
from connectors.zoho.wire.http_pool import PooledTransport, Reply, WirePool
from connectors.zoho.wire.in_doubt import in_doubt_as_sent, unanswered, unanswered_error
from connectors.zoho.wire.protocol import (
    AUTH_SCHEME,
    CODE_RATE_PER_DAY,
    CODE_RATE_PER_MINUTE,
    ORG_HEADER,
    error_from_reply,
)
from connectors.zoho.wire.retry import RetryPolicy

PER_PAGE = 200
#: Added to a call's deadline for how long its permit stays counted (the reply's handling, clock steps).
CALL_MARGIN_SECONDS = 2.0


class ZohoTransport:
    """One organisation's Zoho Billing API over one shared keep-alive `httpx.AsyncClient` (aiohttp's pool)."""

    def __init__(
        self,
        config: ZohoConfig,
        *,
        token_store: TokenStore | None = None,
        budget_store: DailyBudgetStore | None = None,
        window_store: RateWindowStore | None = None,
        rng: random.Random | None = None,
        pool: WirePool | None = None,
    ) -> None:
        """`pool` replaces the aiohttp pool (the simulation's in-process Zoho); closed with the client."""
        self.config = config
        self.metrics = tracking.ClientMetrics()
        self._rng = rng or random.Random()
        timeout = httpx.Timeout(config.read_timeout, connect=config.connect_timeout)
        limits = httpx.Limits(
            max_connections=config.max_concurrency + 2, max_keepalive_connections=config.max_concurrency + 2
        )
        # API calls go straight to the pool (`PooledTransport.send`): httpx's client layers and its request
        # and response objects serve no Zoho call and cost ~200 us each. The httpx client over the same pool
        # serves the token requests.
        self._pool = pool or PooledTransport(limits)
        # One deadline for a whole API call (pool wait, connect, every read): the per-read timeouts alone
        # do not bound a reply that trickles in, and the shared window counts a call's permit only this long.
        call_seconds = config.connect_timeout + config.read_timeout
        self._timeouts = {**timeout.as_dict(), "total": call_seconds}
        self._http = httpx.AsyncClient(timeout=timeout, transport=self._pool)
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
            clock=clock.wall,
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
            call_seconds=call_seconds + CALL_MARGIN_SECONDS,
            label=config.instance_label,
            rng=self._rng,
        )
        self.daily = DailyBudget(
            self.budget_store,
            config.organization_id,
            config.daily_limit,
            poll_seconds=config.budget_poll_seconds,
        )
        self.retry_policy = RetryPolicy(
            max_attempts=config.max_attempts,
            max_seconds=config.retry_max_seconds,
            base_seconds=config.retry_base_seconds,
            cap_seconds=min(60.0, config.retry_max_seconds),
            rng=self._rng,
        )

    async def __aenter__(self) -> Self:
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
        return effective_api_base(self.config.api_base, token.api_domain)

    async def _attempt(
        self,
        method: str,
        path: str,
        endpoint: str,
        params: dict[str, Any] | None,
        body: Any,
        before_send: BeforeSend | None,
        queued: list[float],
    ) -> dict[str, Any]:
        await self._spend_daily_budget()
        await self.auth.token()  # wait out a token refresh (or its back-off) before holding a slot
        if method != "GET":  # a write, sent only while it is still the caller's own (once per attempt)
            before_send = in_turn(at_most_once(BEFORE_WRITE.get()), before_send)
        if before_send is not None and self.window.open_now():
            # The call can go out at once: run the step (a durable create intent) before taking the slot,
            # so the slot and its permit are held for the call alone (one of Zoho's 10 concurrent permits
            # held across a commit idled a backfill). When calls queue for the window, the step runs
            # once the slot is held, so a wait for the rate window leaves no intent behind.
            await before_send()  # runs once (`at_most_once`): the call in the slot below skips it
        reply, token, sent_at, elapsed = await self._send_in_slot(
            method, path, endpoint, params, body, before_send, queued
        )
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
        await self._learn_from(error, code, token, sent_at)
        raise in_doubt_as_sent(error, method)

    async def _spend_daily_budget(self) -> None:
        waited = await self.daily.spend()
        if waited:
            self.metrics.daily_wait_seconds += waited
            tracking.record_budget_wait(waited)

    async def _send_in_slot(
        self,
        method: str,
        path: str,
        endpoint: str,
        params: dict[str, Any] | None,
        body: Any,
        before_send: BeforeSend | None,
        queued: list[float],
    ) -> tuple[Reply, StoredToken, float, float]:
        """Send once a window slot is held: the reply, the token it went with, when it was sent and how
        long it took; how long it waited for the slot is added to `queued`. A call without a reply raises
        its `in_doubt` error."""
        before = self.window.metrics.wait_seconds
        token: StoredToken | None = None

        async def prepare() -> None:
            # What may wait once the slot is held; the window re-checks the slot after it (a slot outlasted
            # is left counted and a fresh one taken), so the call never goes out past its slot's block.
            nonlocal token
            token = await self.auth.token()  # cached, unless it expired while we waited for the slot
            guard = CURRENT_GUARD.get()
            if guard is not None:
                guard.before_send()  # raises SendRevoked when the caller no longer owns this work
            if before_send is not None:
                await before_send()  # e.g. a durable create intent, written only once the call can go out

        entered = clock.monotonic()
        async with self.window.send(prepare) as sent_at:
            queued.append(clock.monotonic() - entered)
            self.metrics.limiter_wait_seconds += self.window.metrics.wait_seconds - before
            assert token is not None  # set by `prepare`
            headers = {
                "Authorization": f"{AUTH_SCHEME} {token.access_token}",
                ORG_HEADER: self.config.organization_id,
            }
            started = clock.monotonic()
            try:
                reply = await self._pool.send(
                    method,
                    self._api_base(token) + path,
                    params=params,
                    body=body,
                    headers=headers,
                    timeouts=self._timeouts,
                )
            except httpx.TransportError as exc:
                self._record(endpoint, None, None, clock.monotonic() - started, unanswered(exc).__name__)
                raise unanswered_error(exc, method, endpoint) from None
        return reply, token, sent_at, clock.monotonic() - started

    async def _learn_from(
        self, error: errors.ZohoError, code: Any, token: StoredToken, sent_at: float
    ) -> None:
        """What a refusal teaches the shared state: a rejected token is dropped, a per-minute 429 slows
        the window, a per-day one ends today's budget."""
        if isinstance(error, errors.AccessTokenRejected):
            await self.auth.invalidate(token)
        elif isinstance(error, errors.RateLimited) and error.code in (CODE_RATE_PER_MINUTE, None):
            await self.window.on_rate_limited(sent_at, error.retry_after)
        elif isinstance(error, errors.DailyBudgetExhausted) or code == CODE_RATE_PER_DAY:
            await self.daily.mark_exhausted()

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
        before_send: BeforeSend | None = None,
    ) -> dict[str, Any]:
        before_send = at_most_once(before_send)
        attempts = 0
        token_retried = False
        started = clock.monotonic()
        budget_wait_before = self.metrics.daily_wait_seconds
        queued: list[float] = []  # each attempt's wait for its window slot
        while True:
            attempts += 1
            try:
                return await self._attempt(method, path, endpoint, params, body, before_send, queued)
            except errors.ZohoError as error:
                error.attempts = attempts
                if isinstance(error, errors.AccessTokenRejected) and not token_retried:
                    token_retried = True  # the token was dropped in _attempt; the next attempt refreshes
                    continue
                # Time spent waiting for the next day's budget or for a slot of the rate window (behind other
                # calls, or a 429 pause) is not charged to the retry window: it is the organisation's own
                # pacing, not Zoho failing, and a call that queued past the budget would get no retry.
                elapsed = clock.monotonic() - started - (self.metrics.daily_wait_seconds - budget_wait_before)
                elapsed -= sum(queued)
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

    async def _create_once(self, create: Any, lookup: Any) -> dict[str, Any]:
        """`create`, made at most once (`at_most_once.create_once`), within the configured attempts."""
        return await create_once(create, lookup, attempts=self.config.max_attempts)

    async def settle_write(self, send: Any, applied: Any) -> dict[str, Any]:
        """A write Zoho must not receive twice (a status call), sent until Zoho shows its effect
        (`at_most_once.settle_write`)."""
        return await settle_write(
            send, applied, attempts=self.config.max_attempts, policy=self.retry_policy, metrics=self.metrics
        )
