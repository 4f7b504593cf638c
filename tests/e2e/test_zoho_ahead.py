"""Zoho is ahead, through the real relay: what people did in Zoho first is accepted, never fought.

A synced `sent` invoice paid in Zoho's customer portal, then edited in the source: the refused PUT is read
back once and recorded `zoho_ahead` (no dead letter, the row stays `synced`), the status page, its JSON
and `/metrics` show it, and later edits make no call. A customer made inactive in Zoho by hand, then
edited in the source, is not made active again. Calls are counted on the simulator, then a quiet period.
"""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumer.jobs.reconcile.run import reconcile
from tests.consumer.harness import LiveSync, SimView, settings_for, wait_for
from tests.e2e.test_echo_safety import _exec, _insert_customer, _one, _quiet_and_unchanged, _writes
from tests.e2e.test_status_lifecycle import _grew, _insert_invoice, _letters, _zoho_invoice_id
from tests.ops import status_server

pytestmark = pytest.mark.relay


def _outcomes(url: str, entity_id: str) -> list[str]:
    rows = _one(
        url,
        "SELECT coalesce(array_agg(outcome ORDER BY id), '{}') FROM zoho_sync_log WHERE entity_id = %s",
        entity_id,
    )
    return list(rows)


def _ahead_metric(scrape: str, entity: str) -> tuple[float, float]:
    """(entities Zoho is ahead of now, times found ahead) for one entity type, from a /metrics scrape."""
    values = {
        (s.name, s.labels.get("entity")): s.value
        for family in text_string_to_metric_families(scrape)
        for s in family.samples
    }
    return values[("zoho_cdc_zoho_ahead_entities", entity)], values[("zoho_cdc_zoho_ahead_total", entity)]


async def test_a_portal_paid_invoice_and_a_customer_made_inactive_in_zoho_are_zoho_ahead_not_dead_letters(
    database_url, kafka_bootstrap, topic_prefix, zoho_settings, zoho_sim, relay_process
):
    customer = _insert_customer(database_url, "CT-AHEAD-1", "ahead@status.example")
    invoice = _insert_invoice(database_url, customer, "INV-AHEAD-1", "sent")
    _insert_invoice(database_url, customer, "INV-AHEAD-2", "sent")
    never_sent = _insert_invoice(database_url, customer, "INV-AHEAD-VOID", "void")  # skipped by design
    relay_process(database_url, topic_prefix, kafka_bootstrap)
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    zoho = SimView(zoho_sim)
    async with LiveSync(settings) as live:
        zoho_id = await wait_for(lambda: _zoho_invoice_id(database_url, invoice), timeout=90)
        await wait_for(lambda: zoho.invoice(zoho_id)["status"] == "sent", timeout=30)
        await wait_for(
            lambda: (
                _one(database_url, "SELECT count(*) FROM customer_invoices WHERE zoho_sync_status = 'synced'")
                == 2
            ),
            timeout=60,
        )
        before = await _quiet_and_unchanged(zoho_sim, _writes(zoho_sim))

        # The customer pays in the portal: not a call of zoho-cdc's, through the payment rules.
        zoho_sim.pay_in_portal(zoho_id)
        assert zoho.invoice(zoho_id)["status"] == "paid" and zoho.invoice(zoho_id)["balance"] == 0
        assert _writes(zoho_sim) == before

        # The source changes the due date: the PUT is refused, read back once, recorded Zoho ahead.
        _exec(database_url, "UPDATE customer_invoices SET due_date = '2026-12-31' WHERE id = %s", invoice)
        await wait_for(lambda: "zoho_ahead" in _outcomes(database_url, invoice), timeout=60)
        after = await _quiet_and_unchanged(zoho_sim, _writes(zoho_sim))
        assert _grew(before, after) == {"PUT /invoices/{id}": 1}
        assert _one(
            database_url, "SELECT zoho_sync_status FROM customer_invoices WHERE id = %s", invoice
        ) == ("synced")
        assert (
            _one(
                database_url,
                "SELECT zoho_status || '/' || zoho_ahead FROM zoho_entity_map WHERE entity_id = %s",
                invoice,
            )
            == "paid/paid"
        )

        # Later edits make no call at all (and no dead letter).
        _exec(database_url, "UPDATE customer_invoices SET due_date = '2027-01-15' WHERE id = %s", invoice)
        await wait_for(lambda: _outcomes(database_url, invoice).count("zoho_ahead") == 2, timeout=60)
        await _quiet_and_unchanged(zoho_sim, after)

        # A customer made inactive in Zoho by hand, then edited in the source: never made active again.
        customer_zoho = _one(
            database_url, "SELECT zoho_billing_customer_id FROM customers WHERE id = %s", customer
        )
        zoho_sim.mark_customer_by_hand(customer_zoho, "inactive")
        _exec(database_url, "UPDATE customers SET phone = '+27 21 555 0101' WHERE id = %s", customer)
        await wait_for(lambda: "zoho_ahead" in _outcomes(database_url, customer), timeout=60)
        edited = await _quiet_and_unchanged(zoho_sim, _writes(zoho_sim))
        assert _grew(after, edited) == {"PUT /customers/{id}": 1}
        assert zoho.customer(customer_zoho)["status"] == "inactive"
        assert zoho.customer(customer_zoho)["phone"] == "+27 21 555 0101"
        _exec(database_url, "UPDATE customers SET phone = '+27 21 555 0202' WHERE id = %s", customer)
        await wait_for(lambda: _outcomes(database_url, customer).count("zoho_ahead") == 2, timeout=60)
        await _quiet_and_unchanged(zoho_sim, edited)
        assert zoho.customer(customer_zoho)["status"] == "inactive"

        # Shown as Zoho ahead: the status JSON lists both, /metrics counts them, the page names them.
        async with status_server(live.session, live.runner) as base, httpx.AsyncClient(base_url=base) as http:
            status = (await http.get("/status.json")).json()
            scrape = (await http.get("/metrics")).text
            page = (await http.get("/")).text
        assert status["zoho_ahead_total"] == 2
        assert {(e["entity_type"], e["entity_id"], e["zoho_status"]) for e in status["zoho_ahead"]} == {
            ("invoice", invoice, "paid"),
            ("customer", customer, "inactive"),
        }
        assert status["outcomes_total"]["zoho_ahead"] == 4 and status["outcomes_total"]["dead_lettered"] == 0
        assert status["invoices_failed"] == 0 and status["customers_failed"] == 0
        # What is rightly never sent (void before it was created) is not "not synced" either.
        assert _outcomes(database_url, never_sent) == ["skipped"]
        assert status["invoices_unsynced"] == 0 and status["customers_unsynced"] == 0
        assert _ahead_metric(scrape, "invoice") == (1.0, 1.0)
        assert _ahead_metric(scrape, "customer") == (1.0, 1.0)
        assert "id=zoho-ahead-total>2<" in page and f"<td>{invoice}</td>" in page

        # reconcile lists both as Zoho ahead (not drift, nothing for --fix), and finds a third one the live
        # sync has not met yet: an invoice paid in the portal with no source change since.
        quiet = str(
            _one(database_url, "SELECT id FROM customer_invoices WHERE invoice_number = 'INV-AHEAD-2'")
        )
        zoho_sim.pay_in_portal(_zoho_invoice_id(database_url, quiet))
        report = await reconcile(settings)
        assert {(a.entity_id, a.zoho_status, a.source_status, a.recorded) for a in report.zoho_ahead} == {
            (invoice, "paid", "sent", True),
            (customer, "inactive", "active", True),
            (quiet, "paid", "sent", False),
        }
        assert report.drift == [] and report.in_sync and report.as_dict()["summary"]["zoho_ahead"] == 3
        await _quiet_and_unchanged(zoho_sim, edited)

        # The source catches up (paid there too): Zoho ahead ends, and no second payment is made.
        _exec(database_url, "UPDATE customer_invoices SET status = 'paid' WHERE id = %s", invoice)
        await wait_for(
            lambda: _one(
                database_url, "SELECT zoho_ahead IS NULL FROM zoho_entity_map WHERE entity_id = %s", invoice
            ),
            timeout=60,
        )
        await _quiet_and_unchanged(zoho_sim, edited)
    assert await _letters(kafka_bootstrap, settings.dlq_topic) == []
    assert len(zoho_sim.simulator.state()["payments"]) == 2  # the portal's two, none of zoho-cdc's
    assert zoho.duplicates() == {}
