"""A replay of topics that are already synced (#13): no Zoho call, one durable outcome per record, offsets
committed; only what changed is sent, and a malformed record is still dead-lettered.

Real broker, PostgreSQL and simulator; Zoho calls are counted by the simulator itself.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from consumer.entities.registry import source_topics
from consumer.jobs.backfill import run_backfill
from consumer.jobs.reprocess import list_dead_letters
from consumer.service.wiring import sync_session
from tests.consumer.harness import committed_offsets, end_offsets, settings_for
from tests.support import Source


@pytest.fixture
def source(database_url, kafka_bootstrap, topic_prefix):  # type: ignore[no-untyped-def]
    return Source(database_url, kafka_bootstrap, topic_prefix)


def _history(source: Source) -> tuple[list[str], list[str]]:
    """Six customers updated three times each, four invoices updated once, the sixth customer deleted."""
    customers = [source.insert_customer(n) for n in range(1, 7)]
    invoices = [source.insert_invoice(customers[n % 5], f"INV-{n}") for n in range(4)]
    for round_ in range(3):
        for customer in customers:
            source.update("customers", customer, phone=f"+27 21 100 {round_:04d}")
    for invoice in invoices:
        source.update("customer_invoices", invoice, due_date="2026-12-15")
    source.delete("customers", customers[5])  # a delete and its tombstone
    return customers, invoices


async def _backfill(settings: Any, group: str, *, written_back: list[Any] | None = None) -> Any:
    async with sync_session(settings) as session:
        if written_back is not None:  # every write-back an outcome queues, as the store is asked
            record = session.store.record

            async def counted(outcomes, **parts):  # type: ignore[no-untyped-def]
                if parts.get("write_back") is not None:
                    written_back.append(parts["write_back"])
                return await record(outcomes, **parts)

            session.store.record = counted  # type: ignore[method-assign]
        return await run_backfill(session, group_id=group)


def _log(source: Source, group: str) -> list[tuple[Any, ...]]:
    return source.query(
        "SELECT topic, kafka_partition, kafka_offset, entity_type, entity_id, outcome FROM zoho_sync_log"
        " WHERE consumer_group = %s ORDER BY topic, kafka_offset",
        group,
    )


async def test_a_replay_of_an_already_synced_range_calls_zoho_zero_times_and_records_every_record_once(
    zoho_settings, zoho_sim, kafka_bootstrap, topic_prefix, source
):
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    _history(source)
    records = await source.flush()
    first = await _backfill(settings, f"{topic_prefix}-first")
    assert first.outcomes.get("synced", 0) >= 9 and "dead_lettered" not in first.outcomes
    calls = zoho_sim.stats()["requests"]
    written_back: list[Any] = []

    replay = await _backfill(settings, f"{topic_prefix}-replay", written_back=written_back)

    assert zoho_sim.stats()["requests"] == calls  # the simulator's own count: no call at all
    assert replay.records == records
    # 5 customers and 4 invoices are in Zoho already; the deleted customer never reached it (skipped again,
    # as is its tombstone); every older record is superseded
    assert replay.outcomes == {"superseded": records - 11, "unchanged": 9, "skipped": 2}
    logged = _log(source, f"{topic_prefix}-replay")
    assert len(logged) == records == len({(t, p, o) for t, p, o, *_ in logged})
    assert all(
        entity_type in ("customer", "invoice") and entity_id for *_, entity_type, entity_id, _ in logged
    )
    # the first pass recorded the superseded records as it read them, with their place in the source
    superseded = source.query(
        "SELECT source_lsn, error FROM zoho_sync_log WHERE consumer_group = %s AND outcome = 'superseded'",
        f"{topic_prefix}-replay",
    )
    assert len(superseded) == records - 11
    assert all(lsn is not None and error.startswith("newer event at offset ") for lsn, error in superseded)
    # the source rows already say 'synced' and the Zoho id: nothing is written back to them
    assert written_back == []
    topics = source_topics(topic_prefix)
    assert await committed_offsets(kafka_bootstrap, f"{topic_prefix}-replay", topics) == await end_offsets(
        kafka_bootstrap, topics
    )


async def test_a_replay_sends_only_the_entities_that_changed_and_writes_back_only_rows_that_differ(
    zoho_settings, zoho_sim, kafka_bootstrap, topic_prefix, source
):
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    customers, invoices = _history(source)
    records = await source.flush()
    await _backfill(settings, f"{topic_prefix}-first")
    # after the backfill: two customers and an invoice change, a customer is added, and one row lost its id
    source.update("customers", customers[0], email="changed0@example.co.za")
    source.update("customers", customers[1], first_name="Changed")
    source.update("customer_invoices", invoices[3], due_date="2026-12-31")
    source.insert_customer(9)
    records += await source.flush()
    lost = customers[2]
    source.query(
        "UPDATE customers SET zoho_billing_customer_id = NULL WHERE id = %s RETURNING id", lost
    )  # by hand: the write-back column differs from what Zoho holds
    before = zoho_sim.stats()
    written_back: list[Any] = []

    replay = await _backfill(settings, f"{topic_prefix}-replay", written_back=written_back)

    after = zoho_sim.stats()
    calls = {
        endpoint: sum(after["by_endpoint"][endpoint].values())
        - sum(before["by_endpoint"].get(endpoint, {}).values())
        for endpoint in after["by_endpoint"]
    }
    calls = {endpoint: n for endpoint, n in calls.items() if n}
    assert replay.outcomes["synced"] == 4
    assert sum(calls.values()) == after["requests"] - before["requests"]
    # the new customer is matched against Zoho's listing before it is created: one page, read once per
    # backfill (README "Switching over from another integration")
    assert calls == {
        "PUT /customers/{id}": 2,
        "PUT /invoices/{id}": 1,
        "GET /customers": 1,
        "POST /customers": 1,
    }
    assert sum(replay.outcomes.values()) == replay.records == records
    # unchanged entities write back only to the row whose id column differs; synced ones as always
    unchanged_write_backs = [w for w in written_back if not w.called]
    assert [w.entity_id for w in unchanged_write_backs] == [lost]
    restored = source.query("SELECT zoho_billing_customer_id FROM customers WHERE id = %s", lost)[0][0]
    assert restored is not None


async def test_a_malformed_record_in_a_replay_is_not_dead_lettered_again_and_a_null_tombstone_skipped(
    zoho_settings, zoho_sim, kafka_bootstrap, topic_prefix, source
):
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    customer = source.insert_customer(1)
    # a tombstone only its value tells (JSON null), before the customer's newest record
    source.emit_raw("customers", json.dumps({"id": customer}).encode(), b"null")
    source.emit_raw("customers", b'{"id": "bad-1"}', b"{not json")
    source.emit_raw("customers", b'{"id": "bad-2"}', b'{"op": "x", "after": {"id": "bad-2"}}')
    source.update("customers", customer, phone="+27 21 999 0000")
    records = await source.flush()
    await _backfill(settings, f"{topic_prefix}-first")
    letters_before = len(await list_dead_letters(kafka_bootstrap, settings.dlq_topic))
    calls = zoho_sim.stats()["requests"]

    replay = await _backfill(settings, f"{topic_prefix}-replay")

    assert zoho_sim.stats()["requests"] == calls
    # issue 23 (j): the malformed records' letters are in the DLQ already: recorded, not published again
    assert replay.outcomes == {"superseded": 1, "unchanged": 1, "skipped": 3}
    letters = await list_dead_letters(kafka_bootstrap, settings.dlq_topic)
    assert len(letters) == letters_before
    reasons = Counter(letter.reason for letter in letters)
    assert reasons == {"value is not JSON": 1, "unknown op 'x'": 1}
    logged = _log(source, f"{topic_prefix}-replay")
    assert len(logged) == records
    topics = source_topics(topic_prefix)
    assert await committed_offsets(kafka_bootstrap, f"{topic_prefix}-replay", topics) == await end_offsets(
        kafka_bootstrap, topics
    )
