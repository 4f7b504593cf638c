"""Zoho in process: the real simulator's app (`connectors.zoho_sim`) driven on the running loop, no sockets.

`InProcessZoho` holds one seeded `Simulator` and its Starlette app; `pool()` is the `WirePool` a real
`ZohoClient` sends through. Each request runs the app as a task on the loop, and the client sees what
a socket would show it: the reply, or the httpx error the aiohttp pool raises (never sent, lost
mid-reply, no reply by the call's deadline). A request the client gave up on keeps running in the
simulator, as on a server: it holds its concurrency permit until its reply is written to nobody.
What people do in Zoho beside the tool goes through the simulator's own resource rules, never counted
as API calls.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

import httpx
import orjson
from multidict import CIMultiDict, CIMultiDictProxy

from connectors import clock
from connectors.zoho.client import ZohoClient
from connectors.zoho.config import ZohoConfig
from connectors.zoho.stores.memory import MemoryDailyBudgetStore, MemoryRateWindowStore, MemoryTokenStore
from connectors.zoho.stores.protocols import DailyBudgetStore, RateWindowStore, TokenStore
from connectors.zoho.wire.http_pool import Reply, WirePool, as_query
from connectors.zoho.wire.protocol import API_PATH
from connectors.zoho_sim.app import DropConnection, build_app
from connectors.zoho_sim.config import SimConfig, SimFaults
from connectors.zoho_sim.core import Simulator
from simulation.loop import current_check

#: Where the in-process Zoho answers; any host would do, no name is ever resolved.
ORIGIN = "http://zoho.sim"
#: The record kinds `records` reads, as the simulator's store names them.
KINDS = {"customers": "customer", "invoices": "invoice", "payments": "payment", "items": "item"}


class RefusedByZoho(Exception):
    """Raised when something a person does in Zoho (`edit_customer`, `pay_invoice`...) breaks Zoho's rules:
    the scenario asked for what Zoho would not let anyone do."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"Zoho refused it ({status}): {body.get('message', body)}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class ZohoCalls:
    """The simulator's own count of the API calls it accepted (refused ones apart), for invariants."""

    accepted: int
    refused_429: int
    max_in_window: int  # most accepted calls in any sliding window of `window_seconds`
    per_window_limit: int
    window_seconds: float
    max_in_flight: int
    concurrency_limit: int
    last_accepted_at: float | None  # the loop's clock; None before the first
    token_requests: int
    by_endpoint: dict[str, int]  # "POST /customers 201" -> n, faults included ("lost-201", "dropped")
    faults_played: dict[str, int]
    refusals: dict[
        str, int
    ]  # 429s by the limit that refused them: burst (injected), concurrency, window, daily


def zoho_config_for(sim: SimConfig, origin: str = ORIGIN, **overrides: Any) -> ZohoConfig:
    """The client's configuration for this simulator: its credentials and limits, the service's defaults
    elsewhere, but short retries and deadlines (virtual time makes waits free, not the work between)."""
    limits = sim.limits
    config = ZohoConfig(
        api_base=origin + API_PATH,
        accounts_url=origin,
        client_id=sim.client_id,
        client_secret=sim.client_secret,
        refresh_token=sim.refresh_tokens[0],
        organization_id=sim.organization_id,
        rate_per_window=limits.per_window,
        rate_window_seconds=limits.window_seconds,
        rate_guard_seconds=min(0.5, 0.05 * limits.window_seconds),
        max_concurrency=limits.concurrency,
        rate_pacing="burst",
        rate_block_size=5,
        rate_block_seconds=2.0,
        instance_label="sim",
        daily_limit=limits.daily,
        connect_timeout=2.0,
        read_timeout=10.0,  # 12 s per call, well inside the "timeout" fault's 35 s hold
        max_attempts=8,
        retry_max_seconds=120.0,
        retry_base_seconds=0.5,
        account_number_field=sim.account_number_label,
        account_number_filter="",
        customer_email_filter="email",
        invoice_number_filter="invoice_number",
        token_refresh_margin=120.0,
        token_backoff_seconds=5.0,
        token_backoff_max_seconds=60.0,
        budget_poll_seconds=5.0,
    )
    return replace(config, **overrides)  # an unknown name raises TypeError


class InProcessZoho:
    """One simulated Zoho: the client's wire (`pool`, `client`), faults, people's edits and read-backs.

    Build it with a seeded `SimConfig` (`seed` set: the fault dice and the tokens follow it), and set a
    token refusal spell by `set_faults` on the running loop (a `SimConfig` one starts on the clock read
    when this is built)."""

    def __init__(self, config: SimConfig, *, origin: str = ORIGIN) -> None:
        if config.seed is None:
            raise ValueError("InProcessZoho needs SimConfig(seed=...): one seed, one history")
        self.sim = Simulator(config)
        # Tokens from their own dice, so issuing one never shifts a fault drawn from `sim.rng`.
        self.sim.accounts.grants.rng = random.Random(f"tokens {config.seed}")
        self.app = build_app(self.sim)
        self.origin = origin
        self._serving: dict[asyncio.Task[_Exchange], None] = {}  # a dict: ordered, unlike a set
        #: Exceptions the app raised that no fault explains (a simulator bug): the harness asserts none.
        self.failures: list[BaseException] = []

    # --- the client's side ---------------------------------------------------------------------

    def pool(self) -> InProcessPool:
        return InProcessPool(self)

    def client(
        self,
        rng: random.Random,
        *,
        token_store: TokenStore | None = None,
        budget_store: DailyBudgetStore | None = None,
        window_store: RateWindowStore | None = None,
        **overrides: Any,
    ) -> ZohoClient:
        """A real `ZohoClient` over this Zoho; stores in memory unless given (share a window store between
        clients to play processes sharing PostgreSQL's window); `overrides` replace `ZohoConfig` fields."""
        return ZohoClient(
            zoho_config_for(self.sim.config, self.origin, **overrides),
            token_store=token_store or MemoryTokenStore(),
            budget_store=budget_store or MemoryDailyBudgetStore(),
            window_store=window_store or MemoryRateWindowStore(),
            rng=rng,
            pool=self.pool(),
        )

    def serve(self, method: str, url: str, headers: list[tuple[bytes, bytes]], body: bytes) -> asyncio.Task:
        """Start one request in the app; the task outlives a client that stops waiting for it, and the
        client's process too: it runs as Zoho's, in a context of its own (`simulation.loop.Process`)."""
        loop = asyncio.get_running_loop()
        task = loop.create_task(_run_app(self.app, method, url, headers, body), context=contextvars.Context())
        self._serving[task] = None
        task.add_done_callback(self._served)
        return task

    def _served(self, task: asyncio.Task[_Exchange]) -> None:
        del self._serving[task]
        if task.cancelled():
            return
        failure = task.exception()
        if failure is not None and not isinstance(failure, DropConnection):
            self.failures.append(failure)

    async def settle(self) -> None:
        """Wait until no request is being handled (replies held by a "timeout" fault included)."""
        while self._serving:
            await asyncio.wait(list(self._serving))

    async def aclose(self) -> None:
        """Stop the requests still being handled, as a server shutting down does."""
        for task in list(self._serving):
            task.cancel()
        await asyncio.gather(*self._serving, return_exceptions=True)

    # --- faults --------------------------------------------------------------------------------

    def set_faults(self, faults: SimFaults) -> None:
        """Play these faults from now on, on the simulator's own seeded dice."""
        self.sim.config.faults = faults
        if faults.token_refusal_seconds:
            self.sim.accounts.refusal_until = clock.monotonic() + faults.token_refusal_seconds

    # --- people changing Zoho behind the tool's back (never API calls) --------------------------

    def create_customer(self, **fields: Any) -> dict[str, Any]:
        """Someone adds a customer in Zoho's web app (the API's rules): the record made."""
        return _made(self.sim.customers.create(fields))["customer"]

    def edit_customer(self, zoho_id: str, **fields: Any) -> dict[str, Any]:
        """Someone edits a customer in Zoho's web app: the record as saved."""
        return _made(self.sim.customers.update(zoho_id, fields))["customer"]

    def set_customer_status(self, zoho_id: str, status: str) -> None:
        """Someone marks a customer active or inactive by hand."""
        _made(self.sim.mark_customer_by_hand(zoho_id, status))

    def pay_invoice(self, zoho_id: str, amount: float | None = None) -> dict[str, Any]:
        """The customer pays the invoice in the portal (its whole balance by default): the payment."""
        return _made(self.sim.pay_in_portal(zoho_id, amount))["payment"]

    # --- read-back for invariants --------------------------------------------------------------

    def records(self, kind: str) -> list[dict[str, Any]]:
        """The records of a kind ("customers", "invoices", "payments", "items") as the API shows them,
        in the order they were made (copies: the harness cannot change Zoho by accident)."""
        resource = getattr(self.sim, kind)
        table = self.sim.store.table(KINDS[kind])
        return [dict(resource.shown(record)) for record in table.values()]

    def calls(self) -> ZohoCalls:
        org = self.sim.default
        limits = self.sim.config.limits
        return ZohoCalls(
            accepted=org.accepted,
            refused_429=sum(n for (_, status), n in org.calls.items() if status == "429"),
            max_in_window=org.max_in_window,
            per_window_limit=limits.per_window,
            window_seconds=limits.window_seconds,
            max_in_flight=org.max_in_flight,
            concurrency_limit=limits.concurrency,
            last_accepted_at=org.last_accepted_at,
            token_requests=self.sim.accounts.token_requests,
            by_endpoint={f"{e} {s}": n for (e, s), n in sorted(org.calls.items())},
            faults_played=dict(sorted(org.faults_played.items())),
            refusals=dict(sorted(org.refusals.items())),
        )


def _made(reply: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    status, body = reply
    if status >= 400:
        raise RefusedByZoho(status, body)
    return body


class InProcessPool(WirePool):
    """The client's wire to an `InProcessZoho`: API calls by `send`, token requests through httpx."""

    def __init__(self, zoho: InProcessZoho) -> None:
        self._zoho = zoho

    async def send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None,
        body: Any,
        headers: Mapping[str, str],
        timeouts: Mapping[str, float | None],
    ) -> Reply:
        query = as_query(params)
        if query:
            url = f"{url}?{urlencode(query)}"
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        data = b""
        if body is not None:
            data = orjson.dumps(body)
            raw.append((b"content-type", b"application/json"))
        current_check()  # a killed process sends nothing
        exchange = await self._exchange(method, url, raw, data, timeouts.get("total"))
        return Reply(exchange.status, _headers(exchange.headers), bytes(exchange.body))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        current_check()
        timeouts = request.extensions.get("timeout", {})
        raw = [(k.lower(), v) for k, v in request.headers.raw]
        exchange = await self._exchange(
            request.method, str(request.url), raw, await request.aread(), timeouts.get("read")
        )
        return httpx.Response(
            exchange.status, headers=exchange.headers, content=bytes(exchange.body), request=request
        )

    async def _exchange(
        self, method: str, url: str, headers: list[tuple[bytes, bytes]], body: bytes, deadline: float | None
    ) -> _Exchange:
        """The app's reply, or the httpx error the aiohttp pool raises for what a socket would show
        (`connectors.zoho.wire.http_pool`: `_not_sent`, `_in_doubt`)."""
        served = self._zoho.serve(method, url, headers, body)
        try:
            return await asyncio.wait_for(asyncio.shield(served), deadline)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"no reply in time: {exc!r}") from exc
        except DropConnection as exc:
            if exc.applied:
                raise httpx.ReadError(f"connection lost before the whole reply: {exc}") from exc
            raise httpx.ConnectError(f"could not connect: {exc}") from exc

    async def aclose(self) -> None:
        return None  # nothing pooled; requests being handled are the server's (`InProcessZoho.aclose`)


@dataclass
class _Exchange:
    """What the app wrote back: the status line, headers and body."""

    status: int = 0
    headers: list[tuple[bytes, bytes]] | None = None
    body: bytearray | None = None


def _headers(raw: list[tuple[bytes, bytes]] | None) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict((k.decode("latin-1"), v.decode("latin-1")) for k, v in raw or ()))


async def _run_app(
    app: Any, method: str, url: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> _Exchange:
    """One HTTP request through the ASGI app, as uvicorn hands it over; raises what the app raises (a
    `DropConnection` after the status line is a connection dropped mid-reply)."""
    parts = urlsplit(url)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": parts.scheme,
        "path": unquote(parts.path),
        "raw_path": parts.path.encode("latin-1"),
        "query_string": parts.query.encode("latin-1"),
        "root_path": "",
        "headers": headers,
        "server": (parts.hostname, parts.port or 80),
        "client": ("127.0.0.1", 40000),
    }
    exchange = _Exchange(body=bytearray())
    unread = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return unread.pop() if unread else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            exchange.status = message["status"]
            exchange.headers = list(message.get("headers", ()))
        elif message["type"] == "http.response.body":
            exchange.body += message.get("body", b"")

    await app(scope, receive, send)
    return exchange
