"""A backfill orders a snapshot read against streamed changes as the live path does (issue 23, item c).

A snapshot read carries the LSN its snapshot began at. A transaction open then (its change written at a
lower LSN) but committed after it is streamed after the read, with that lower LSN: it is the newer state.
Real broker, PostgreSQL and simulator; the events are produced in Debezium's shape (`tests.support`),
since the question is only how records already in the topic are ordered.
"""

from __future__ import annotations

import asyncio

from consumer.jobs.backfill import run_backfill
from consumer.jobs.reprocess import list_dead_letters
from consumer.service.wiring import sync_session
from tests.consumer.harness import LiveSync, SimView, settings_for, wait_for
from tests.support import Source, envelope

SNAPSHOT_BEGAN = 90_000_000  # the snapshot's LSN, carried by every read
COMMITTED_LATER = 60_000_000  # the open transaction's change: logged before the snapshot began


def _snapshot_then_later_commit(source: Source) -> tuple[str, str]:
    """A customer (active) and its invoice (sent) read by a snapshot, then closed and paid by a
    transaction that was open when the snapshot began: streamed after the reads, with a lower LSN."""
    customer = source.insert_customer(1)
    invoice = source.insert_invoice(customer, "INV-SNAP-0001")
    source.pending.clear()  # no create events: the rows come from the snapshot
    prefix = source.prefix
    for table, row_id in (("customers", customer), ("customer_invoices", invoice)):
        read = envelope(prefix, table, "r", source._row(table, row_id), row_id, SNAPSHOT_BEGAN, "true")
        source.pending.append(read)
    source.query("UPDATE customers SET status = 'closed' WHERE id = %s RETURNING id", customer)
    source.query("UPDATE customer_invoices SET status = 'paid' WHERE id = %s RETURNING id", invoice)
    for table, row_id in (("customers", customer), ("customer_invoices", invoice)):
        source.pending.append(
            envelope(prefix, table, "u", source._row(table, row_id), row_id, COMMITTED_LATER)
        )
    return customer, invoice


async def _backfill(settings, **kw):  # type: ignore[no-untyped-def]
    async with sync_session(settings) as session:
        return await run_backfill(session, **kw)


def _zoho_state(source: Source, zoho: SimView) -> tuple[str, str]:
    ids = dict(source.query("SELECT entity_type, zoho_id FROM zoho_entity_map"))
    return zoho.customer(ids["customer"])["status"], zoho.invoice(ids["invoice"])["status"]


async def test_a_backfill_sends_the_change_committed_after_the_snapshot_not_the_older_read(
    zoho_settings, zoho_sim, kafka_bootstrap, topic_prefix, database_url
):
    """Zoho holds neither record: the backfill creates the customer closed (inactive) and the invoice
    paid, not the active customer and sent invoice the snapshot read."""
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    source = Source(database_url, kafka_bootstrap, topic_prefix)
    _snapshot_then_later_commit(source)
    events = await source.flush()

    result = await _backfill(settings)

    zoho = SimView(zoho_sim)
    assert len(zoho.customers()) == 1 and len(zoho.invoices()) == 1
    assert _zoho_state(source, zoho) == ("inactive", "paid")
    assert result.outcomes == {"synced": 2, "superseded": 2}
    assert sum(result.outcomes.values()) == events
    superseded = source.query("SELECT source_lsn FROM zoho_sync_log WHERE outcome = 'superseded'")
    assert superseded == [(SNAPSHOT_BEGAN,), (SNAPSHOT_BEGAN,)]  # the two reads, with their own LSN
    assert await list_dead_letters(kafka_bootstrap, settings.dlq_topic) == []
    calls = zoho_sim.stats()["requests"]
    await asyncio.sleep(2)  # a quiet period: nothing keeps calling Zoho
    assert zoho_sim.stats()["requests"] == calls


async def test_a_backfill_after_the_live_sync_neither_reactivates_the_customer_nor_unpays_the_invoice(
    zoho_settings, zoho_sim, kafka_bootstrap, topic_prefix, database_url
):
    """The live sync applied the reads, then the later commit (customer inactive, invoice paid). A
    backfill of the same topic must find nothing to do: sending the reads again would reactivate the
    customer and dead-letter the invoice ("status goes backwards")."""
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    source = Source(database_url, kafka_bootstrap, topic_prefix)
    _snapshot_then_later_commit(source)
    updates = source.pending[2:]
    source.pending[2:] = []
    await source.flush()  # the snapshot reads first: the live sync applies them
    zoho = SimView(zoho_sim)
    synced = "SELECT count(*) FROM zoho_sync_log WHERE outcome = 'synced'"
    async with LiveSync(settings):
        await wait_for(lambda: source.query(synced)[0][0] == 2)
        assert _zoho_state(source, zoho) == ("active", "sent")
        source.pending.extend(updates)
        await source.flush()  # then the transaction that committed after the snapshot began
        await wait_for(lambda: source.query(synced)[0][0] == 4)
    assert _zoho_state(source, zoho) == ("inactive", "paid")
    calls = zoho_sim.stats()["requests"]

    result = await _backfill(settings)

    assert _zoho_state(source, zoho) == ("inactive", "paid")
    assert zoho_sim.stats()["requests"] == calls  # the newest state is Zoho's already: no call
    assert "synced" not in result.outcomes and "failed" not in result.outcomes
    assert result.outcomes.get("superseded") == 2
    assert await list_dead_letters(kafka_bootstrap, settings.dlq_topic) == []
    await asyncio.sleep(2)  # a quiet period: nothing keeps calling Zoho
    assert zoho_sim.stats()["requests"] == calls
