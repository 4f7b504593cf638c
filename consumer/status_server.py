"""The HTTP face of `zoho-cdc run`: /healthz, /readyz, /metrics and a small HTML status page.

Binds to 127.0.0.1 unless STATUS_HOST says otherwise. Nothing served here ever contains a secret:
settings are shown through `Settings.masked()` and the page only reads the sync log and counters.
"""

from __future__ import annotations

import asyncio
import html
import inspect
import json
from dataclasses import asdict
from typing import Any

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from consumer.status import Status, collect_database_status, collect_lag, dlq_depth

log = structlog.get_logger("zoho_cdc.status")

READY_TIMEOUT_SECONDS = 5.0
DLQ_SHOWN = 20


async def gather_status(settings: Any, group: str, client: Any = None) -> Status:
    status = await asyncio.to_thread(collect_database_status, settings.database_url, group)
    try:
        status.lag = await collect_lag(settings.kafka_bootstrap_servers, group, settings.source_topics)
        status.dlq_depth = await dlq_depth(settings.kafka_bootstrap_servers, settings.dlq_topic)
        if status.dlq_depth:
            from consumer.dlq import list_dead_letters

            entries = await asyncio.wait_for(
                list_dead_letters(settings.kafka_bootstrap_servers, settings.dlq_topic, limit=DLQ_SHOWN),
                READY_TIMEOUT_SECONDS,
            )
            status.dead_letters = [
                {**asdict(e), "age_s": None if e.age_s is None else round(e.age_s, 1)}
                for e in reversed(entries)
            ]
    except Exception as exc:  # the page must render even when Kafka is down
        log.warning("status: kafka unavailable", error=str(exc))
    if client is not None and hasattr(client, "budget_state"):
        state = client.budget_state()
        if inspect.isawaitable(state):
            state = await state
        status.budget = dict(state)
    return status


def _members(database_url: str, group: str) -> list[dict[str, Any]]:
    import psycopg

    from consumer.members import live_members

    with psycopg.connect(database_url, connect_timeout=5) as conn:
        return live_members(conn, group)


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


def render_page(status: Status, group: str) -> str:
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
.kpi b{{font-size:1.6em;display:block}}</style></head>
<body><h1>zoho-cdc &mdash; group <code>{html.escape(group)}</code></h1>
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


def build_app(session: Any, runner: Any, group: str | None = None) -> Starlette:
    settings = session.settings
    group = group or settings.consumer_group

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

    async def metrics(_: Request) -> Response:
        try:  # lag is read from the broker at scrape time; a scrape never fails because Kafka is down
            lag = await asyncio.wait_for(
                collect_lag(settings.kafka_bootstrap_servers, group, settings.source_topics),
                READY_TIMEOUT_SECONDS,
            )
            for p in lag:
                session.metrics.lag.labels(topic=p.topic, partition=str(p.partition)).set(p.lag)
        except Exception as exc:
            log.warning("metrics: lag unavailable", error=str(exc))
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
        status = await gather_status(settings, group, session.client)
        return HTMLResponse(render_page(status, group))

    async def status_json(_: Request) -> Response:
        status = await gather_status(settings, group, session.client)
        return Response(json.dumps(status.as_dict(), default=str), media_type="application/json")

    return Starlette(
        routes=[
            Route("/", page),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/status.json", status_json),
        ]
    )


async def serve_status_page(session: Any, runner: Any, *, port: int | None = None) -> None:
    settings = session.settings
    config = uvicorn.Config(
        build_app(session, runner),
        host=settings.status_host,
        port=settings.status_port if port is None else port,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # the runner owns signals
    log.info("status page", url=f"http://{settings.status_host}:{config.port}/")
    await server.serve()
