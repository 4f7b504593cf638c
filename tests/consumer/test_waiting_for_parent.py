"""An invoice refused because its customer failed is sent once the customer is synced, without an operator.

Issue 23 (f), on the real broker, PostgreSQL and simulator: Zoho refuses a customer (no email), so its
invoice is dead-lettered too. When the customer's row is fixed and synced, the invoice goes to Zoho by
itself, once; nothing is sent after that (a quiet period shows no loop).
"""

from __future__ import annotations

import asyncio

from tests.consumer.harness import LiveSync, SimView, settings_for, wait_for
from tests.fixtures_zoho import settings_for as zoho_settings_for
from tests.support import Source

QUIET_SECONDS = 3.0


def _writes(handle) -> dict[str, int]:  # type: ignore[no-untyped-def]
    by = handle.stats()["by_endpoint"]
    return {
        endpoint: sum(codes.values()) for endpoint, codes in by.items() if not endpoint.startswith("GET ")
    }


async def test_an_invoice_refused_for_its_customer_is_sent_once_the_customer_is_synced(
    zoho_sim_factory, database_url, kafka_bootstrap, topic_prefix
):
    handle = zoho_sim_factory(require_email=True)  # Zoho refuses a customer without an email
    settings = settings_for(zoho_settings_for(handle, database_url), kafka_bootstrap, topic_prefix)
    source = Source(database_url, kafka_bootstrap, topic_prefix)
    customer = source.insert_customer(1, email=None)
    invoice = source.insert_invoice(customer, "INV-1")
    await source.flush()
    zoho = SimView(handle)

    def invoice_status() -> str | None:
        return source.query("SELECT zoho_sync_status FROM customer_invoices WHERE id = %s", invoice)[0][0]

    async with LiveSync(settings):
        await wait_for(lambda: invoice_status() == "failed", timeout=60)
        assert zoho.invoices() == []

        source.update("customers", customer, email="fixed@example.co.za")  # the cause is fixed in the row
        await source.flush()
        await wait_for(lambda: [i["invoice_number"] for i in zoho.invoices()] == ["INV-1"], timeout=60)
        await wait_for(lambda: invoice_status() == "synced", timeout=30)
        settled = _writes(handle)
        await asyncio.sleep(QUIET_SECONDS)
        assert _writes(handle) == settled
    assert settled.get("POST /invoices") == 1
    assert source.query("SELECT count(*) FROM zoho_waiting_for_parent") == [(0,)]
    handed = source.query(
        "SELECT outcome FROM zoho_sync_log WHERE entity_id = %s AND kafka_partition = -2", invoice
    )
    assert handed == [("synced",)]
