"""Invoices made by others in the live sync: adopted by the id the source holds or by invoice number, never
when they carry another source invoice's reference (real broker, PostgreSQL and simulator)."""

from __future__ import annotations

from tests.consumer.harness import LiveSync, read_topic, settings_for, wait_for
from tests.support import Source


def _calls(sim) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {e: sum(v.values()) for e, v in sim.stats()["by_endpoint"].items()}


async def test_an_invoice_made_by_others_is_adopted_by_number_and_one_with_another_reference_is_not(
    zoho_settings, zoho_sim, database_url, kafka_bootstrap, topic_prefix
):
    zoho_sim.load_records_of_others(
        customers=[{"customer_id": "OLD-C", "display_name": "Old Customer", "email": "old@x.example"}],
        invoices=[
            {"invoice_id": "OLD-I1", "invoice_number": "INV-9001", "customer_id": "OLD-C", "total": 115.0},
            {
                "invoice_id": "OLD-I2",
                "invoice_number": "INV-9002",
                "customer_id": "OLD-C",
                "total": 115.0,
                "reference_number": "an-invoice-of-another-source",
            },
        ],
    )
    source = Source(database_url, kafka_bootstrap, topic_prefix)
    customer = source.insert_customer(1, zoho_billing_customer_id="OLD-C", zoho_sync_status="synced")
    adopted = source.insert_invoice(customer, "INV-9001")
    refused = source.insert_invoice(customer, "INV-9002")
    await source.flush()
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    async with LiveSync(settings):
        await wait_for(
            lambda: source.query(
                "SELECT zoho_billing_invoice_id FROM customer_invoices WHERE id = %s", adopted
            )[0][0],
            timeout=60,
        )

        async def one_dead_letter() -> bool:
            return len(await read_topic(kafka_bootstrap, settings.dlq_topic)) >= 1

        await wait_for(one_dead_letter, timeout=60)
        letters = await read_topic(kafka_bootstrap, settings.dlq_topic)

    invoices = {i["invoice_id"]: i for i in zoho_sim.state()["invoices"]}
    assert set(invoices) == {"OLD-I1", "OLD-I2"}  # nothing created
    assert source.query("SELECT zoho_billing_invoice_id FROM customer_invoices WHERE id = %s", adopted) == [
        ("OLD-I1",)
    ]
    assert invoices["OLD-I1"]["reference_number"] == adopted  # brought up to the source by its PUT
    assert "POST /invoices" not in _calls(zoho_sim)
    assert len(letters) == 1
    message = dict(letters[0].headers)["__connect.errors.exception.message"].decode()
    assert f"invoice {refused} matches Zoho invoice OLD-I2" in message
    assert "reference an-invoice-of-another-source" in message
    notes = dict(source.query("SELECT entity_id::text, error FROM zoho_sync_log WHERE outcome = 'synced'"))
    assert notes[customer] == "adopted Zoho customer OLD-C by the id the source held"
    assert notes[adopted] == "adopted Zoho invoice OLD-I1 by invoice_number (INV-9001)"
