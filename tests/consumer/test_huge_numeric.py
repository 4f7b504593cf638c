"""Issue 23 (a): a numeric column too long for Python's int-to-text limit once stopped the process on every
restart (a ValueError, not a DecodeError, escaped the engine and the runner; the offset never moved).

Real broker, PostgreSQL and simulator. The poison invoices sit between good ones: one whose total is
base64 of 2,000 bytes (about 4,800 digits: a PostgreSQL numeric can hold it, no Zoho amount can), one beyond
any PostgreSQL numeric. Each must end in one dead letter while the sync runs on, live and in a backfill.
"""

from __future__ import annotations

import base64
import json

from consumer.jobs.backfill import run_backfill
from consumer.pipeline.effects.dead_letter_topic import H_EXC_MESSAGE, parse_headers
from consumer.service.wiring import sync_session
from tests.consumer.harness import (
    LiveSync,
    SimView,
    committed_offsets,
    end_offsets,
    read_topic,
    settings_for,
    wait_for,
)
from tests.support import Source

_HUGE_FOR_PYTHON = base64.b64encode(b"\x7f" + b"\xff" * 1999).decode()
_HUGE_FOR_POSTGRES = base64.b64encode(b"\x01" + b"\x00" * 60_000).decode()


def _poisoned(source: Source, customer_id: str, number: str, amount_b64: str) -> None:
    """Queue the create event of a real invoice row with its total replaced by `amount_b64`."""
    row_id = source.insert_invoice(customer_id, number)
    topic, key, value = source.pending.pop()
    doc = json.loads(value)
    doc["after"]["total_amount"] = amount_b64
    source.pending.append((topic, key, json.dumps(doc).encode()))
    assert row_id in key.decode()


def _world(source: Source) -> list[str]:
    customer = source.insert_customer(1)
    good = [source.insert_invoice(customer, "INV-HN-1")]
    _poisoned(source, customer, "INV-HN-2", _HUGE_FOR_PYTHON)
    _poisoned(source, customer, "INV-HN-3", _HUGE_FOR_POSTGRES)
    good.append(source.insert_invoice(customer, "INV-HN-4"))
    return good


async def _all_committed(bootstrap: str, group: str, topics: tuple[str, ...]) -> bool:
    ends = await end_offsets(bootstrap, topics)
    committed = await committed_offsets(bootstrap, group, topics)
    return all(committed.get(tp, 0) == end for tp, end in ends.items())


def _assert_two_dead_letters_and_two_invoices(source: Source, zoho: SimView, letters: list) -> None:
    reasons = sorted(parse_headers(m.headers)[H_EXC_MESSAGE] for m in letters)
    assert len(reasons) == 2, reasons
    assert any("beyond what a Zoho amount holds" in r for r in reasons), reasons
    assert any("more digits than any PostgreSQL numeric holds" in r for r in reasons), reasons
    assert sorted(i["invoice_number"] for i in zoho.invoices()) == ["INV-HN-1", "INV-HN-4"]
    outcomes = dict(source.query("SELECT outcome, count(*) FROM zoho_sync_log GROUP BY outcome"))
    assert outcomes.get("dead_lettered") == 2


async def test_a_huge_numeric_is_dead_lettered_and_the_live_sync_runs_on(
    zoho_settings, zoho_sim, database_url, kafka_bootstrap, topic_prefix
):
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    source = Source(database_url, kafka_bootstrap, topic_prefix)
    _world(source)
    await source.flush()
    topics = (f"{topic_prefix}.public.customers", f"{topic_prefix}.public.customer_invoices")

    zoho = SimView(zoho_sim)
    async with LiveSync(settings) as live:
        await wait_for(lambda: len(zoho.invoices()) == 2, timeout=60)
        await wait_for(lambda: _all_committed(kafka_bootstrap, settings.consumer_group, topics), timeout=30)
        assert live._task is not None and not live._task.done(), "the sync stopped on a numeric"
    _assert_two_dead_letters_and_two_invoices(
        source, zoho, await read_topic(kafka_bootstrap, settings.dlq_topic)
    )


async def test_a_huge_numeric_is_dead_lettered_and_a_backfill_completes(
    zoho_settings, zoho_sim, database_url, kafka_bootstrap, topic_prefix
):
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    source = Source(database_url, kafka_bootstrap, topic_prefix)
    _world(source)
    await source.flush()

    async with sync_session(settings) as session:
        result = await run_backfill(session)

    zoho = SimView(zoho_sim)
    assert result.outcomes.get("dead_lettered") == 2, result.outcomes
    _assert_two_dead_letters_and_two_invoices(
        source, zoho, await read_topic(kafka_bootstrap, settings.dlq_topic)
    )
