"""The HTTP face of `zoho-cdc run`: /healthz, /readyz, /metrics, /status.json and the HTML status page.

Binds to 127.0.0.1 unless STATUS_HOST says otherwise. Nothing served here ever contains a secret:
settings are shown through `Settings.masked()` and the page only reads the sync log and counters.
With STATUS_TOKEN set, everything but the probes asks for a bearer token. The facts come from
`status_facts`, the HTML from `status_page`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from typing import Any

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from consumer.jobs.health import History
from consumer.web.status_facts import (
    READY_TIMEOUT_SECONDS,
    budget_state,
    dlq_records,
    gather_status,
    group_lag,
    group_members,
    sample_forever,
    slot_active,
    zoho_ahead_counts,
)
from consumer.web.status_page import rate_limit_per_minute, render_charts, render_page

log = structlog.get_logger(__name__)


class StatusRoutes:
    """The handlers, over one sync session (its store, Zoho client and metrics) and the sampled history."""

    def __init__(self, session: Any, runner: Any, group: str, history: History) -> None:
        self.session = session
        self.settings = session.settings
        self.runner = runner
        self.group = group
        self.history = history

    async def healthz(self, _: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(self, _: Request) -> Response:
        checks: dict[str, str] = {}
        try:
            await self.session.store.ping()
            checks["postgres"] = "ok"
        except Exception as exc:
            checks["postgres"] = f"down: {type(exc).__name__}"
        consuming = self.runner is None or self.runner._consumer is not None  # noqa: SLF001
        checks["kafka"] = "ok" if consuming else "starting"
        try:
            auth = getattr(self.session.client, "auth", None)
            if auth is not None:  # a valid access token (refreshed if needed), else not ready
                await asyncio.wait_for(auth.token(), READY_TIMEOUT_SECONDS)
            checks["zoho_token"] = "ok"
        except TimeoutError:
            checks["zoho_token"] = "unavailable"
        except Exception as exc:
            checks["zoho_token"] = f"down: {type(exc).__name__}"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(checks, status_code=200 if ok else 503)

    async def metrics(self, _: Request) -> Response:
        # Each part is read at scrape time and logged when unavailable: a scrape never fails on it.
        await self._scrape_kafka()
        await self._scrape_limits()
        await self._scrape_members()
        return Response(self.session.metrics.exposition(), media_type="text/plain; version=0.0.4")

    async def page(self, _: Request) -> Response:
        status = await gather_status(self.settings, self.group, self.session.client, self.history)
        charts = render_charts(self.history, self.settings, time.time())
        return HTMLResponse(render_page(status, self.group, charts))

    async def status_json(self, _: Request) -> Response:
        status = await gather_status(self.settings, self.group, self.session.client, self.history)
        return Response(json.dumps(status.as_dict(), default=str), media_type="application/json")

    async def _scrape_kafka(self) -> None:
        m = self.session.metrics
        try:
            for p in await group_lag(self.settings, self.group):
                m.lag.labels(topic=p.topic, partition=str(p.partition)).set(p.lag)
            m.dlq_depth.set(await dlq_records(self.settings))
        except Exception as exc:
            log.warning("metrics: lag unavailable", error=str(exc))

    async def _scrape_limits(self) -> None:
        m, settings = self.session.metrics, self.settings
        m.rate_limit.set(rate_limit_per_minute(settings))
        m.daily_limit.set(settings.zoho_daily_limit)
        try:
            if hasattr(self.session.client, "budget_state"):
                state = await budget_state(self.session.client)
                m.daily_calls.set(float(state.get("calls_today") or 0))
            active = await asyncio.to_thread(slot_active, settings.database_url, settings.debezium_slot_name)
            m.slot_active.set(1 if active else 0)
            ahead = await asyncio.to_thread(
                zoho_ahead_counts, settings.database_url, settings.zoho_organization_id
            )
            for entity in ("customer", "invoice", *ahead):
                m.zoho_ahead_entities.labels(entity=entity).set(ahead.get(entity, 0))
        except Exception as exc:
            log.warning("metrics: budget or slot unavailable", error=str(exc))

    async def _scrape_members(self) -> None:
        try:  # the group's members and the organisation's shared window, from PostgreSQL
            members = await asyncio.to_thread(group_members, self.settings.database_url, self.group)
            budget = await budget_state(self.session.client, READY_TIMEOUT_SECONDS)
            self.session.metrics.group_and_window(members, budget)
        except Exception as exc:
            log.warning("metrics: members or shared window unavailable", error=str(exc))


def build_app(
    session: Any, runner: Any, group: str | None = None, history: History | None = None
) -> Starlette:
    history = History() if history is None else history
    routes = StatusRoutes(session, runner, group or session.settings.consumer_group, history)
    watch = getattr(session.metrics, "watch_client", None)
    if watch is not None:
        watch(session.client)  # Zoho calls by status, 429s, token refreshes, limiter wait
    token = (
        session.settings.status_token.get_secret_value() if hasattr(session.settings, "status_token") else ""
    )
    return Starlette(
        routes=[
            Route("/", routes.page),
            Route("/healthz", routes.healthz),
            Route("/readyz", routes.readyz),
            Route("/metrics", routes.metrics),
            Route("/status.json", routes.status_json),
        ],
        middleware=[Middleware(BearerToken, token=token)] if token else [],
    )


class BearerToken(BaseHTTPMiddleware):
    """With STATUS_TOKEN set, everything but the probes asks for `Authorization: Bearer <token>`.

    /healthz and /readyz stay open: they say only ok / not ready, and orchestrators probe them
    without credentials."""

    OPEN_PATHS = frozenset({"/healthz", "/readyz"})

    def __init__(self, app: Any, token: str) -> None:
        super().__init__(app)
        self._expected = f"Bearer {token}".encode()

    async def dispatch(self, request: Request, call_next: Any) -> Response:
        if request.url.path in self.OPEN_PATHS:
            return await call_next(request)
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, self._expected):
            return PlainTextResponse(
                "a bearer token (STATUS_TOKEN) is required",
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await call_next(request)


async def serve_status_page(
    session: Any, runner: Any, *, port: int | None = None, history: History | None = None
) -> None:
    settings = session.settings
    history = History() if history is None else history
    sampler = asyncio.create_task(sample_forever(settings, settings.consumer_group, session.client, history))
    config = uvicorn.Config(
        build_app(session, runner, history=history),
        host=settings.status_host,
        port=settings.status_port if port is None else port,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # the worker owns signals
    log.info("status page", url=f"http://{settings.status_host}:{config.port}/")
    try:
        await server.serve()
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
