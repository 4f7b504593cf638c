"""The status page's verdict and charts are pure functions of samples and facts: table-driven checks."""

from __future__ import annotations

import re

import pytest

from consumer.jobs.health import HealthFacts, History, Sample, assess
from consumer.web import charts

NOW = 1_800_000_000.0  # a whole minute
OK = HealthFacts(slot_name="zoho_cdc", slot_active=True)


def samples(*values: tuple[int | None, int | None], step: float = 60.0, calls: int = 0) -> list[Sample]:
    """One sample per `step` seconds ending at NOW: (lag, dlq depth)."""
    n = len(values)
    return [Sample(NOW - step * (n - 1 - i), lag, dlq, calls) for i, (lag, dlq) in enumerate(values)]


@pytest.mark.parametrize(
    ("history", "facts", "level", "reason"),
    [
        (samples((0, 0), (0, 0), (0, 0)), OK, "green", None),
        (samples((5, 0), (40, 0), (90, 0)), OK, "amber", "lag growing: 5 → 90"),
        (samples((90, 0), (40, 0), (5, 0)), OK, "green", None),  # draining
        (samples((5, 0), (90, 0)), OK, "green", None),  # too few samples to call it a trend
        (samples((0, 1), (0, 1), (0, 4)), OK, "amber", "DLQ growing: +3"),
        (samples((0, 4), (0, 4)), OK, "green", None),
        (samples((0, 0)), HealthFacts(slot_name="zoho_cdc", slot_active=False), "red", "is inactive"),
        (samples((0, 0)), HealthFacts(slot_name="zoho_cdc", slot_active=None), "red", "does not exist"),
        (
            samples((0, 0)),
            HealthFacts(slot_active=True, token_refused="AuthError"),
            "red",
            "ZOHO_REFRESH_TOKEN",
        ),
        (samples((0, 0)), HealthFacts(slot_active=True, token_throttled=True), "amber", "token requests"),
        (
            samples((0, 0)),
            HealthFacts(slot_active=True, daily_paused_until="2026-11-27T00:00:00+00:00"),
            "red",
            "daily Zoho budget spent: paused until 2026-11-27",
        ),
        (samples((0, 0)), HealthFacts(slot_active=True, limiter_paused_seconds=12), "amber", "429"),
        (samples((0, 0)), HealthFacts(slot_active=True, kafka_reachable=False), "red", "Kafka"),
    ],
)
def test_health_level_and_reason_follow_the_facts(history, facts, level, reason):
    health = assess(history, facts, NOW)
    assert health.level == level
    if reason is None:
        assert health.reasons == () and health.summary == "syncing normally"
    else:
        assert any(reason in r for r in health.reasons), health.reasons


def test_red_reasons_come_before_amber_ones():
    facts = HealthFacts(slot_name="s", slot_active=False, limiter_paused_seconds=3)
    health = assess(samples((1, 0), (2, 0), (3, 0)), facts, NOW)
    assert health.level == "red"
    assert "inactive" in health.reasons[0] and len(health.reasons) == 3


def test_old_samples_leave_the_history_and_calls_are_counted_per_minute():
    history = History()
    history.add(Sample(NOW - 4000, 0, 0, 0))
    history.add(Sample(NOW - 120, 0, 0, 10))  # 10 calls since the previous sample
    history.add(Sample(NOW - 100, 0, 0, 25))  # +15 in the same minute
    history.add(Sample(NOW - 30, 0, 0, 25))
    assert [s.at for s in history.samples] == [NOW - 120, NOW - 100, NOW - 30]
    per_minute = dict(history.calls_per_minute(NOW))
    assert len(per_minute) == 60
    assert per_minute[NOW - 120] == 25 and per_minute[NOW - 60] == 0
    assert sum(per_minute.values()) == 25


def test_charts_are_svg_with_one_mark_per_point_and_the_limit_line():
    bars = charts.bar_chart(
        "c", "Calls <per> min", [(NOW - 120, 30), (NOW - 60, 0)], NOW - 3600, NOW, limit=100
    )
    assert bars.startswith("<svg") and 'data-points="1"' in bars and "limit 100/min" in bars
    assert "&lt;per&gt;" in bars and "<per>" not in bars
    assert len(re.findall(r"<rect [^>]*fill=\"#2da44e\"", bars)) == 1
    line = charts.line_chart("l", "Lag", [(NOW - 200, 3), (NOW - 100, 9), (NOW, 0)], NOW - 3600, NOW)
    assert 'data-points="3"' in line and 'data-max="9"' in line
    assert "no data yet" in charts.line_chart("e", "DLQ", [], NOW - 3600, NOW)


def test_a_slot_holding_more_wal_than_the_threshold_is_amber() -> None:
    facts = HealthFacts(
        slot_name="zoho_cdc", slot_active=True, slot_retained_bytes=3 << 30, slot_warn_bytes=1 << 30
    )
    health = assess([], facts, 1_000_000.0)
    assert health.level == "amber" and "retains 3072 MiB of WAL" in health.summary
    calm = HealthFacts(
        slot_name="zoho_cdc", slot_active=True, slot_retained_bytes=1 << 20, slot_warn_bytes=1 << 30
    )
    assert assess([], calm, 1_000_000.0).level == "green"


def test_every_event_stale_and_none_applied_is_reported_as_a_restored_database() -> None:
    restored = HealthFacts(slot_name="s", slot_active=True, outcomes_last_hour={"stale": 40})
    health = assess([], restored, 1_000_000.0)
    assert health.level == "red" and "moved backwards" in health.summary and "--resync" in health.summary
    replays = HealthFacts(slot_name="s", slot_active=True, outcomes_last_hour={"stale": 40, "synced": 3})
    assert assess([], replays, 1_000_000.0).level == "green"
