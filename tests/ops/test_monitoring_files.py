"""The Grafana dashboard and the Prometheus alert rules only name metrics that `/metrics` exports.

A small live sync runs (real PostgreSQL, broker and simulator) so every labelled series exists, then each
`zoho_cdc_*` name in docs/grafana/zoho-cdc.json and docs/prometheus/alerts.yml must be a sample name of
the scrape. The files' shape is checked too: the dashboard has the status page's charts, and every alert
rule has a severity and a summary.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.consumer.harness import LiveSync, settings_for, wait_for
from tests.fixtures_zoho import settings_for as sim_settings
from tests.ops import REPO, populate_world, status_server
from tests.ops.test_status import caught_up
from tests.support import Source

DASHBOARD = REPO / "docs" / "grafana" / "zoho-cdc.json"
ALERTS = REPO / "docs" / "prometheus" / "alerts.yml"
ALERT_TESTS = REPO / "docs" / "prometheus" / "alerts_test.yml"
METRIC = re.compile(r"\bzoho_cdc_[a-z0-9_]+\b")


def dashboard_expressions() -> dict[str, list[str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {p["title"]: [t["expr"] for t in p["targets"]] for p in panels}


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_dashboard_has_the_status_page_charts_and_every_alert_rule_is_complete():
    titles = set(dashboard_expressions())
    assert {"Zoho calls per minute", "Lag (records)", "DLQ depth", "Replication slot"} <= titles
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert METRIC.search(rule["expr"]), rule["alert"]
    # The rules a team starts with: lag, DLQ growth, 429s, budget exhausted, no successful call, slot, and
    # records Zoho is ahead of (changed in Zoho on its own: their source changes are not sent).
    exprs = " ".join(r["expr"] for r in rules)
    for metric in (
        "zoho_cdc_lag_records",
        "zoho_cdc_dlq_depth",
        "zoho_cdc_zoho_http_429_total",
        "zoho_cdc_zoho_daily_limit",
        "zoho_cdc_zoho_calls_total",
        "zoho_cdc_replication_slot_active",
        "zoho_cdc_zoho_ahead_entities",
        "zoho_cdc_zoho_ahead_total",
    ):
        assert metric in exprs, metric


@pytest.fixture
def settings(zoho_sim_factory, database_url, kafka_bootstrap, topic_prefix):  # type: ignore[no-untyped-def]
    sim = zoho_sim_factory(require_email=True)
    return settings_for(sim_settings(sim, database_url), kafka_bootstrap, topic_prefix)


async def test_every_metric_the_dashboard_and_alerts_name_is_exported_by_metrics(
    settings, database_url, kafka_bootstrap, topic_prefix
):
    await populate_world(Source(database_url, kafka_bootstrap, topic_prefix))
    async with LiveSync(settings) as live:
        await wait_for(lambda: caught_up(settings), timeout=30)
        async with status_server(live.session, live.runner) as base, httpx.AsyncClient(base_url=base) as http:
            scrape = (await http.get("/metrics")).text
    exported = {s.name for family in text_string_to_metric_families(scrape) for s in family.samples}

    named = {m for exprs in dashboard_expressions().values() for e in exprs for m in METRIC.findall(e)}
    named |= {m for rule in alert_rules() for m in METRIC.findall(rule["expr"])}
    assert len(named) >= 15
    assert named - exported == set(), (
        f"named in docs/ but not exported by /metrics: {sorted(named - exported)}"
    )


def test_promtool_accepts_the_alert_rules_and_their_unit_tests_pass():
    """The PromQL itself, evaluated by Prometheus's own tool: the rules parse, and the rule unit tests
    (when ZohoCdcZohoAhead and ZohoCdcDeadLettersGrowing fire, and when they stay silent) pass."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test` installs Debian's prometheus package for it"
    checked = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", ALERT_TESTS.name],
        cwd=ALERT_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
