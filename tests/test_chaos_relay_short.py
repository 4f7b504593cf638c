"""The relay lane of the chaos run, short: real PostgreSQL changes through the real relay, with faults.

Write-back echoes and TOAST placeholders only exist with the relay in the loop; this run writes rows
Zoho refuses, invoices with TOASTed line items, updates that must cost nothing and status changes
(invoices paid and voided, customers closed), SIGKILLs the
consumer once, and then watches a quiet period (see benchmarks/chaos_relay.py).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import pytest

from benchmarks import chaos_relay

pytestmark = [pytest.mark.timeout(300), pytest.mark.relay]


@pytest.fixture(scope="module")
def outcome(postgres_server: str) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="zcdc-chaos-relay-test-"))
    return asyncio.run(chaos_relay.run(chaos_relay.SHORT, seed=20261126, workdir=workdir))


def test_the_relay_lane_settles_with_every_row_right_in_zoho(outcome: dict[str, Any]) -> None:
    assert outcome["settled"], outcome["consumer_log"]
    assert outcome["kills"] == chaos_relay.SHORT.kills
    assert not any(outcome["found"].values()), outcome["found"]


def test_every_zoho_status_follows_the_source_after_invoices_are_paid_and_voided_and_customers_closed(
    outcome: dict[str, Any],
) -> None:
    assert outcome["status_changes"] > 0
    assert outcome["chaos_status_mismatches"] == 0, outcome["found"]
    assert outcome["found"]["duplicate payments"] == 0


def test_no_zoho_call_is_made_once_the_work_is_done(outcome: dict[str, Any]) -> None:
    assert outcome["writes_in_quiet_period"] == 0


def test_each_source_change_costs_at_most_one_write_plus_fault_retries(outcome: dict[str, Any]) -> None:
    assert outcome["writes_per_change"] <= outcome["writes_per_change_bound"], outcome


def test_each_refused_state_is_dead_lettered_exactly_once(outcome: dict[str, Any]) -> None:
    assert outcome["dead_letters"] == outcome["refused_states"], outcome
