"""Invoices people moved in Zoho first: "it already is so" settles as synced, anything else is Zoho ahead.

Against real PostgreSQL, the real broker and the simulator (events in Debezium's JsonConverter shape; what
depends on the relay's echoes is in tests/e2e/test_zoho_ahead.py). People act on the simulator's records
directly, so only zoho-cdc's calls are counted; each step ends with a quiet period.
"""

from __future__ import annotations

import pytest

from tests.consumer.harness import LiveSync, SimView, settings_for, wait_for
from tests.e2e.test_echo_safety import _quiet_and_unchanged, _writes
from tests.e2e.test_status_lifecycle import _grew, _letters
from tests.support import Source


@pytest.fixture
def source(database_url, kafka_bootstrap, topic_prefix):  # type: ignore[no-untyped-def]
    return Source(database_url, kafka_bootstrap, topic_prefix)


def _outcomes(source: Source, entity_id: str) -> list[str]:
    rows = source.query("SELECT outcome FROM zoho_sync_log WHERE entity_id = %s ORDER BY id", entity_id)
    return [r[0] for r in rows]


def _zoho_id(source: Source, entity_id: str) -> str | None:
    rows = source.query("SELECT zoho_id FROM zoho_entity_map WHERE entity_id = %s", entity_id)
    return rows[0][0] if rows else None


def _map(source: Source, entity_id: str) -> tuple[str | None, str | None]:
    [(status, ahead)] = source.query(
        "SELECT zoho_status, zoho_ahead FROM zoho_entity_map WHERE entity_id = %s", entity_id
    )
    return status, ahead


async def _step(source: Source, sim, entity_id: str, outcomes: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Send the pending events, wait for the entity's `outcomes`-th sync-log row and a quiet period;
    returns the write calls the step made."""
    before = _writes(sim)
    await source.flush()
    await wait_for(lambda: len(_outcomes(source, entity_id)) >= outcomes, timeout=60)
    return _grew(before, await _quiet_and_unchanged(sim, _writes(sim)))


async def test_invoices_moved_in_zoho_first_are_settled_or_zoho_ahead_never_dead_lettered(
    zoho_settings, kafka_bootstrap, topic_prefix, zoho_sim, source
):
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    zoho, people = SimView(zoho_sim), zoho_sim.simulator
    customer = source.insert_customer(1)
    paid = source.insert_invoice(customer, "INV-W-1", status="sent")
    voided = source.insert_invoice(customer, "INV-W-2", status="sent")
    opened = source.insert_invoice(customer, "INV-W-3", status="draft")
    await source.flush()
    async with LiveSync(settings):
        ids = {
            name: await wait_for(lambda i=invoice: _zoho_id(source, i), timeout=60)
            for name, invoice in (("paid", paid), ("voided", voided), ("opened", opened))
        }
        await wait_for(lambda: zoho.invoice(ids["paid"])["status"] == "sent", timeout=30)
        await _quiet_and_unchanged(zoho_sim, _writes(zoho_sim))

        # Paid in the portal, then paid (and re-dated) in the source: it already is so. The refused PUT
        # is read back once; no second payment; synced.
        zoho_sim.pay_in_portal(ids["paid"])
        source.update("customer_invoices", paid, status="paid", due_date="2026-12-15")
        assert await _step(source, zoho_sim, paid, 2) == {"PUT /invoices/{id}": 1}
        assert _outcomes(source, paid)[-1] == "synced" and _map(source, paid) == ("paid", None)
        assert len(people.state()["payments"]) == 1

        # Voided by hand, then paid in the source: Zoho refuses payments on a void invoice, so no payment
        # is tried; Zoho ahead. Voided in the source too: they agree, Zoho ahead ends, no call.
        people.invoices.void(ids["voided"])
        source.update("customer_invoices", voided, status="paid")
        assert await _step(source, zoho_sim, voided, 2) == {}
        assert _outcomes(source, voided)[-1] == "zoho_ahead" and _map(source, voided) == ("void", "void")
        source.update("customer_invoices", voided, status="void")
        assert await _step(source, zoho_sim, voided, 3) == {}
        assert _outcomes(source, voided)[-1] == "unchanged" and _map(source, voided) == ("void", None)

        # Opened by hand while zoho-cdc left it a draft, edited in the source (still draft): the PUT is
        # taken (an open invoice can be edited) and is not followed by anything; then no call at all.
        people.invoices.convert_to_open(ids["opened"])
        source.update("customer_invoices", opened, due_date="2026-12-20")
        assert await _step(source, zoho_sim, opened, 2) == {"PUT /invoices/{id}": 1}
        assert _outcomes(source, opened)[-1] == "zoho_ahead" and _map(source, opened) == ("sent", "sent")
        assert zoho.invoice(ids["opened"])["due_date"] == "2026-12-20"
        source.update("customer_invoices", opened, due_date="2026-12-21")
        assert await _step(source, zoho_sim, opened, 3) == {}
        # Sent in the source as well: they agree again; its last edit goes out with one PUT.
        source.update("customer_invoices", opened, status="sent")
        assert await _step(source, zoho_sim, opened, 4) == {"PUT /invoices/{id}": 1}
        assert _outcomes(source, opened)[-1] == "synced" and _map(source, opened) == ("sent", None)
        assert zoho.invoice(ids["opened"])["due_date"] == "2026-12-21"
    assert await _letters(kafka_bootstrap, settings.dlq_topic) == []
    failed = source.query("SELECT count(*) FROM customer_invoices WHERE zoho_sync_status = 'failed'")
    assert failed == [(0,)]
    assert "dead_lettered" not in {o for i in (paid, voided, opened) for o in _outcomes(source, i)}
