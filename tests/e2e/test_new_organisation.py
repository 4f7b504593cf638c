"""Everything per Zoho organisation (issue 22, item 5), through the real relay.

PostgreSQL -> Debezium -> Kafka -> `zoho-cdc run` into organisation A; then `backfill` with
ZOHO_ORGANIZATION_ID = B (the same simulator serving both, each with its own records and counters):
everything is created in B once, a second backfill writes nothing, and A's records and counters and
the source's id columns are untouched (the topics the backfill replays hold the echoes of A's
write-backs, ids of A included). Then the live sync moves to B: the source's ids follow B's map, and
the echoes of that change cost no call in either organisation.
"""

from __future__ import annotations

import asyncio

import pytest

from consumer.jobs.backfill import run_backfill
from consumer.service.wiring import sync_session
from tests.consumer.harness import LiveSync, settings_for, wait_for
from tests.e2e.test_echo_safety import (
    QUIET_SECONDS,
    _insert_customer,
    _insert_invoice,
    _quiet_and_unchanged,
    _writes,
)
from tests.fixtures_zoho import settings_for as zoho_settings_for
from tests.support import sql_exec as _exec
from tests.support import sql_value as _one

pytestmark = pytest.mark.relay

ORG_B = "20468013"
SYNCED = (
    "SELECT (SELECT count(*) FROM customers WHERE zoho_sync_status = 'synced')"
    " + (SELECT count(*) FROM customer_invoices WHERE zoho_sync_status = 'synced')"
)
SOURCE_IDS = (
    "SELECT 'customer', id::text, zoho_billing_customer_id, zoho_sync_status FROM customers"
    " UNION ALL SELECT 'invoice', id::text, zoho_billing_invoice_id, zoho_sync_status FROM customer_invoices"
    " ORDER BY 1, 2"
)


def _source_ids(url: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(SOURCE_IDS).fetchall()


async def _backfill(settings, group: str):  # type: ignore[no-untyped-def]
    async with sync_session(settings) as session:
        assert not session.organisation.live  # B is not the live sync's organisation
        return await run_backfill(session, group_id=group)


async def test_a_backfill_into_a_second_organisation_creates_everything_there_once_and_touches_nothing_else(
    database_url, kafka_bootstrap, topic_prefix, zoho_sim_factory, relay_process
):
    sim = zoho_sim_factory(other_organization_ids=(ORG_B,))
    relay_process(database_url, topic_prefix, kafka_bootstrap)
    settings_a = settings_for(zoho_settings_for(sim, database_url), kafka_bootstrap, topic_prefix)
    settings_b = settings_a.model_copy(update={"zoho_organization_id": ORG_B})
    assert settings_a.zoho_organization_id == sim.org_id != ORG_B

    async with LiveSync(settings_a):
        customers = [_insert_customer(database_url, f"CT-ORG-{n}", f"org{n}@example.com") for n in range(3)]
        plain = [{"description": "Consulting", "quantity": 2, "unit_price": "150.00"}]
        coded = [{"description": "Support", "sku": "SUP-1", "quantity": 1, "unit_price": "80.00"}]
        paid = _insert_invoice(database_url, customers[0], "INV-ORG-1", plain, "ZAR")
        _insert_invoice(database_url, customers[1], "INV-ORG-2", coded, "ZAR")
        await wait_for(lambda: _one(database_url, SYNCED) == 5, timeout=90)
        _exec(database_url, "UPDATE customer_invoices SET status = 'paid' WHERE id = %s", paid)
        await wait_for(lambda: len(sim.state()["payments"]) == 1, timeout=60)
        await _quiet_and_unchanged(sim, _writes(sim))  # the echoes of A's write-backs were streamed too
    a_state, a_stats, source_before = sim.state(), sim.stats(), _source_ids(database_url)
    assert len(a_state["customers"]) == 3 and len(a_state["invoices"]) == 2
    assert sim.stats(ORG_B)["requests"] == 0

    first = await _backfill(settings_b, f"{topic_prefix}-org-b-1")

    b_state = sim.state(ORG_B)
    assert sorted(c["email"] for c in b_state["customers"]) == sorted(
        c["email"] for c in a_state["customers"]
    )
    assert sorted(i["invoice_number"] for i in b_state["invoices"]) == ["INV-ORG-1", "INV-ORG-2"]
    assert len(b_state["payments"]) == 1  # the paid invoice is paid in B too
    assert sim.duplicates(ORG_B) == {
        "field": sim.duplicates()["field"],
        "customers_by_account_number": {},
        "invoices_by_number": {},
        "payments_by_reference": {},
    }
    b_writes = _writes_of(sim, ORG_B)
    # Each record once: 3 customers, 2 invoices, their items (the default one and SUP-1), one payment
    # (B's item map is its own: A's item ids would be refused in B).
    assert b_writes.get("POST /customers") == 3 and b_writes.get("POST /invoices") == 2
    assert b_writes.get("POST /items") == 2 and b_writes.get("POST /payments") == 1
    assert first.outcomes.get("dead_lettered", 0) == 0 and first.outcomes.get("failed", 0) == 0
    # No id of A was sent to B: every invoice of B names a customer of B.
    b_customer_ids = {c["customer_id"] for c in b_state["customers"]}
    assert {i["customer_id"] for i in b_state["invoices"]} <= b_customer_ids
    # A is untouched, and so are the source's id columns (they hold A's ids: A is the live organisation).
    assert sim.state() == a_state and sim.stats()["calls"] == a_stats["calls"]
    assert _source_ids(database_url) == source_before
    assert _one(database_url, "SELECT count(*) FROM zoho_pending_write_back") == 0
    assert _one(database_url, "SELECT count(*) FROM zoho_entity_map WHERE organization_id = %s", ORG_B) == 5

    b_calls = sim.stats(ORG_B)["requests"]
    second = await _backfill(settings_b, f"{topic_prefix}-org-b-2")
    await asyncio.sleep(QUIET_SECONDS)

    assert sim.stats(ORG_B)["requests"] == b_calls  # not a write, not even a read
    assert second.outcomes.get("synced", 0) == 0 and second.outcomes.get("unchanged") == 5
    assert sim.state(ORG_B) == b_state
    assert sim.state() == a_state and sim.stats()["calls"] == a_stats["calls"]
    assert _source_ids(database_url) == source_before

    # The live sync moves to B: the source's ids follow B's map; the echoes of that change cost nothing.
    b_ids = {c["email"]: c["customer_id"] for c in b_state["customers"]}
    async with LiveSync(settings_b):
        await wait_for(
            lambda: (
                _one(
                    database_url,
                    "SELECT count(*) FROM customers WHERE zoho_billing_customer_id = ANY(%s)",
                    list(b_ids.values()),
                )
                == 3
            ),
            timeout=30,
        )
        await wait_for(
            lambda: _one(database_url, "SELECT count(*) FROM zoho_pending_write_back") == 0, timeout=30
        )
        await asyncio.sleep(QUIET_SECONDS)
    assert sim.stats(ORG_B)["requests"] == b_calls and sim.stats()["calls"] == a_stats["calls"]
    emails = dict(
        (str(e), str(z))
        for e, z in _rows(database_url, "SELECT email, zoho_billing_customer_id FROM customers")
    )
    assert emails == b_ids
    b_invoices = {i["invoice_number"]: i["invoice_id"] for i in b_state["invoices"]}
    assert (
        dict(_rows(database_url, "SELECT invoice_number, zoho_billing_invoice_id FROM customer_invoices"))
        == b_invoices
    )
    assert {status for *_, status in _source_ids(database_url)} == {"synced"}


def _writes_of(sim, org: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    by_endpoint = sim.stats(org)["by_endpoint"]
    return {e: sum(by.values()) for e, by in by_endpoint.items() if not e.startswith("GET ")}


def _rows(url: str, sql: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()
