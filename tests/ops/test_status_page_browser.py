"""The HTML status page in a real headless Chromium: the numbers it shows are the database's.

Chromium comes from the Debian package `chromium` (the Makefile installs it when missing); without
it this test is skipped, saying so. With SAVE_SCREENSHOT=1 it refreshes the screenshot kept in
docs/screenshots/ (otherwise it writes to a temporary folder, so a test run never dirties the checkout).
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import shutil
import uuid
from pathlib import Path

import pytest

from consumer.jobs.health import History
from consumer.web.status_facts import take_sample
from tests.consumer.harness import LiveSync, settings_for, wait_for
from tests.fixtures_zoho import settings_for as sim_settings
from tests.ops import REPO, populate_world, status_server
from tests.ops.test_status import UNSYNCED_CUSTOMERS, UNSYNCED_INVOICES, caught_up, sql_outcomes
from tests.support import Source

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = REPO / "docs" / "screenshots" / "status-page.png"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@pytest.fixture
def settings(zoho_sim_factory, database_url, kafka_bootstrap, topic_prefix):  # type: ignore[no-untyped-def]
    sim = zoho_sim_factory(require_email=True)
    return settings_for(sim_settings(sim, database_url), kafka_bootstrap, topic_prefix)


@pytest.fixture
def source(database_url, kafka_bootstrap, topic_prefix):  # type: ignore[no-untyped-def]
    return Source(database_url, kafka_bootstrap, topic_prefix)


async def chromium(url: str, tmp_path: Path, *extra: str) -> str:
    profile = tmp_path / f"profile-{uuid.uuid4().hex[:8]}"
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        *extra,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


def shown(dom: str, element_id: str) -> str:
    match = re.search(rf"id=\"?{element_id}\"?[^>]*>([^<]*)<", dom)
    assert match, f"#{element_id} is not on the page"
    return html.unescape(match.group(1)).strip()


def outcome_cells(dom: str, section: str) -> dict[str, int]:
    part = re.search(rf"<section id=\"?{section}\"?.*?</section>", dom, re.S)
    assert part, f"section {section} is not on the page"
    cells = re.findall(r"data-outcome=\"?(\w+)\"?[^>]*>(\d+)<", part.group(0))
    return {name: int(n) for name, n in cells}


@pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed (make test installs it)"
)
async def test_status_page_in_chromium_shows_the_database_numbers(settings, source, tmp_path):
    await populate_world(source)
    history = History()
    group = settings.consumer_group
    history.add(await take_sample(settings, group, None))  # the backlog, before the sync starts
    async with LiveSync(settings) as live:
        await wait_for(lambda: caught_up(settings), timeout=30)
        history.add(await take_sample(settings, group, live.session.client))  # caught up, DLQ filled
        calls = live.session.client.metrics.calls
        async with status_server(live.session, live.runner, history) as base:
            dom = await chromium(base + "/", tmp_path, "--dump-dom")
            picture = SCREENSHOT if os.environ.get("SAVE_SCREENSHOT") == "1" else tmp_path / "status-page.png"
            await chromium(base + "/", tmp_path, f"--screenshot={picture}", "--window-size=1280,1600")

    assert int(shown(dom, "customers-unsynced")) == source.query(UNSYNCED_CUSTOMERS)[0][0] == 2
    assert int(shown(dom, "invoices-unsynced")) == source.query(UNSYNCED_INVOICES)[0][0]
    failed = "SELECT count(*) FROM customers WHERE zoho_sync_status = 'failed'"
    assert int(shown(dom, "customers-failed")) == source.query(failed)[0][0] == 1
    assert int(shown(dom, "total-lag")) == 0
    assert int(shown(dom, "dlq-depth")) == 2
    expected = sql_outcomes(source, settings.consumer_group)
    for section in ("outcomes-hour", "outcomes-day"):
        cells = outcome_cells(dom, section)
        assert {k: v for k, v in cells.items() if v} == expected
    assert picture.stat().st_size > 10_000  # a rendered page, not an empty canvas

    # The health line: red, because no Debezium slot exists in this test (events are produced directly),
    # and the DLQ grew from 0 to 2 between the samples.
    assert re.search(r'id="?health"?[^>]*data-level="?red', dom)
    assert shown(dom, "health-level") == "RED"
    summary = shown(dom, "health-summary")
    assert f"replication slot '{settings.debezium_slot_name}' does not exist" in summary
    assert "DLQ growing: +2" in summary

    # The charts: calls per minute against the limit, lag and DLQ depth over the last hour.
    def chart(ident: str) -> str:
        match = re.search(rf"<svg[^>]*id=\"?{ident}\"?.*?</svg>", dom, re.S)
        assert match, f"chart {ident} is not on the page"
        return match.group(0)

    bars = chart("chart-calls")
    drawn = sum(int(t) for t in re.findall(r"<rect[^>]*><title>(\d+)</title>", bars))
    assert drawn == sum(calls.values()) > 0  # every Zoho call the client made, in its minute
    limit = settings.zoho_rate_per_minute * 60 / settings.zoho_rate_window_seconds
    assert f"limit {limit:g}/min" in bars
    points = int(re.search(r'data-points="(\d+)"', chart("chart-lag")).group(1))  # type: ignore[union-attr]
    assert points >= 3  # backlog, caught up, this page view (and the sampler's own)
    lag_before = history.samples[0].lag
    assert lag_before and f'data-max="{lag_before}"' in chart("chart-lag")
    assert 'data-max="2"' in chart("chart-dlq")
    # The existing tables are still below.
    assert dom.index('id="charts"' if 'id="charts"' in dom else "id=charts") < dom.index("outcomes-hour")
