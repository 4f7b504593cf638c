"""Refused states are tried once, deletes respect unresolved creates: real broker, PostgreSQL, simulator.

The echo itself needs the real relay (tests/e2e/test_echo_safety.py); these rules are about what a
replay, a reprocess or a crash leaves behind, so the events here are produced in Debezium's shape.
"""

from __future__ import annotations

from connectors.zoho import ZohoClient
from consumer.jobs.backfill import run_backfill
from consumer.jobs.reprocess import list_dead_letters, reprocess
from consumer.migrations import migrate
from consumer.service.wiring import sync_session
from consumer.service.zoho_config import zoho_config
from tests.consumer.harness import LiveSync, SimView, settings_for, wait_for
from tests.fixtures_zoho import settings_for as zoho_settings_for
from tests.support import Source, envelope


def _posts(handle) -> int:  # type: ignore[no-untyped-def]
    return sum(handle.stats()["by_endpoint"].get("POST /customers", {}).values())


async def test_a_refused_state_is_not_sent_again_by_a_replay_only_by_reprocess_or_a_change(
    zoho_sim_factory, database_url, kafka_bootstrap, topic_prefix
):
    handle = zoho_sim_factory(require_email=True)  # Zoho refuses a customer without an email
    settings = settings_for(zoho_settings_for(handle, database_url), kafka_bootstrap, topic_prefix)
    source = Source(database_url, kafka_bootstrap, topic_prefix)
    customer = source.insert_customer(1, email=None)
    source.update("customers", customer, notes="same mapped state, another column")
    await source.flush()
    async with sync_session(settings) as session:
        first = await run_backfill(session)
    assert _posts(handle) == 1
    assert sum(first.outcomes.values()) == 2 and first.outcomes.get("dead_lettered") == 1

    # A replay from the beginning (a new group) meets the same refused state: no call, no dead letter.
    async with sync_session(settings) as session:
        replay = await run_backfill(session)
    assert replay.outcomes == {"skipped": 2} or replay.outcomes == {"skipped": 1, "superseded": 1}
    assert _posts(handle) == 1
    assert len(await list_dead_letters(kafka_bootstrap, settings.dlq_topic)) == 1
    reasons = source.query("SELECT error FROM zoho_sync_log WHERE outcome = 'skipped'")
    assert all("refused this same mapped state" in r[0] for r in reasons)

    # Asked for explicitly, once the cause is fixed, it is sent again.
    handle.set_config(require_email=False)
    async with sync_session(settings) as session:
        again = await reprocess(session)
    assert again.outcomes == {"synced": 1}
    assert _posts(handle) == 2
    assert source.query("SELECT zoho_sync_status FROM customers")[0][0] == "synced"


async def test_a_delete_during_an_unresolved_create_reaches_the_record_the_create_made(
    zoho_settings, zoho_sim, database_url, kafka_bootstrap, topic_prefix
):
    """The create reached Zoho and the process died before its outcome: the intent rows are all we have."""
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    source = Source(database_url, kafka_bootstrap, topic_prefix)
    migrate(database_url)
    customer = source.insert_customer(5)
    invoice = source.insert_invoice(customer, "INV-5-1")
    async with ZohoClient(zoho_config(zoho_settings)) as zoho_client:
        made = await zoho_client.create_customer(
            {
                "display_name": "First5 Last5",
                "custom_fields": [{"label": "Account Number", "value": "CT-2025-00005"}],
            }
        )
        plan_item = await zoho_client.create_item_once({"name": "Monthly plan", "rate": 100.0})
        made_invoice = await zoho_client.create_invoice(
            {
                "customer_id": made["customer_id"],
                "invoice_number": "INV-5-1",
                "reference_number": invoice,
                "date": "2026-11-01",
                "invoice_items": [
                    {
                        "product_id": plan_item["item_id"],
                        "name": "Monthly plan",
                        "rate": 100.0,
                        "price": 100.0,
                        "quantity": 1,
                    }
                ],
            }
        )
    source.query(  # intents are the organisation's (migration 0009)
        "INSERT INTO zoho_sync_intent (organization_id, entity_type, entity_id, operation, natural_key)"
        " VALUES (%s, 'customer', %s, 'create', 'CT-2025-00005'), (%s, 'invoice', %s, 'create', 'INV-5-1')"
        " RETURNING 1",
        settings.zoho_organization_id,
        customer,
        settings.zoho_organization_id,
        invoice,
    )
    source.pending.clear()  # the create events were consumed by the process that died
    source.delete("customer_invoices", invoice)
    source.delete("customers", customer)
    await source.flush()
    zoho = SimView(zoho_sim)
    async with LiveSync(settings):
        await wait_for(lambda: zoho.customer(made["customer_id"])["status"] == "inactive")
        await wait_for(lambda: zoho.invoice(made_invoice["invoice_id"])["status"] == "void")
        await wait_for(lambda: not source.query("SELECT 1 FROM zoho_sync_intent"))
    assert len(zoho.customers()) == 1 and len(zoho.invoices()) == 1
    rows = source.query("SELECT operation FROM zoho_sync_log WHERE outcome = 'synced' ORDER BY operation")
    assert rows == [("mark_customer_inactive",), ("void_invoice",)]


async def test_a_change_committed_after_a_snapshot_began_is_applied_although_its_lsn_is_lower(
    zoho_settings, zoho_sim, database_url, kafka_bootstrap, topic_prefix
):
    """A transaction open when the snapshot began (LSN 5000) wrote its change record at LSN 4000 and
    committed later: Debezium streams it after the snapshot read, with the lower LSN. It is newer."""
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    source = Source(database_url, kafka_bootstrap, topic_prefix)
    customer = source.insert_customer(7)
    source.pending.clear()
    row = source._row("customers", customer)
    source.pending.append(envelope(topic_prefix, "customers", "r", row, customer, lsn=5000, snapshot="true"))
    await source.flush()
    zoho = SimView(zoho_sim)
    async with LiveSync(settings):
        await wait_for(lambda: source.query("SELECT count(*) FROM zoho_sync_log")[0][0] == 1)
        changed = {**row, "phone": "+27 82 111 2222"}
        source.pending.append(envelope(topic_prefix, "customers", "u", changed, customer, lsn=4000))
        await source.flush()
        await wait_for(lambda: source.query("SELECT count(*) FROM zoho_sync_log")[0][0] == 2)
        # A later streamed change of the same row has a higher LSN than the first one and applies too.
        later = {**row, "phone": "+27 82 333 4444"}
        source.pending.append(envelope(topic_prefix, "customers", "u", later, customer, lsn=4500))
        await source.flush()
        await wait_for(lambda: source.query("SELECT count(*) FROM zoho_sync_log")[0][0] == 3)
    (zoho_id,) = source.query("SELECT zoho_id FROM zoho_entity_map")[0]
    assert zoho.customer(zoho_id)["phone"] == "+27 82 333 4444"
    outcomes = [o for (o,) in source.query("SELECT outcome FROM zoho_sync_log ORDER BY kafka_offset")]
    assert outcomes == ["synced", "synced", "synced"]
