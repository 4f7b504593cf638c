"""The HTTP face of `zoho-cdc run`: /healthz, /readyz, /metrics and a small HTML status page.

Binds to 127.0.0.1 unless STATUS_HOST says otherwise. Nothing served here ever contains a secret:
settings are shown through `Settings.masked()` and the page only reads the sync log and counters.
The page opens with a health line (consumer/jobs/health.py) and charts of the last hour, drawn from
samples this process takes every SAMPLE_SECONDS (and at every page view).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import inspect
import json
import time
from dataclasses import asdict
from typing import Any

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from consumer.jobs.health import HealthFacts, History, Sample, assess
from consumer.jobs.status import (
    Status,
    collect_database_status,
    collect_lag,
    dlq_depth,
    replication_slot_active,
)
from consumer.web import charts

log = structlog.get_logger("zoho_cdc.status")

READY_TIMEOUT_SECONDS = 5.0
TOKEN_CHECK_SECONDS = 2.0
SAMPLE_SECONDS = 15.0
DLQ_SHOWN = 20


def zoho_calls_made(client: Any) -> int:
    metrics = getattr(client, "metrics", None)
    return 0 if metrics is None else int(sum(metrics.calls.values()))


async def token_facts(client: Any) -> tuple[str | None, bool]:
    """(refused message, throttled): asks the token manager, which answers from its cache when it can."""
    from connectors.zoho.errors import AuthError

    auth = getattr(client, "auth", None)
    if auth is None:
        return None, False
    try:
        await asyncio.wait_for(auth.token(), TOKEN_CHECK_SECONDS)
    except AuthError as exc:
        return type(exc).__name__, False  # the class, never the message: it may quote a request
    except TimeoutError:
        return None, True  # backing off after refusals (or Zoho accounts is slow)
    except Exception:
        return None, False
    return None, False


async def take_sample(settings: Any, group: str, client: Any) -> Sample:
    """Lag, DLQ depth and the client's call count now (None for what Kafka did not answer)."""
    lag: int | None = None
    depth: int | None = None
    try:
        parts = await asyncio.wait_for(
            collect_lag(settings.kafka_bootstrap_servers, group, settings.source_topics),
            READY_TIMEOUT_SECONDS,
        )
        lag = sum(p.lag for p in parts)
        depth = await asyncio.wait_for(
            dlq_depth(settings.kafka_bootstrap_servers, settings.dlq_topic), READY_TIMEOUT_SECONDS
        )
    except Exception as exc:
        log.warning("status sample: kafka unavailable", error=str(exc))
    return Sample(time.time(), lag, depth, zoho_calls_made(client))


async def sample_forever(settings: Any, group: str, client: Any, history: History) -> None:
    while True:
        history.add(await take_sample(settings, group, client))
        await asyncio.sleep(SAMPLE_SECONDS)


async def gather_status(
    settings: Any, group: str, client: Any = None, history: History | None = None
) -> Status:
    status = await asyncio.to_thread(
        collect_database_status, settings.database_url, group, slot_name=settings.debezium_slot_name
    )
    kafka_reachable = True
    try:
        status.lag = await collect_lag(settings.kafka_bootstrap_servers, group, settings.source_topics)
        status.dlq_depth = await dlq_depth(settings.kafka_bootstrap_servers, settings.dlq_topic)
        if status.dlq_depth:
            from consumer.jobs.reprocess import list_dead_letters

            entries = await asyncio.wait_for(
                list_dead_letters(settings.kafka_bootstrap_servers, settings.dlq_topic, limit=DLQ_SHOWN),
                READY_TIMEOUT_SECONDS,
            )
            status.dead_letters = [
                {**asdict(e), "age_s": None if e.age_s is None else round(e.age_s, 1)}
                for e in reversed(entries)
            ]
    except Exception as exc:  # the page must render even when Kafka is down
        kafka_reachable = False
        log.warning("status: kafka unavailable", error=str(exc))
    if client is not None and hasattr(client, "budget_state"):
        state = client.budget_state()
        if inspect.isawaitable(state):
            state = await state
        status.budget = dict(state)
    now = time.time()
    if history is not None:
        history.add(
            Sample(
                now, status.total_lag if kafka_reachable else None, status.dlq_depth, zoho_calls_made(client)
            )
        )
    refused, throttled = await token_facts(client)
    facts = HealthFacts(
        kafka_reachable=kafka_reachable,
        slot_name=settings.debezium_slot_name,
        slot_active=status.replication_slot.get("active"),
        token_refused=refused,
        token_throttled=throttled,
        daily_paused_until=status.budget.get("paused_until"),
        limiter_paused_seconds=float(status.budget.get("paused_for_seconds") or 0.0),
        slot_retained_bytes=status.replication_slot.get("retained_wal_bytes"),
        slot_warn_bytes=settings.slot_wal_warn_bytes,
        outcomes_last_hour=dict(status.outcomes_last_hour),
    )
    samples = list(history.samples) if history is not None else []
    status.health = assess(samples, facts, now).as_dict()
    return status


def _members(database_url: str, group: str) -> list[dict[str, Any]]:
    import psycopg

    from consumer.pipeline.members import live_members

    with psycopg.connect(database_url, connect_timeout=5) as conn:
        return live_members(conn, group)


def rate_limit_per_minute(settings: Any) -> float:
    return settings.zoho_rate_per_minute * 60.0 / settings.zoho_rate_window_seconds


def render_charts(history: History, settings: Any, now: float) -> str:
    start = now - history.span_seconds
    samples = list(history.samples)
    calls = charts.bar_chart(
        "chart-calls",
        "Zoho calls per minute",
        [(t, float(n)) for t, n in history.calls_per_minute(now)],
        start,
        now,
        limit=rate_limit_per_minute(settings),
    )
    lag = charts.line_chart(
        "chart-lag", "Lag (records)", [(s.at, float(s.lag)) for s in samples if s.lag is not None], start, now
    )
    dlq = charts.line_chart(
        "chart-dlq",
        "DLQ depth",
        [(s.at, float(s.dlq_depth)) for s in samples if s.dlq_depth is not None],
        start,
        now,
    )
    return f"<section id=charts>{calls}{lag}{dlq}</section>"


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p class=empty>none</p>"
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if r[c] is None else str(r[c]))}</td>" for c in cols) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


HEALTH_COLOURS = {"green": "#1a7f37", "amber": "#9a6700", "red": "#cf222e"}


def render_health(health: dict[str, Any]) -> str:
    level = str(health.get("level", "amber"))
    colour = HEALTH_COLOURS.get(level, "#9a6700")
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in health.get("reasons", []))
    return (
        f"<div id=health class='health {level}' data-level={level} style='border-left:8px solid {colour}'>"
        f"<span class=dot style='background:{colour}'></span><b id=health-level>{level.upper()}</b> "
        f"<span id=health-summary>{html.escape(str(health.get('summary', '')))}</span>"
        f"{f'<ul>{reasons}</ul>' if len(health.get('reasons', [])) > 1 else ''}</div>"
    )


def render_page(status: Status, group: str, charts_html: str = "") -> str:
    def counts(title: str, data: dict[str, int], ident: str) -> str:
        cells = "".join(
            f"<tr><th>{html.escape(k)}</th><td data-outcome='{k}'>{v}</td></tr>" for k, v in data.items()
        )
        return f"<section id='{ident}'><h2>{title}</h2><table>{cells}</table></section>"

    budget_rows = [{"name": k, "value": v} for k, v in sorted(status.budget.items()) if k != "org_members"]
    org_rows = [dict(m) for m in status.budget.get("org_members", [])]
    member_rows = [
        {
            "instance": m["instance"],
            "host": m["host"],
            "pid": m["pid"],
            "partitions": " ".join(m["partitions"]),
        }
        for m in status.members
    ]
    lag_rows = [
        {"topic": p.topic, "partition": p.partition, "committed": p.committed, "end": p.end, "lag": p.lag}
        for p in status.lag
    ]
    return f"""<!doctype html><html><head><meta charset=utf-8><title>zoho-cdc status</title>
<style>body{{font-family:sans-serif;margin:1.5em;color:#222}}table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left;font-size:13px}}h1{{font-size:1.4em}}
.kpi{{display:inline-block;margin-right:2em;font-size:1.1em}}
.kpi b{{font-size:1.6em;display:block}}
.health{{padding:.5em .8em;margin:.5em 0 1em;background:#f6f8fa;font-size:1.05em}}
.health ul{{margin:.3em 0 0;font-size:.9em}}.dot{{display:inline-block;width:.8em;height:.8em;
border-radius:50%;margin-right:.4em}}.chart{{margin:0 1em 1em 0;font-family:sans-serif}}</style></head>
<body><h1>zoho-cdc &mdash; group <code>{html.escape(group)}</code></h1>
{render_health(status.health) if status.health else ""}
{charts_html}
<div class=kpi>total lag<b id=total-lag>{status.total_lag}</b></div>
<div class=kpi>DLQ depth<b id=dlq-depth>{"" if status.dlq_depth is None else status.dlq_depth}</b></div>
<div class=kpi>customers not synced<b id=customers-unsynced>{status.customers_unsynced}</b></div>
<div class=kpi>invoices not synced<b id=invoices-unsynced>{status.invoices_unsynced}</b></div>
<div class=kpi>customers failed<b id=customers-failed>{status.customers_failed}</b></div>
<div class=kpi>invoices failed<b id=invoices-failed>{status.invoices_failed}</b></div>
{counts("Outcomes, last hour", status.outcomes_last_hour, "outcomes-hour")}
{counts("Outcomes, last day", status.outcomes_last_day, "outcomes-day")}
<section id=lag><h2>Lag by partition</h2>{_table(lag_rows)}</section>
<section id=members><h2>Group members ({len(status.members)})</h2>{_table(member_rows)}</section>
<section id=budget><h2>Zoho budget (one window per organisation, shared by every process)</h2>
{_table(budget_rows)}
<h3>Processes using the organisation's window</h3>{_table(org_rows)}</section>
<section id=errors><h2>Last errors</h2>{_table(status.last_errors)}</section>
<section id=dlq><h2>Dead-letter topic (newest {DLQ_SHOWN})</h2>{_table(status.dead_letters)}</section>
<section id=recent><h2>Recent sync log</h2>{_table(status.recent)}</section>
</body></html>"""


def build_app(
    session: Any, runner: Any, group: str | None = None, history: History | None = None
) -> Starlette:
    settings = session.settings
    group = group or settings.consumer_group
    history = History() if history is None else history

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(_: Request) -> Response:
        checks: dict[str, str] = {}
        try:
            await session.store.ping()
            checks["postgres"] = "ok"
        except Exception as exc:
            checks["postgres"] = f"down: {type(exc).__name__}"
        checks["kafka"] = "ok" if runner is None or runner._consumer is not None else "starting"  # noqa: SLF001
        try:
            auth = getattr(session.client, "auth", None)
            if auth is not None:  # a valid access token (refreshed if needed), else not ready
                await asyncio.wait_for(auth.token(), READY_TIMEOUT_SECONDS)
            checks["zoho_token"] = "ok"
        except TimeoutError:
            checks["zoho_token"] = "unavailable"
        except Exception as exc:
            checks["zoho_token"] = f"down: {type(exc).__name__}"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(checks, status_code=200 if ok else 503)

    watch = getattr(session.metrics, "watch_client", None)
    if watch is not None:
        watch(session.client)  # Zoho calls by status, 429s, token refreshes, limiter wait

    async def refresh_gauges() -> None:
        m = session.metrics
        m.rate_limit.set(rate_limit_per_minute(settings))
        m.daily_limit.set(settings.zoho_daily_limit)
        try:
            if hasattr(session.client, "budget_state"):
                state = session.client.budget_state()
                state = await state if inspect.isawaitable(state) else state
                m.daily_calls.set(float(state.get("calls_today") or 0))
            active = await asyncio.to_thread(slot_active, settings.database_url, settings.debezium_slot_name)
            m.slot_active.set(1 if active else 0)
        except Exception as exc:
            log.warning("metrics: budget or slot unavailable", error=str(exc))

    async def metrics(_: Request) -> Response:
        try:  # lag is read from the broker at scrape time; a scrape never fails because Kafka is down
            lag = await asyncio.wait_for(
                collect_lag(settings.kafka_bootstrap_servers, group, settings.source_topics),
                READY_TIMEOUT_SECONDS,
            )
            for p in lag:
                session.metrics.lag.labels(topic=p.topic, partition=str(p.partition)).set(p.lag)
            session.metrics.dlq_depth.set(
                await asyncio.wait_for(
                    dlq_depth(settings.kafka_bootstrap_servers, settings.dlq_topic), READY_TIMEOUT_SECONDS
                )
            )
        except Exception as exc:
            log.warning("metrics: lag unavailable", error=str(exc))
        await refresh_gauges()
        try:  # the group's members and the organisation's shared window, from PostgreSQL
            members = await asyncio.to_thread(_members, settings.database_url, group)
            budget = session.client.budget_state() if hasattr(session.client, "budget_state") else {}
            if inspect.isawaitable(budget):
                budget = await asyncio.wait_for(budget, READY_TIMEOUT_SECONDS)
            session.metrics.group_and_window(members, dict(budget))
        except Exception as exc:
            log.warning("metrics: members or shared window unavailable", error=str(exc))
        return Response(session.metrics.exposition(), media_type="text/plain; version=0.0.4")

    async def page(_: Request) -> Response:
        status = await gather_status(settings, group, session.client, history)
        return HTMLResponse(render_page(status, group, render_charts(history, settings, time.time())))

    async def status_json(_: Request) -> Response:
        status = await gather_status(settings, group, session.client, history)
        return Response(json.dumps(status.as_dict(), default=str), media_type="application/json")

    token = settings.status_token.get_secret_value() if hasattr(settings, "status_token") else ""
    return Starlette(
        routes=[
            Route("/", page),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/status.json", status_json),
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


def slot_active(database_url: str, slot_name: str) -> bool:
    import psycopg

    with psycopg.connect(database_url, connect_timeout=5) as conn:
        return bool(replication_slot_active(conn, slot_name))


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
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # the runner owns signals
    log.info("status page", url=f"http://{settings.status_host}:{config.port}/")
    try:
        await server.serve()
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
