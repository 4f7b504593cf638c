"""`zoho-cdc reconcile` against real PostgreSQL, the real broker and the Zoho simulator.

The source is first synced by the live pipeline; then Zoho is edited by hand through the client
(a duplicate, a deleted customer and invoice, a changed phone) and reconcile must see exactly that.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from connectors.zoho.client import ZohoClient
from consumer.jobs.reconcile.run import reconcile
from consumer.service.zoho_config import zoho_config
from tests.consumer.harness import LiveSync, SimView, settings_for, wait_for
from tests.ops import run_cli
from tests.support import Source


@pytest.fixture
def settings(zoho_settings, kafka_bootstrap, topic_prefix):  # type: ignore[no-untyped-def]
    return settings_for(zoho_settings, kafka_bootstrap, topic_prefix)


@pytest.fixture
def source(database_url, kafka_bootstrap, topic_prefix):  # type: ignore[no-untyped-def]
    return Source(database_url, kafka_bootstrap, topic_prefix)


def zoho_id_of(source: Source, table: str, row_id: str) -> str | None:
    column = "zoho_billing_customer_id" if table == "customers" else "zoho_billing_invoice_id"
    return source.query(f"SELECT {column} FROM {table} WHERE id = %s", row_id)[0][0]  # noqa: S608


async def synced_world(settings, source):  # type: ignore[no-untyped-def]
    """Three customers and two invoices, synced by the live pipeline; returns their source ids."""
    ids = {
        "c1": source.insert_customer(1),
        "c2": source.insert_customer(2),
        "c3": source.insert_customer(3),
        "internal": source.insert_customer(4, account_type="internal_test"),
    }
    ids["i1"] = source.insert_invoice(ids["c1"], "INV-0001")  # 100.00 + 15 % VAT
    ids["i2"] = source.insert_invoice(ids["c2"], "INV-0002")
    await source.flush()
    async with LiveSync(settings):
        for name in ("c1", "c2", "c3"):
            await wait_for(lambda n=name: zoho_id_of(source, "customers", ids[n]))
        for name in ("i1", "i2"):
            await wait_for(lambda n=name: zoho_id_of(source, "customer_invoices", ids[n]))
    return ids


async def delete_customer_by_hand(client: ZohoClient, zoho_id: str) -> None:
    """What someone clicking "delete" in Zoho does (the sync itself never deletes customers)."""
    token = await client.auth.token()
    async with httpx.AsyncClient() as http:
        reply = await http.delete(
            f"{client.config.api_base}/customers/{zoho_id}",
            headers={
                "Authorization": f"Zoho-oauthtoken {token.access_token}",
                "X-com-zoho-subscriptions-organizationid": client.config.organization_id,
            },
        )
    assert reply.json()["code"] == 0


async def test_reconcile_finds_duplicate_missing_and_drift_and_fix_repairs_all_but_the_duplicate(
    settings, source, zoho_sim
):
    ids = await synced_world(settings, source)
    zoho = SimView(zoho_sim)
    c1_zoho, c2_zoho, c3_zoho = (zoho_id_of(source, "customers", ids[n]) for n in ("c1", "c2", "c3"))
    i2_zoho = zoho_id_of(source, "customer_invoices", ids["i2"])

    async with ZohoClient(zoho_config(settings)) as client:
        dup = await client.create_customer(
            {
                "display_name": "Someone else entirely",
                "custom_fields": [{"label": "Account Number", "value": "CT-2025-00001"}],
            }
        )
        await client.update_customer(c2_zoho, {"phone": "+27 11 000 0000"})
        await delete_customer_by_hand(client, c3_zoho)
        await client.delete_invoice(i2_zoho)

    report = await reconcile(settings)

    assert [(d.entity_type, d.natural_key, set(d.zoho_ids)) for d in report.duplicates] == [
        ("customer", "CT-2025-00001", {c1_zoho, dup["customer_id"]})
    ]
    assert report.duplicates[0].mapped_zoho_id == c1_zoho
    assert {(m.entity_type, m.entity_id, m.mapped_zoho_id) for m in report.missing} == {
        ("customer", ids["c3"], c3_zoho),
        ("invoice", ids["i2"], i2_zoho),
    }
    assert [(d.entity_type, d.entity_id, d.fields) for d in report.drift] == [
        ("customer", ids["c2"], {"phone": ("+27 21 555 0002", "+27 11 000 0000")})
    ]
    assert report.orphans == []  # the duplicate carries a source key: it is a duplicate, not an orphan
    assert not report.in_sync
    assert report.repair is None
    assert source.query(
        "SELECT count(*) FROM zoho_sync_log WHERE consumer_group LIKE %s", "%.reconcile.%"
    ) == [(0,)]

    fixed = await reconcile(settings, fix=True)

    assert fixed.repair is not None
    assert fixed.repair.outcomes == {"synced": 3}
    assert {(r["entity_id"], r["outcome"]) for r in fixed.repair.rows} == {
        (ids["c3"], "synced"),
        (ids["c2"], "synced"),
        (ids["i2"], "synced"),
    }
    assert zoho.customer(c2_zoho)["phone"] == "+27 21 555 0002"
    new_c3 = zoho_id_of(source, "customers", ids["c3"])
    assert new_c3 and new_c3 != c3_zoho
    assert source.query(
        "SELECT zoho_id FROM zoho_entity_map WHERE entity_type = 'customer' AND entity_id = %s", ids["c3"]
    ) == [(new_c3,)]
    new_i2 = zoho_id_of(source, "customer_invoices", ids["i2"])
    assert zoho.invoice(new_i2)["invoice_number"] == "INV-0002"
    assert zoho.invoice(new_i2)["customer_id"] == c2_zoho
    # The duplicate is left for a human: still both records in Zoho.
    assert zoho.duplicates() == {
        "customers_by_account_number": {"CT-2025-00001": [c1_zoho, dup["customer_id"]]}
    }

    again = run_cli(settings, "reconcile", "--json")
    assert again.returncode == 0, again.stderr
    after = json.loads(again.stdout)
    assert after["missing"] == [] and after["drift"] == []
    assert [d["natural_key"] for d in after["duplicates"]] == ["CT-2025-00001"]
    assert after["in_sync"] is False  # a duplicate remains until someone resolves it


async def test_reconcile_reports_a_zoho_record_with_no_source_row_and_never_writes(
    settings, source, zoho_sim
):
    unsynced = source.insert_customer(5)  # in the source only: missing in Zoho
    async with ZohoClient(zoho_config(settings)) as client:
        stray = await client.create_customer(
            {"display_name": "Made in Zoho", "custom_fields": [{"label": "Account Number", "value": "ZZ-1"}]}
        )
    calls_before = zoho_sim.stats()["calls"]

    report = await reconcile(settings)

    assert [(o.entity_type, o.zoho_id, o.natural_key) for o in report.orphans] == [
        ("customer", stray["customer_id"], "ZZ-1")
    ]
    assert [(m.entity_type, m.entity_id) for m in report.missing] == [("customer", unsynced)]
    assert report.drift == [] and report.duplicates == []
    calls = zoho_sim.stats()["calls"]
    writes = {k: n - calls_before.get(k, 0) for k, n in calls.items() if not k.startswith("GET")}
    assert not any(writes.values())  # a report makes no write call
    assert report.zoho_calls > 0

    fixed = await asyncio.to_thread(run_cli, settings, "reconcile", "--fix")
    assert fixed.returncode == 0, fixed.stderr
    assert "Zoho records with no source row" in fixed.stdout and "ZZ-1" in fixed.stdout
    assert "create_customer" in fixed.stdout  # the repair table
    assert zoho_id_of(source, "customers", unsynced)
    assert stray["customer_id"] in {c["customer_id"] for c in zoho_sim.state()["customers"]}  # never deleted


def test_reconcile_with_postgres_down_ends_in_one_sentence(settings):  # type: ignore[no-untyped-def]
    broken = settings.model_copy(update={"database_url": "postgresql://postgres@127.0.0.1:1/nowhere"})
    result = run_cli(broken, "reconcile")
    assert result.returncode == 1
    assert result.stderr.startswith("error: Cannot connect to PostgreSQL at DATABASE_URL")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_reconcile_with_zoho_unreachable_ends_in_one_sentence(settings):  # type: ignore[no-untyped-def]
    from consumer.local.broker import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    broken = settings.model_copy(
        update={"zoho_api_base": dead + "/billing/v1", "zoho_accounts_url": dead, "zoho_max_attempts": 1}
    )
    result = run_cli(broken, "reconcile")
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("error: Cannot read Zoho at ZOHO_API_BASE=")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert settings.zoho_client_secret.get_secret_value() not in result.stderr


# --- status drift ---------------------------------------------------------------------------------


def set_source(source: Source, table: str, row_id: str, **fields: str) -> None:
    """Change a source row with no change event: what a sync that missed the change leaves behind."""
    sets = ", ".join(f"{c} = %s" for c in fields)
    changed = source.query(
        f"UPDATE {table} SET {sets} WHERE id = %s RETURNING id",  # noqa: S608 - test tables only
        *fields.values(),
        row_id,
    )
    assert [str(r[0]) for r in changed] == [row_id]


def writes_since(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, int]:
    """Write calls the simulator counted between two `/__sim__/stats` readings, by endpoint."""
    grown = {}
    for endpoint, by_status in after.items():
        if endpoint.startswith("GET "):
            continue
        n = sum(by_status.values()) - sum(before.get(endpoint, {}).values())
        if n:
            grown[endpoint] = n
    return grown


async def test_reconcile_reports_status_drift_and_fix_walks_each_status_once(settings, source, zoho_sim):
    ids = {
        "open": source.insert_customer(1),
        "closed": source.insert_customer(2, status="closed"),  # inactive in Zoho: in step, not drift
        "closing": source.insert_customer(3),
        "reopened": source.insert_customer(4),
    }
    ids["draft"] = source.insert_invoice(ids["open"], "INV-S-1", status="draft")
    ids["sent"] = source.insert_invoice(ids["open"], "INV-S-2", status="sent")
    ids["voiding"] = source.insert_invoice(ids["closing"], "INV-S-3", status="sent")
    ids["paid"] = source.insert_invoice(ids["closing"], "INV-S-4", status="paid")  # paid in Zoho: in step
    await source.flush()
    async with LiveSync(settings):
        for name in ("open", "closed", "closing", "reopened"):
            await wait_for(lambda n=name: zoho_id_of(source, "customers", ids[n]))
        for name in ("draft", "sent", "voiding", "paid"):
            await wait_for(lambda n=name: zoho_id_of(source, "customer_invoices", ids[n]))
    zoho = SimView(zoho_sim)
    zid = {n: zoho_id_of(source, "customers", ids[n]) for n in ("open", "closed", "closing", "reopened")}
    zid |= {n: zoho_id_of(source, "customer_invoices", ids[n]) for n in ("draft", "sent", "voiding", "paid")}
    assert zoho.customer(zid["closed"])["status"] == "inactive"
    assert zoho.invoice(zid["paid"])["status"] == "paid"
    assert (await reconcile(settings)).in_sync  # closed/inactive and paid/paid are no drift

    # The source moves on while its change events never reach the sync; someone deactivates a customer by
    # hand in Zoho, which is Zoho ahead (zoho-cdc left it active, the source still says active).
    set_source(source, "customer_invoices", ids["draft"], status="sent")
    set_source(source, "customer_invoices", ids["sent"], status="paid")
    set_source(source, "customer_invoices", ids["voiding"], status="void")
    set_source(source, "customers", ids["closing"], status="closed")
    async with ZohoClient(zoho_config(settings)) as client:
        await client.mark_customer_inactive(zid["reopened"])
    before = zoho_sim.stats()["by_endpoint"]

    report = await reconcile(settings)

    assert writes_since(before, zoho_sim.stats()["by_endpoint"]) == {}  # a report writes nothing
    assert {(d.entity_type, d.entity_id, d.fields["status"]) for d in report.drift} == {
        ("invoice", ids["draft"], ("sent", "draft")),  # sent in the source, still a draft in Zoho
        ("invoice", ids["sent"], ("paid", "sent")),  # paid in the source, unpaid in Zoho
        ("invoice", ids["voiding"], ("void", "sent")),
        ("customer", ids["closing"], ("inactive", "active")),  # closed in the source, active in Zoho
    }
    assert all(list(d.fields) == ["status"] for d in report.drift), report.drift
    assert [(a.entity_id, a.zoho_status, a.source_status, a.recorded) for a in report.zoho_ahead] == [
        (ids["reopened"], "inactive", "active", False)  # listed, never undone by --fix
    ]
    assert len(report.status_drift) == 4 and not report.missing and not report.duplicates
    assert not report.in_sync

    before = zoho_sim.stats()["by_endpoint"]
    fixed = await reconcile(settings, fix=True)

    assert fixed.repair is not None and fixed.repair.outcomes == {"synced": 4}, fixed.repair
    writes = writes_since(before, zoho_sim.stats()["by_endpoint"])
    # A resync never trusts the stored payload hash, so content is sent again (PUT): the two open invoices,
    # the drifted customer, and once the customer those two invoices are checked against.
    assert writes == {
        "POST /invoices/{id}/converttoopen": 1,
        "POST /payments": 1,
        "POST /invoices/{id}/void": 1,
        "POST /customers/{id}/markasinactive": 1,
        "PUT /invoices/{id}": 2,
        "PUT /customers/{id}": 2,
    }, writes  # no create, no delete, one payment
    assert zoho.invoice(zid["draft"])["status"] == "sent"
    assert zoho.invoice(zid["sent"])["status"] == "paid"
    assert zoho.invoice(zid["voiding"])["status"] == "void"
    assert zoho.customer(zid["closing"])["status"] == "inactive"
    assert zoho.customer(zid["reopened"])["status"] == "inactive"  # a person's change is not undone
    payments = zoho_sim.state()["payments"]
    assert sorted(p["reference_number"] for p in payments) == sorted([ids["paid"], ids["sent"]])

    before = zoho_sim.stats()["by_endpoint"]
    again = run_cli(settings, "reconcile", "--json")
    assert again.returncode == 0, again.stderr
    after = json.loads(again.stdout)
    assert after["in_sync"] is True and after["drift"] == [] and after["summary"]["status_drift"] == 0
    assert after["summary"]["zoho_ahead"] == 1
    assert writes_since(before, zoho_sim.stats()["by_endpoint"]) == {}
