"""The short fault-injection run (`python -m benchmarks.chaos --short`) keeps every guarantee.

About 100 customers and 100 invoices are created, updated, sent, paid, voided and deleted, and
customers closed and reopened; their Debezium events
are produced in waves while `zoho-cdc run` (a real subprocess) syncs them into the simulator, which
answers 500/503 at random, holds replies past the client timeout, drops replies after applying the
change, serves 429 bursts and refuses token requests for a while; the consumer is SIGKILLed 3 times;
3 poison events are mixed in. One run is shared by the tests below (it takes about a minute).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import pytest

from benchmarks import chaos

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def outcome(postgres_server: str) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="zcdc-chaos-test-"))
    return asyncio.run(chaos.run(chaos.SHORT, seed=20261125, workdir=workdir))


def test_faults_were_really_injected(outcome: dict[str, Any]) -> None:
    injected = outcome["injected"]
    assert injected["SIGKILLs"] == chaos.SHORT.kills
    assert injected["poison events"] == chaos.SHORT.poison
    assert injected["HTTP 429 served"] > 0
    assert injected["token refusal windows"] == 1
    assert injected["consumers joined and left (rebalances)"] == 1
    played = sum(injected.get(f"simulator {f} replies", 0) for f in chaos.FAULTS)
    assert played > 0, injected


def test_zoho_has_exactly_one_record_per_source_entity_with_latest_state(outcome: dict[str, Any]) -> None:
    found = outcome["found"]
    assert outcome["duplicates"] == 0, found
    assert outcome["missing"] == 0, outcome["examples"]
    assert found.get("customers with stale values", 0) == 0, outcome["examples"]
    assert found.get("invoices with wrong status", 0) == 0, outcome["examples"]
    assert found.get("internal_test customers in Zoho", 0) == 0
    assert found.get("deleted customers still active in Zoho", 0) == 0
    assert found.get("deleted invoices not void in Zoho", 0) == 0
    assert found.get("unsynced non-test rows (user's query)", 0) == 0


def test_every_zoho_status_follows_the_source(outcome: dict[str, Any]) -> None:
    found, injected = outcome["found"], outcome["injected"]
    assert injected.get("pay invoices", 0) > 0 and injected.get("close customers", 0) > 0, injected
    assert injected.get("reopen customers", 0) > 0, injected
    assert outcome["chaos_status_mismatches"] == 0, outcome["examples"]
    assert found["duplicate payments (one invoice paid twice)"] == 0
    assert found["Zoho payments"] >= found.get("source invoices paid", 0) > 0


def test_every_offset_has_an_outcome_and_is_committed(outcome: dict[str, Any]) -> None:
    assert outcome["offsets_without_outcome"] == 0
    assert outcome["found"]["partitions with committed != end"] == 0
    assert outcome["unexpected_exits"] == []


def test_dead_letter_topic_holds_the_poison_events_and_nothing_else(outcome: dict[str, Any]) -> None:
    assert outcome["dlq_distinct_exact"], outcome["found"]


def test_dead_letter_topic_holds_each_poison_event_exactly_once(outcome: dict[str, Any]) -> None:
    assert outcome["dlq_exact"], outcome["found"]
