"""Backfill by replay and dead-letter reprocessing: the same pipeline, bounded, under their own groups."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from connectors.zoho_sim import SimLimits
from consumer.entities.registry import source_topics
from consumer.jobs.backfill import run_backfill
from consumer.jobs.reprocess import list_dead_letters, reprocess
from consumer.local.seed import seed
from consumer.model.events import EntityType
from consumer.service.wiring import sync_session
from tests.consumer.harness import SimView, committed_offsets, settings_for
from tests.fixtures_zoho import settings_for as zoho_settings_for
from tests.support import Source, envelope

CUSTOMER_COLUMNS_OK = (
    "SELECT count(*) FROM customers WHERE account_type <> 'internal_test'"
    " AND zoho_billing_customer_id IS NOT NULL AND zoho_sync_status = 'synced'"
    " AND zoho_last_synced_at IS NOT NULL"
)


def emit_all(source: Source) -> None:
    """The events a Debezium snapshot of both tables would produce, customers first."""
    for table in ("customers", "customer_invoices"):
        for (row_id,) in source.query(f"SELECT id FROM {table} ORDER BY created_at, id"):  # noqa: S608
            source.emit(table, "r", str(row_id))


@pytest.fixture
def source(database_url, kafka_bootstrap, topic_prefix):  # type: ignore[no-untyped-def]
    return Source(database_url, kafka_bootstrap, topic_prefix)


async def backfill(settings, **kw):  # type: ignore[no-untyped-def]
    async with sync_session(settings) as session:
        return await run_backfill(session, **kw)


async def test_users_13_customer_backfill_under_a_tight_rate_limit_syncs_12_skips_1_and_duplicates_none(
    zoho_sim_factory, database_url, kafka_bootstrap, topic_prefix, source
):
    # 4 calls per 1-second window and 2 in flight: far tighter than the calls the backfill needs at once.
    handle = zoho_sim_factory(
        limits=SimLimits(per_window=4, window_seconds=1.0, daily=100_000, concurrency=2)
    )
    settings = settings_for(zoho_settings_for(handle, database_url), kafka_bootstrap, topic_prefix)
    seed(database_url)
    for (row_id,) in source.query("SELECT id FROM customers ORDER BY account_number"):
        source.emit("customers", "r", str(row_id))
    await source.flush()

    result = await backfill(settings)

    assert result.outcomes == {"synced": 12, "skipped": 1}
    zoho = SimView(handle)
    assert len(zoho.customers()) == 12
    assert zoho.duplicates() == {}
    assert source.query(CUSTOMER_COLUMNS_OK)[0][0] == 12
    test_row = source.query(
        "SELECT zoho_billing_customer_id, zoho_sync_status FROM customers"
        " WHERE account_type = 'internal_test'"
    )
    assert test_row == [(None, None)]
    no_email = source.query("SELECT zoho_billing_customer_id FROM customers WHERE email IS NULL")[0][0]
    assert no_email is not None  # synced without an email (Zoho's requirement is unconfirmed)
    assert handle.stats()["token_requests"] == 1
    assert result.http_429 == handle.stats()["http_429"]  # the summary's "429s seen" is the real count


async def test_replay_of_a_fully_synced_topic_makes_zero_zoho_calls(
    zoho_settings, zoho_sim, kafka_bootstrap, topic_prefix, source
):
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    seed(source.database_url)
    emit_all(source)
    await source.flush()
    first = await backfill(settings)
    assert first.outcomes.get("synced", 0) >= 12
    calls = zoho_sim.stats()["requests"]
    live_before = await committed_offsets(
        kafka_bootstrap, settings.consumer_group, source_topics(settings.topic_prefix)
    )

    second = await backfill(settings)

    assert zoho_sim.stats()["requests"] == calls  # zero calls
    assert second.records == first.records
    assert second.outcomes.get("synced", 0) == 0
    assert set(second.outcomes) <= {"unchanged", "skipped"}
    # the live group's offsets are untouched by backfills
    assert (
        await committed_offsets(
            kafka_bootstrap, settings.consumer_group, source_topics(settings.topic_prefix)
        )
        == live_before
    )


async def test_coalescing_makes_about_one_call_per_customer_for_many_updates(
    zoho_settings, zoho_sim, kafka_bootstrap, topic_prefix, source
):
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    ids = [source.insert_customer(n) for n in range(1, 6)]
    for round_ in range(10):
        for customer in ids:
            source.update("customers", customer, phone=f"+27 21 000 {round_:04d}")
    await source.flush()
    result = await backfill(settings)
    assert result.records == 55
    calls = zoho_sim.stats()["requests"]
    # one create each with the final state, not 11 calls each; matched first against one listing page
    assert result.extra["listing_reads"] == 1
    assert calls == len(ids) + 1
    zoho = SimView(zoho_sim)
    assert sorted(c["phone"] for c in zoho.customers()) == ["+27 21 000 0009"] * 5


async def test_resync_after_zoho_was_wiped_recreates_everything_once_and_twice_changes_nothing(
    zoho_settings, zoho_sim, kafka_bootstrap, topic_prefix, source
):
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    seed(source.database_url)
    emit_all(source)
    await source.flush()
    await backfill(settings)
    zoho = SimView(zoho_sim)
    counts = (len(zoho.customers()), len(zoho.invoices()))
    assert counts == (12, 18)  # the seed's 2 void invoices are never created only to be voided

    zoho_sim.reset()  # the Zoho organisation was wiped
    assert (len(zoho.customers()), len(zoho.invoices())) == (0, 0)
    await backfill(settings, resync=True)
    assert (len(zoho.customers()), len(zoho.invoices())) == counts
    assert zoho.duplicates() == {}

    calls = zoho_sim.stats()["requests"]
    await backfill(settings, resync=True)
    assert (len(zoho.customers()), len(zoho.invoices())) == counts
    assert zoho.duplicates() == {}
    creates = {k: v for k, v in zoho_sim.stats()["by_endpoint"].items() if k.startswith("POST /")}
    assert zoho_sim.stats()["requests"] >= calls  # resync checks; it creates nothing new
    assert sum(creates.get(k, {}).get("201", 0) for k in ("POST /customers", "POST /invoices")) == 30


async def test_backfill_since_starts_at_the_offsets_for_that_time(
    zoho_settings, zoho_sim, kafka_bootstrap, topic_prefix, source
):
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    old = [source.insert_customer(n) for n in range(1, 4)]
    await source.flush()
    await asyncio.sleep(1.2)
    cut = dt.datetime.now(dt.UTC)
    await asyncio.sleep(0.2)
    new = [source.insert_customer(n) for n in range(10, 12)]
    await source.flush()

    result = await backfill(settings, since=cut)

    assert result.records == len(new)
    synced = {
        r[0]
        for r in source.query("SELECT id::text FROM customers WHERE zoho_billing_customer_id IS NOT NULL")
    }
    assert synced == set(new)
    assert not synced & set(old)


async def test_dry_run_makes_no_calls_writes_no_rows_and_plans_what_the_real_run_does(
    zoho_settings, zoho_sim, kafka_bootstrap, topic_prefix, source
):
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    seed(source.database_url)
    emit_all(source)
    customer = source.query("SELECT id::text FROM customers WHERE account_number = 'CT-2025-00001'")[0][0]
    source.update("customers", customer, phone="+27 11 222 3333")
    await source.flush()

    dry = await backfill(settings, dry_run=True)
    assert zoho_sim.stats()["requests"] == 0
    assert zoho_sim.stats()["token_requests"] == 0
    assert source.query("SELECT count(*) FROM zoho_sync_log")[0][0] == 0
    assert source.query("SELECT count(*) FROM zoho_entity_map")[0][0] == 0

    real = await backfill(settings)
    by_endpoint = zoho_sim.stats()["by_endpoint"]
    assert dry.planned is not None
    assert dry.planned.calls["create_customer"] == by_endpoint["POST /customers"]["201"]
    assert dry.planned.calls["create_invoice"] == by_endpoint["POST /invoices"]["201"]
    assert dry.outcomes == real.outcomes


async def test_dlq_reprocess_syncs_a_fixed_event_once_and_a_second_run_sends_nothing(
    zoho_sim_factory, database_url, kafka_bootstrap, topic_prefix, source
):
    handle = zoho_sim_factory(require_email=True)  # Zoho rejects the customer without an email
    settings = settings_for(zoho_settings_for(handle, database_url), kafka_bootstrap, topic_prefix)
    ok = source.insert_customer(1)
    no_email = source.insert_customer(2, email=None)
    await source.flush()
    first = await backfill(settings)
    assert first.outcomes == {"synced": 1, "dead_lettered": 1}
    assert source.query("SELECT zoho_sync_status FROM customers WHERE id = %s", no_email)[0][0] == "failed"
    letters = await list_dead_letters(kafka_bootstrap, settings.dlq_topic)
    assert [e.entity_id for e in letters] == [no_email]
    assert "email" in letters[0].reason.lower()

    handle.set_config(require_email=False)  # the cause is fixed
    async with sync_session(settings) as session:
        again = await reprocess(session)
    assert again.outcomes == {"synced": 1}
    zoho = SimView(handle)
    assert len(zoho.customers()) == 2
    assert source.query("SELECT zoho_sync_status FROM customers WHERE id = %s", no_email)[0][0] == "synced"

    calls = handle.stats()["requests"]
    async with sync_session(settings) as session:
        twice = await reprocess(session)
    assert twice.records == 0
    assert handle.stats()["requests"] == calls
    assert ok


async def test_a_still_failing_dead_letter_is_parked_after_the_configured_attempts_instead_of_looping(
    zoho_sim_factory, database_url, kafka_bootstrap, topic_prefix, source
):
    handle = zoho_sim_factory(require_email=True)
    settings = settings_for(
        zoho_settings_for(handle, database_url), kafka_bootstrap, topic_prefix, reprocess_max_attempts=2
    )
    source.insert_customer(3, email=None)
    await source.flush()
    await backfill(settings)
    outcomes = []
    for _ in range(3):
        async with sync_session(settings) as session:
            outcomes.append((await reprocess(session)).outcomes)
    # attempt 1 fails and goes back to the DLQ, attempt 2 parks it, then there is nothing left to do
    assert outcomes == [{"dead_lettered": 1}, {"failed": 1}, {}]
    letters = await list_dead_letters(kafka_bootstrap, settings.dlq_topic)
    assert len(letters) == 2  # the original and one re-queued copy; the parked one is not re-queued
    assert letters[-1].reprocess_count == 1


async def test_backfill_reads_to_the_true_end_of_a_partition_written_in_one_batch(
    zoho_settings, zoho_sim, kafka_bootstrap, topic_prefix, source
):
    from aiokafka import AIOKafkaProducer

    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    ids = [source.insert_customer(n) for n in range(1, 11)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=200, enable_idempotence=False)
    await producer.start()
    try:  # one record batch: the local broker's ListOffsets would say the partition ends at 1
        sent = [await producer.send(t, v, key=k, partition=0) for t, k, v in source.pending]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    source.pending.clear()

    result = await backfill(settings)

    assert result.records == len(ids)
    assert result.outcomes == {"synced": len(ids)}


async def test_an_invoice_whose_customer_zoho_rejects_is_dead_lettered_and_the_rest_still_sync(
    zoho_sim_factory, database_url, kafka_bootstrap, topic_prefix, source
):
    handle = zoho_sim_factory(require_email=True)  # Zoho rejects the customer without an email
    settings = settings_for(zoho_settings_for(handle, database_url), kafka_bootstrap, topic_prefix)
    rejected = source.insert_customer(1, email=None)
    source.pending.clear()  # only the invoice's event: its customer must be synced on demand
    invoice = source.insert_invoice(rejected, "INV-1")
    fine = source.insert_customer(2)
    source.insert_invoice(fine, "INV-2")
    await source.flush()

    result = await backfill(settings)

    assert result.outcomes == {"synced": 2, "dead_lettered": 1}
    letters = await list_dead_letters(kafka_bootstrap, settings.dlq_topic)
    # The refused customer is dead-lettered too, as its own record (so `dlq reprocess` can re-drive it).
    assert sorted(e.entity_id for e in letters) == sorted([invoice, rejected])
    by_id = {e.entity_id: e for e in letters}
    assert "customer could not be synced" in by_id[invoice].reason
    assert "email" in by_id[rejected].reason
    zoho = SimView(handle)
    assert [i["invoice_number"] for i in zoho.invoices()] == ["INV-2"]


def _created(stats: dict, endpoint: str) -> int:
    return int(stats["by_endpoint"].get(endpoint, {}).get("201", 0))


async def test_an_entity_updated_far_apart_in_a_long_backlog_costs_exactly_one_call(
    zoho_settings, zoho_sim, kafka_bootstrap, topic_prefix, source
):
    """Far more records than a backfill holds in memory, one customer's updates spread across all of it:
    one create per customer with its final state, every record one sync-log row."""
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix, max_in_flight=40)
    target = source.insert_customer(1)
    fillers = [source.insert_customer(n) for n in range(2, 22)]
    for round_ in range(30):
        for filler in fillers:
            source.update("customers", filler, phone=f"+27 21 100 {round_:04d}")
        if round_ % 3 == 0:  # ten updates of the target, 200 records apart
            source.update("customers", target, phone=f"+27 21 999 {round_:04d}")
    events = await source.flush()
    assert events > 10 * 40

    result = await backfill(settings)

    stats = zoho_sim.stats()  # the simulator's own count, over its admin socket
    assert stats["requests"] == 1 + len(fillers) + 1  # and one customer listing page, read to match
    assert _created(stats, "POST /customers") == 1 + len(fillers)
    assert result.outcomes == {"synced": 1 + len(fillers), "superseded": events - 1 - len(fillers)}
    logged = source.query(
        "SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)) FROM zoho_sync_log"
        " WHERE consumer_group = %s",
        result.group_id,
    )
    assert logged == [(events, events)]
    zoho = SimView(zoho_sim)
    phones = {c["phone"] for c in zoho.customers()}
    assert phones == {"+27 21 999 0027", "+27 21 100 0029"}


async def test_a_partial_newest_image_is_made_whole_from_a_full_image_far_before_it(
    zoho_settings, zoho_sim, kafka_bootstrap, topic_prefix, source
):
    """The newest image lacks a TOASTed column; the full image it is merged with lies far back in the
    backlog, beyond the in-flight bound, and the source row is gone (nothing else to fill it from)."""
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix, max_in_flight=20)
    target = source.insert_customer(1)  # full image, billing address "1 Main Rd"
    fillers = [source.insert_customer(n) for n in range(2, 12)]
    for round_ in range(60):  # more than one poll (500 records) and the in-flight bound
        for filler in fillers:
            source.update("customers", filler, phone=f"+27 21 100 {round_:04d}")
    row = source._row("customers", target)
    row = {**row, "phone": "+27 21 999 0001", "billing_address": "__debezium_unavailable_value"}
    topic, key, value = envelope(topic_prefix, "customers", "u", row, target)
    source.emit_raw("customers", key, value)
    source.query("DELETE FROM customers WHERE id = %s RETURNING id", target)
    events = await source.flush()

    result = await backfill(settings)

    assert zoho_sim.stats()["requests"] == 1 + len(fillers) + 1  # one listing page, read to match
    assert result.outcomes["synced"] == 1 + len(fillers)
    mine = [c for c in SimView(zoho_sim).customers() if c["phone"] == "+27 21 999 0001"]
    assert len(mine) == 1
    assert (mine[0].get("billing_address") or {}).get("street") == "1 Main Rd"
    assert sum(result.outcomes.values()) == events


def _writes(stats: dict) -> int:
    return sum(
        sum(by_status.values())
        for endpoint, by_status in stats["by_endpoint"].items()
        if not endpoint.startswith("GET ")
    )


def _reads(stats: dict) -> int:
    return sum(
        sum(by_status.values())
        for endpoint, by_status in stats["by_endpoint"].items()
        if endpoint.startswith("GET ")
    )


async def test_a_second_resync_of_an_organisation_in_step_writes_nothing_and_reads_by_page(
    zoho_settings, zoho_sim, kafka_bootstrap, topic_prefix, source
):
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    seed(source.database_url)
    emit_all(source)
    await source.flush()
    await backfill(settings)
    zoho_sim.reset()  # the organisation was wiped
    first = await backfill(settings, resync=True)
    # Everything the source asks Zoho to hold was written back, once: all but the internal_test customer
    # and the void invoices that were never created (the seed's lifecycle).
    expected = source.query(
        "SELECT (SELECT count(*) FROM customers WHERE account_type <> 'internal_test')"
        " + (SELECT count(*) FROM customer_invoices WHERE status <> 'void')"
    )[0][0]
    assert first.outcomes.get("synced", 0) == expected == 30
    zoho = SimView(zoho_sim)
    counts = (len(zoho.customers()), len(zoho.invoices()))

    before = zoho_sim.stats()
    second = await backfill(settings, resync=True)
    after = zoho_sim.stats()

    assert _writes(after) - _writes(before) == 0
    # customers listed twice (active, inactive: the list shows no status), invoices once; 200 a page
    assert _reads(after) - _reads(before) == 3 == second.extra["listing_reads"]
    assert "synced" not in second.outcomes
    assert (len(zoho.customers()), len(zoho.invoices())) == counts

    # one field changed by hand in Zoho: the next resync writes exactly that entity back
    victim = next(c for c in zoho.customers() if c.get("phone"))
    zoho_sim.simulator.store.put(
        "customer",
        victim["customer_id"],
        {**zoho_sim.simulator.store.customers[victim["customer_id"]], "phone": "0"},
    )
    before = zoho_sim.stats()
    third = await backfill(settings, resync=True)
    after = zoho_sim.stats()
    assert _writes(after) - _writes(before) == 1
    assert third.outcomes.get("synced") == 1
    assert SimView(zoho_sim).customer(victim["customer_id"])["phone"] == victim["phone"]


async def test_a_create_reads_no_intent_unless_the_entity_map_shows_one_left(
    zoho_settings, zoho_sim, kafka_bootstrap, topic_prefix, source
):
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    ids = [source.insert_customer(n) for n in range(1, 5)]
    await source.flush()
    async with sync_session(settings) as session:
        # a crash left the intent of the fourth customer's create (the create may have reached Zoho)
        await session.store.write_intent(EntityType.CUSTOMER, ids[3], "create", "CT-2025-00004")
        reads: list[tuple[object, ...]] = []
        real = session.store.intent

        async def counted(*args):  # type: ignore[no-untyped-def]
            reads.append(args)
            return await real(*args)

        session.store.intent = counted  # type: ignore[method-assign]
        result = await run_backfill(session)

    assert result.outcomes == {"synced": 4}
    assert reads == [(EntityType.CUSTOMER, ids[3])]  # only the one the entity map showed
    assert _created(zoho_sim.stats(), "POST /customers") == 4
    assert SimView(zoho_sim).duplicates() == {}


async def test_entities_whose_records_are_removed_between_the_passes_are_applied_from_source_or_named(
    zoho_settings, zoho_sim, database_url, kafka_bootstrap, topic_prefix, source, monkeypatch
):
    """Issue 23 (g): retention (or compaction) removing records between the two passes must not leave an
    entity unapplied while the run reports success. The local broker has no DeleteRecords, so the removal
    is what the second pass then sees: its partition's log starting at its end."""
    from aiokafka import AIOKafkaProducer, TopicPartition

    from benchmarks.infra import create_topics
    from consumer.jobs import backfill as backfill_job

    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    topic = f"{topic_prefix}.public.customers"
    await create_topics(kafka_bootstrap, [topic], partitions=2)
    kept = [source.insert_customer(n) for n in (1, 2)]
    removed, gone = source.insert_customer(3), source.insert_customer(4)
    source.pending.clear()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for partition, customer in ((0, kept[0]), (0, kept[1]), (1, removed), (1, gone)):
            _, key, value = envelope(
                topic_prefix, "customers", "c", source._row("customers", customer), customer
            )
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()

    real_first_pass = backfill_job.first_pass

    async def retention_between_passes(*args, **kwargs):  # type: ignore[no-untyped-def]
        replay, bounds = await real_first_pass(*args, **kwargs)
        removed_tp = TopicPartition(topic, 1)
        bounds[removed_tp] = (bounds[removed_tp][1], bounds[removed_tp][1])  # partition 1's records are gone
        source.query("DELETE FROM customers WHERE id = %s RETURNING id", gone)  # and one of the rows too
        return replay, bounds

    monkeypatch.setattr(backfill_job, "first_pass", retention_between_passes)
    result = await backfill(settings)

    assert result.extra["applied_from_source"] == 1
    assert result.extra["not_applied"] == [f"customer:{gone}"]
    assert result.outcomes == {"synced": 3}
    zoho = SimView(zoho_sim)
    assert sorted(c["email"] for c in zoho.customers()) == [f"customer{n}@example.co.za" for n in (1, 2, 3)]
    calls = zoho_sim.stats()["requests"]
    await asyncio.sleep(1)
    assert zoho_sim.stats()["requests"] == calls
