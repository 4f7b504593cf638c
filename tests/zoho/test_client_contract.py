"""Every ZohoClient call against the simulator: results, error families, pagination, accounting."""

from __future__ import annotations

import pytest

from connectors.zoho import Duplicate, NotFound, ResponseLost, ValidationFailed, ZohoClient, errors
from consumer.service.zoho_config import zoho_config
from tests.zoho.conftest import customer_payload, fault_next, invoice_payload


@pytest.fixture
async def client(zoho_settings):
    async with ZohoClient(zoho_config(zoho_settings)) as zoho:
        yield zoho


async def test_customer_calls_round_trip(client, zoho_sim):
    created = await client.create_customer(customer_payload(1))
    cid = created["customer_id"]
    assert (await client.get_customer(cid))["email"] == "c1@example.com"
    updated = await client.update_customer(cid, {"phone": "555"})
    assert updated["phone"] == "555"
    assert (await client.mark_customer_inactive(cid))["code"] == 0
    assert (await client.get_customer(cid))["status"] == "inactive"
    await client.mark_customer_active(cid)
    assert (await client.get_customer(cid))["status"] == "active"
    found = await client.find_customer("CT-1")
    assert found is not None and found["customer_id"] == cid


async def test_find_customer_adopts_only_a_record_carrying_our_account_number(client):
    # A record with the same email but no account number (made by hand) is not ours to adopt,
    # nor is one carrying another account number.
    await client.create_customer({"display_name": "Legacy", "email": "legacy@example.com"})
    await client.create_customer(customer_payload(7, email="shared@example.com"))
    assert await client.find_customer("CT-9", "legacy@example.com") is None
    assert await client.find_customer("CT-9", "shared@example.com") is None  # carries CT-7, not ours
    assert await client.find_customer("CT-404") is None
    ours = await client.create_customer(customer_payload(9, email="legacy@example.com"))
    assert (await client.find_customer("CT-9", "legacy@example.com"))["customer_id"] == ours["customer_id"]


async def test_display_name_clash_is_disambiguated_by_account_number(client):
    await client.create_customer(customer_payload(1))
    clash = customer_payload(2, display_name="Customer 1")
    created = await client.create_customer(clash)
    assert created["display_name"] == "Customer 1 (CT-2)"
    other = await client.create_customer(customer_payload(3))
    renamed = await client.update_customer(
        other["customer_id"], {**customer_payload(3), "display_name": "Customer 1"}
    )
    assert renamed["display_name"] == "Customer 1 (CT-3)"


async def test_permanent_errors_map_to_their_family(client):
    with pytest.raises(NotFound) as missing:
        await client.get_customer("903999999999999")
    assert missing.value.code == 1002 and missing.value.http_status == 404 and missing.value.attempts == 1
    with pytest.raises(ValidationFailed):
        await client.create_customer(customer_payload(1, email="broken"))


async def test_invoice_calls_round_trip(client):
    cid = (await client.create_customer(customer_payload(1)))["customer_id"]
    invoice = await client.create_invoice(invoice_payload(cid, "CI-2025-1"))
    assert invoice["invoice_number"] == "CI-2025-1" and invoice["status"] == "draft"
    iid = invoice["invoice_id"]
    with pytest.raises(Duplicate) as duplicate:
        await client.create_invoice(invoice_payload(cid, "CI-2025-1"))
    assert duplicate.value.code == 1001
    updated = await client.update_invoice(
        iid, {"customer_id": cid, "invoice_items": [{"name": "a", "rate": 7}]}
    )
    assert updated["total"] == 7.0 and updated["invoice_number"] == "CI-2025-1"
    assert (await client.get_invoice(iid))["total"] == 7.0
    assert (await client.find_invoice_by_number("CI-2025-1"))["invoice_id"] == iid
    assert await client.find_invoice_by_number("CI-2025-") is None
    assert (await client.void_invoice(iid))["code"] == 0
    assert (await client.get_invoice(iid))["status"] == "void"
    assert (await client.delete_invoice(iid))["code"] == 0
    with pytest.raises(NotFound):
        await client.get_invoice(iid)


async def test_iterators_walk_every_page(client):
    cid = (await client.create_customer(customer_payload(1)))["customer_id"]
    for n in range(2, 8):
        await client.create_customer(customer_payload(n))
    for n in range(5):
        await client.create_invoice(invoice_payload(cid, f"CI-{n}"))
    with client.tracking() as tracker:
        names = [c["display_name"] async for c in client.iter_customers(per_page=3)]
    assert names == [f"Customer {n}" for n in range(1, 8)]
    assert tracker.attempts == 3  # pages of 3, 3, 1
    numbers = [i["number"] async for i in client.iter_invoices(customer_id=cid, per_page=2)]
    assert numbers == [f"CI-{n}" for n in range(5)]


async def test_transient_errors_are_retried_and_every_attempt_counted(client, zoho_sim):
    zoho_sim.set_faults(burst_429=2)
    fault_next(zoho_sim, 1, "error_503")
    with client.tracking() as tracker:
        assert [c async for c in client.iter_customers()] == []
    assert [call.http_status for call in tracker.calls] == [429, 429, 503, 200]
    assert tracker.attempts == 4 and tracker.http_status == 200
    assert client.metrics.http_429 == 2


async def test_create_after_a_lost_reply_raises_response_lost_without_retrying(client, zoho_sim):
    fault_next(zoho_sim, 1)
    with client.tracking() as tracker, pytest.raises(ResponseLost) as lost:
        await client.create_customer(customer_payload(1))
    assert lost.value.attempts == 1 and tracker.attempts == 1
    assert len(zoho_sim.state()["customers"]) == 1  # it was applied: the caller must look it up


async def test_create_is_retried_after_a_server_error(client, zoho_sim):
    fault_next(zoho_sim, 1, "error_500")
    with client.tracking() as tracker:
        await client.create_customer(customer_payload(1))
    assert [call.http_status for call in tracker.calls] == [500, 201]
    assert len(zoho_sim.state()["customers"]) == 1


async def test_updates_are_retried_after_a_lost_reply(client, zoho_sim):
    cid = (await client.create_customer(customer_payload(1)))["customer_id"]
    fault_next(zoho_sim, 2)
    with client.tracking() as tracker:
        updated = await client.update_customer(cid, {"phone": "1"})
    assert updated["phone"] == "1" and tracker.attempts == 3


async def test_create_adopts_the_customer_an_earlier_lost_reply_created(client, zoho_sim):
    fault_next(zoho_sim, 1)
    with pytest.raises(ResponseLost):
        await client.create_customer(customer_payload(1))
    again = await client.create_customer(customer_payload(1))  # 3062 on its own name: adopt, not rename
    assert [c["customer_id"] for c in zoho_sim.state()["customers"]] == [again["customer_id"]]


async def test_idempotent_helpers_create_each_record_once_despite_lost_replies(client, zoho_sim):
    fault_next(zoho_sim, 1)
    created = await client.create_customer_idempotent(customer_payload(1), "CT-1", "c1@example.com")
    assert [c["customer_id"] for c in zoho_sim.state()["customers"]] == [created["customer_id"]]
    fault_next(zoho_sim, 1)
    invoice = await client.create_invoice_idempotent(invoice_payload(created["customer_id"], "X"), "CI-9")
    same = await client.create_invoice_idempotent(invoice_payload(created["customer_id"], "X"), "CI-9")
    assert same["invoice_id"] == invoice["invoice_id"] and len(zoho_sim.state()["invoices"]) == 1
    assert zoho_sim.duplicates()["customers_by_account_number"] == {}


async def test_delete_after_a_lost_reply_counts_as_deleted(client, zoho_sim):
    cid = (await client.create_customer(customer_payload(1)))["customer_id"]
    iid = (await client.create_invoice(invoice_payload(cid, "CI-1")))["invoice_id"]
    fault_next(zoho_sim, 1)  # applied, reply lost; the retry sees 1002
    assert (await client.delete_invoice(iid))["code"] == 0
    assert zoho_sim.state()["invoices"] == []


async def test_budget_state_reports_limits_and_usage(client):
    await client.create_customer(customer_payload(1))
    state = await client.budget_state()
    assert state["calls_today"] >= 1 and state["daily_limit"] == 100_000
    assert state["configured_rate_per_window"] == 100 and state["paused_until"] is None


async def test_a_duplicate_invoice_number_is_adopted_only_when_its_reference_is_our_source_id(client):
    customer = await client.create_customer(customer_payload(11))
    cid = customer["customer_id"]
    ours = await client.create_invoice(invoice_payload(cid, "INV-77", reference_number="src-77"))
    # The number exists and its reference is ours (a create whose reply was lost): adopted.
    again = await client.create_invoice_idempotent(
        invoice_payload(cid, "INV-77", reference_number="src-77"), "INV-77"
    )
    assert again["invoice_id"] == ours["invoice_id"]
    # Another source invoice with the same number: never adopted, both invoices named in the error.
    with pytest.raises(errors.NotOurs) as refused:
        await client.create_invoice_idempotent(
            invoice_payload(cid, "INV-77", reference_number="src-other"), "INV-77"
        )
    assert ours["invoice_id"] in str(refused.value) and "src-other" in str(refused.value)
    assert len([i async for i in client.iter_invoices()]) == 1
