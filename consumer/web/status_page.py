"""The HTML status page: a health line, charts of the last hour, counters and tables, from `Status`.

Rendering only (no I/O): every value from the sync log or Kafka is escaped, and nothing here ever
shows a setting beyond the rate limit.
"""

from __future__ import annotations

import html
from typing import Any

from consumer.jobs.health import History
from consumer.jobs.status import Status
from consumer.web import charts

#: How many dead letters the page lists (newest first).
DLQ_SHOWN = 20


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
<div class=kpi>Zoho ahead<b id=zoho-ahead-total>{status.zoho_ahead_total}</b></div>
<div class=kpi>write-backs refused<b id=write-backs-refused>{status.write_backs_refused}</b></div>
{counts("Outcomes, last hour", status.outcomes_last_hour, "outcomes-hour")}
{counts("Outcomes, last day", status.outcomes_last_day, "outcomes-day")}
<section id=lag><h2>Lag by partition</h2>{_table(lag_rows)}</section>
<section id=members><h2>Group members ({len(status.members)})</h2>{_table(member_rows)}</section>
<section id=budget><h2>Zoho budget (one window per organisation, shared by every process)</h2>
{_table(budget_rows)}
<h3>Processes using the organisation's window</h3>{_table(org_rows)}</section>
<section id=zoho-ahead><h2>Zoho ahead: changed in Zoho on its own, source changes not sent until the
source agrees (newest 20)</h2>{_table(status.zoho_ahead)}</section>
<section id=errors><h2>Last errors</h2>{_table(status.last_errors)}</section>
<section id=dlq><h2>Dead-letter topic (newest {DLQ_SHOWN})</h2>{_table(status.dead_letters)}</section>
<section id=recent><h2>Recent sync log</h2>{_table(status.recent)}</section>
</body></html>"""
