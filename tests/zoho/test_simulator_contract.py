"""The simulator answers as the reference says Zoho Billing does (statuses, envelopes, codes, pages)."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from connectors.zoho_sim import SimConfig, SimFaults, SimLimits, run_in_thread, start_subprocess
from tests.zoho.conftest import RawApi, customer_payload, fetch_token, invoice_payload


def test_token_reply_has_zoho_shape(zoho_sim):
    reply = fetch_token(zoho_sim)
    body = reply.json()
    assert reply.status_code == 200
    assert re.fullmatch(r"1000\.[0-9a-f]{32}\.[0-9a-f]{32}", body["access_token"])
    assert body["expires_in"] == 3600 and body["token_type"] == "Bearer"
    assert body["api_domain"].startswith("http://127.0.0.1:")


def test_unknown_refresh_token_gives_invalid_code_under_http_200(zoho_sim):
    reply = fetch_token(zoho_sim, refresh_token="1000.nope.nope")
    assert (reply.status_code, reply.json()) == (200, {"error": "invalid_code"})


def test_token_endpoint_rejects_json_bodies(zoho_sim):
    reply = httpx.post(f"{zoho_sim.accounts_url}/oauth/v2/token", json={"grant_type": "refresh_token"})
    assert reply.status_code == 400 and "JSON" in reply.json()["error"]


def test_eleventh_refresh_in_the_window_is_access_denied_and_blocks(zoho_sim):
    for _ in range(10):
        assert "access_token" in fetch_token(zoho_sim).json()
    refused = fetch_token(zoho_sim)
    assert refused.status_code == 400
    assert refused.json() == {
        "error_description": "You have made too many requests continuously."
        " Please try again after some time.",
        "error": "Access Denied",
        "status": "failure",
    }
    assert zoho_sim.stats()["token_refusals"] == 1


def test_oldest_access_token_stops_working_beyond_the_active_limit(zoho_sim_factory):
    sim = zoho_sim_factory(max_active_tokens=2)
    first, second, third = (fetch_token(sim).json()["access_token"] for _ in range(3))
    api = RawApi(sim)  # a fourth token; now only third and fourth are active
    assert api.http.get("/customers", headers=api.headers(first)).status_code == 401
    assert api.http.get("/customers", headers=api.headers(second)).status_code == 401
    assert api.http.get("/customers", headers=api.headers(third)).status_code == 200


def test_bad_or_expired_token_gives_401_code_57(zoho_sim_factory):
    sim = zoho_sim_factory(token_lifetime=0.2)
    api = RawApi(sim)
    reply = api.http.get("/customers", headers=api.headers("1000.bad.bad"))
    assert reply.status_code == 401 and reply.json()["code"] == 57
    time.sleep(0.3)
    assert api.call("GET", "/customers").status_code == 401


def test_missing_or_wrong_organisation_header_is_a_400_with_a_code(raw_api):
    reply = raw_api.http.get("/customers", headers={"Authorization": f"Zoho-oauthtoken {raw_api.token}"})
    assert reply.status_code == 400 and reply.json()["code"] == 6041
    reply = raw_api.http.get("/customers", headers=raw_api.headers(org="999"))
    assert reply.status_code == 400 and reply.json()["code"] == 6041


def test_customer_crud_envelopes(raw_api):
    created = raw_api.call("POST", "/customers", customer_payload(1))
    assert created.status_code == 201
    body = created.json()
    assert body["code"] == 0 and body["message"] == "The customer has been created"
    customer = body["customer"]
    assert customer["customer_id"].isdigit() and customer["status"] == "active"
    assert customer["custom_fields"][0]["label"] == "Account Number"
    cid = customer["customer_id"]
    got = raw_api.call("GET", f"/customers/{cid}").json()
    assert got["code"] == 0 and got["customer"]["email"] == "c1@example.com"
    updated = raw_api.call("PUT", f"/customers/{cid}", {"phone": "123"}).json()
    assert (
        updated["message"] == "The customer details have been updated."
        and updated["customer"]["phone"] == "123"
    )
    inactive = raw_api.call("POST", f"/customers/{cid}/markasinactive").json()
    assert inactive == {"code": 0, "message": "The customer has been marked as inactive."}
    assert raw_api.call("GET", f"/customers/{cid}").json()["customer"]["status"] == "inactive"
    active = raw_api.call("POST", f"/customers/{cid}/markasactive").json()
    assert active == {"code": 0, "message": "The customer has been marked as active."}
    deleted = raw_api.call("DELETE", f"/customers/{cid}").json()
    assert deleted == {"code": 0, "message": "The customer has been deleted."}
    missing = raw_api.call("GET", f"/customers/{cid}")
    assert missing.status_code == 404 and missing.json() == {
        "code": 1002,
        "message": "Customer does not exist.",
    }


def test_customer_validation_codes(raw_api):
    bad_email = raw_api.call("POST", "/customers", customer_payload(1, email="not-an-email"))
    assert (
        bad_email.status_code == 400
        and bad_email.json()["code"] != 0
        and "email" in bad_email.json()["message"]
    )
    no_name = raw_api.call("POST", "/customers", {"email": "a@b.co"})
    assert no_name.status_code == 400 and "display_name" in no_name.json()["message"]
    assert raw_api.call("POST", "/customers", {"display_name": "No Email"}).status_code == 201
    raw_api.call("POST", "/customers", customer_payload(2))
    clash = raw_api.call("POST", "/customers", customer_payload(2, email="other@example.com"))
    assert clash.status_code == 400
    assert clash.json() == {
        "code": 3062,
        "message": 'The customer "Customer 2" already exists. Please specify a different name.',
    }


def test_email_can_be_required_by_configuration(zoho_sim_factory):
    api = RawApi(zoho_sim_factory(require_email=True))
    assert api.call("POST", "/customers", {"display_name": "No Email"}).status_code == 400


def test_customer_list_pages_and_filters(raw_api):
    for n in range(5):
        raw_api.call("POST", "/customers", customer_payload(n))
    page = raw_api.call("GET", "/customers", page=2, per_page=2).json()
    assert page["code"] == 0 and page["message"] == "success"
    assert [c["display_name"] for c in page["customers"]] == ["Customer 2", "Customer 3"]
    assert page["page_context"]["page"] == 2 and page["page_context"]["has_more_page"] is True
    last = raw_api.call("GET", "/customers", page=3, per_page=2).json()
    assert len(last["customers"]) == 1 and last["page_context"]["has_more_page"] is False
    by_email = raw_api.call("GET", "/customers", email="C3@example.com").json()["customers"]
    assert [c["display_name"] for c in by_email] == ["Customer 3"]
    by_account = raw_api.call("GET", "/customers", cf_account_number="CT-4").json()["customers"]
    assert [c["cf_account_number"] for c in by_account] == ["CT-4"]


def test_invoice_number_is_kept_only_with_ignore_auto_number_generation(raw_api):
    cid = raw_api.call("POST", "/customers", customer_payload(1)).json()["customer"]["customer_id"]
    kept = raw_api.call(
        "POST", "/invoices", invoice_payload(cid, "CI-1"), ignore_auto_number_generation="true", send="false"
    )
    assert kept.status_code == 201
    assert kept.json()["message"] == "The invoice has been created."
    invoice = kept.json()["invoice"]
    assert invoice["invoice_number"] == "CI-1" and invoice["status"] == "draft" and invoice["total"] == 100.0
    auto = raw_api.call("POST", "/invoices", invoice_payload(cid, "CI-1"), send="true").json()["invoice"]
    assert auto["invoice_number"].startswith("INV-") and auto["status"] == "sent"
    duplicate = raw_api.call(
        "POST", "/invoices", invoice_payload(cid, "CI-1"), ignore_auto_number_generation="true"
    )
    assert duplicate.status_code == 400
    assert duplicate.json() == {"code": 1001, "message": 'Invoice "CI-1" already exists.'}


def test_invoice_lifecycle_and_list_filters(raw_api):
    cid = raw_api.call("POST", "/customers", customer_payload(1)).json()["customer"]["customer_id"]
    ids = []
    for n in range(3):
        reply = raw_api.call(
            "POST", "/invoices", invoice_payload(cid, f"CI-{n}"), ignore_auto_number_generation="true"
        )
        ids.append(reply.json()["invoice"]["invoice_id"])
    updated = raw_api.call(
        "PUT", f"/invoices/{ids[0]}", {"invoice_items": [{"name": "x", "rate": 5, "quantity": 3}]}
    ).json()
    assert (
        updated["message"] == "Invoice information has been updated." and updated["invoice"]["total"] == 15.0
    )
    voided = raw_api.call("POST", f"/invoices/{ids[1]}/void").json()
    assert voided == {"code": 0, "message": "Invoice status has been changed to Void."}
    listed = raw_api.call("GET", "/invoices", filter_by="Status.Void").json()
    assert [i["number"] for i in listed["invoices"]] == ["CI-1"]
    by_number = raw_api.call("GET", "/invoices", invoice_number="CI-2").json()["invoices"]
    assert [i["invoice_id"] for i in by_number] == [ids[2]]
    assert len(raw_api.call("GET", "/invoices", customer_id=cid).json()["invoices"]) == 3
    deleted = raw_api.call("DELETE", f"/invoices/{ids[2]}").json()
    assert deleted == {"code": 0, "message": "The invoice has been deleted."}
    missing = raw_api.call("GET", f"/invoices/{ids[2]}")
    assert missing.status_code == 404 and missing.json()["code"] == 1002


def test_rate_daily_and_concurrency_limits_answer_429_with_zoho_bodies(zoho_sim_factory):
    sim = zoho_sim_factory(limits=SimLimits(per_window=3, window_seconds=60, daily=1000))
    api = RawApi(sim)
    statuses = [api.call("GET", "/customers").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = api.call("GET", "/customers")
    assert refused.json()["code"] == 44 and "retry-after" not in refused.headers
    sim.set_limits(per_window=100, daily=3, retry_after=7)
    daily = api.call("GET", "/customers")
    assert daily.status_code == 429 and daily.json() == {
        "code": 45,
        "message": "The API call for this organization has exceeded the maximum call rate limit of 3.",
    }
    assert daily.headers["retry-after"] == "7"


async def test_concurrency_limit_answers_1070(zoho_sim_factory):
    sim = zoho_sim_factory(limits=SimLimits(concurrency=2, window_seconds=1), faults=SimFaults(latency=0.5))
    api = RawApi(sim)
    import asyncio

    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        replies = await asyncio.gather(*(http.get("/customers", headers=api.headers()) for _ in range(4)))
    codes = sorted(r.json()["code"] for r in replies)
    assert codes == [0, 0, 1070, 1070]
    assert all(r.status_code == 429 for r in replies if r.json()["code"] == 1070)


def test_lost_response_applies_the_change_but_the_client_sees_a_connection_error(zoho_sim):
    api = RawApi(zoho_sim)
    zoho_sim.set_faults(lost_response=1.0)
    with pytest.raises(httpx.TransportError):
        api.call("POST", "/customers", customer_payload(1))
    zoho_sim.set_faults(lost_response=0.0)
    assert [c["display_name"] for c in zoho_sim.state()["customers"]] == ["Customer 1"]


def test_dropped_request_is_not_applied(zoho_sim):
    api = RawApi(zoho_sim)
    zoho_sim.set_faults(drop_request=1.0)
    with pytest.raises(httpx.TransportError):
        api.call("POST", "/customers", customer_payload(1))
    assert zoho_sim.state()["customers"] == []


def test_injected_server_errors_and_burst_429(zoho_sim):
    api = RawApi(zoho_sim)
    zoho_sim.set_faults(error_500=1.0)
    assert api.call("GET", "/customers").status_code == 500
    zoho_sim.set_faults(error_500=0.0, error_503=1.0)
    assert api.call("GET", "/customers").status_code == 503
    zoho_sim.set_faults(error_503=0.0, burst_429=2)
    assert [api.call("GET", "/customers").status_code for _ in range(3)] == [429, 429, 200]


def test_token_refusal_window_refuses_then_recovers(zoho_sim_factory):
    sim = zoho_sim_factory(token_refresh_limit=100)
    sim.set_faults(token_refusal_seconds=0.3)
    assert fetch_token(sim).json()["error"] == "Access Denied"
    time.sleep(0.35)
    assert "access_token" in fetch_token(sim).json()


def test_admin_reports_duplicates_by_natural_key(zoho_sim):
    sim = zoho_sim
    sim.set_config(unique_display_names=False)
    api = RawApi(sim)
    api.call("POST", "/customers", customer_payload(1))
    api.call("POST", "/customers", customer_payload(1))
    duplicates = sim.duplicates()
    assert list(duplicates["customers_by_account_number"]) == ["CT-1"]
    sim.reset()
    assert sim.state()["customers"] == [] and sim.stats()["requests"] == 0


def test_records_survive_a_restart_with_a_sqlite_file(tmp_path):
    config = SimConfig(db_path=str(tmp_path / "sim.db"))
    first = run_in_thread(config)
    try:
        RawApi(first).call("POST", "/customers", customer_payload(1))
    finally:
        first.stop()
    second = run_in_thread(SimConfig(db_path=str(tmp_path / "sim.db")))
    try:
        api = RawApi(second)
        assert [c["display_name"] for c in second.state()["customers"]] == ["Customer 1"]
        assert (
            api.call("POST", "/customers", customer_payload(2)).json()["customer"]["customer_id"]
            != (second.state()["customers"][0]["customer_id"])
        )
    finally:
        second.stop()


def test_cli_starts_a_simulator_process():
    from connectors.zoho_sim import start_subprocess

    handle = start_subprocess(None, "--rate-per-window", "7", "--seed", "1")
    try:
        api = RawApi(handle)
        assert api.call("POST", "/customers", customer_payload(1)).status_code == 201
        assert handle._admin("GET", "limits")["per_window"] == 7
    finally:
        handle.stop()


def test_applied_502_applies_a_write_then_answers_a_gateways_html_page(zoho_sim):
    api = RawApi(zoho_sim)
    zoho_sim.set_faults(applied_502=1.0)
    reply = api.call("POST", "/customers", customer_payload(1))
    assert reply.status_code == 502 and reply.headers["content-type"].startswith("text/html")
    assert "code" not in reply.text  # no Zoho envelope: nothing in it says what Zoho did
    listed = api.call("GET", "/customers")  # a read has nothing to apply: never this fault
    assert listed.status_code == 200 and [c["display_name"] for c in listed.json()["customers"]] == [
        "Customer 1"
    ]
    zoho_sim.set_faults(applied_502=0.0)
    assert zoho_sim.stats()["calls"]["POST /customers applied-201-502"] == 1


def test_the_applied_502_fault_is_a_command_line_option_seeded_like_the_others():
    sim = start_subprocess(None, "--fault-applied-502", "0.5", "--seed", "7")
    try:
        assert sim._admin("GET", "faults")["applied_502"] == 0.5
        api = RawApi(sim)
        replies = [api.call("POST", "/customers", customer_payload(n)).status_code for n in range(12)]
        assert set(replies) == {201, 502}  # half, by the seeded dice
        assert len(sim.state()["customers"]) == 12  # every one applied, whatever the answer
    finally:
        sim.stop()


def test_a_portal_payment_follows_the_payment_rules_and_is_no_api_call(zoho_sim, raw_api):
    cid = raw_api.call("POST", "/customers", customer_payload(7)).json()["customer"]["customer_id"]
    made = raw_api.call(
        "POST", "/invoices", invoice_payload(cid, "PP-1"), ignore_auto_number_generation="true"
    )
    invoice_id = made.json()["invoice"]["invoice_id"]
    calls = zoho_sim.stats()["requests"]
    # A draft cannot be paid, in the portal as through POST /payments.
    with pytest.raises(httpx.HTTPStatusError) as refused:
        zoho_sim.pay_in_portal(invoice_id)
    assert refused.value.response.json()["message"] == "Payments cannot be applied to draft invoices."
    raw_api.call("POST", f"/invoices/{invoice_id}/converttoopen")
    calls = zoho_sim.stats()["requests"]
    part = zoho_sim.pay_in_portal(invoice_id, 40)
    assert part["payment"]["invoices"][0]["amount_applied"] == 40.0
    invoice = raw_api.call("GET", f"/invoices/{invoice_id}").json()["invoice"]
    assert (invoice["status"], invoice["balance"]) == ("partially_paid", 60.0)
    with pytest.raises(httpx.HTTPStatusError):  # more than the balance
        zoho_sim.pay_in_portal(invoice_id, 61)
    zoho_sim.pay_in_portal(invoice_id)  # the rest
    invoice = raw_api.call("GET", f"/invoices/{invoice_id}").json()["invoice"]
    assert (invoice["status"], invoice["balance"]) == ("paid", 0.0)
    assert [p["amount"] for p in invoice["payments"]] == [40.0, 60.0]
    # Only the two GETs above reached the API: the portal's payments are not calls of the client.
    assert zoho_sim.stats()["requests"] == calls + 2


def test_a_customer_marked_inactive_by_hand_is_no_api_call(zoho_sim, raw_api):
    cid = raw_api.call("POST", "/customers", customer_payload(8)).json()["customer"]["customer_id"]
    calls = zoho_sim.stats()["requests"]
    zoho_sim.mark_customer_by_hand(cid, "inactive")
    assert zoho_sim.stats()["requests"] == calls
    assert raw_api.call("GET", f"/customers/{cid}").json()["customer"]["status"] == "inactive"
