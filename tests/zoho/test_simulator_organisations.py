"""Several organisations in one simulator: each with its own records, ids and counters, as in Zoho.

Billing names the organisation in the `X-com-zoho-subscriptions-organizationid` header (the spec's
required `organization_id` header parameter); Books' `organization_id` query parameter is not Billing's.
"""

from __future__ import annotations

import httpx

from connectors.zoho.wire.protocol import ORG_HEADER
from tests.zoho.conftest import RawApi, customer_payload, invoice_payload

OTHER = "20468013"


def _call(api: RawApi, org: str, method: str, path: str, body: object = None) -> httpx.Response:
    return api.http.request(method, path, json=body, headers=api.headers(org=org))


def test_each_organisation_has_its_own_records_ids_and_counters(zoho_sim_factory) -> None:
    sim = zoho_sim_factory(other_organization_ids=(OTHER,), require_product_id=False)
    api = RawApi(sim)
    first = _call(api, sim.org_id, "POST", "/customers", customer_payload(1)).json()["customer"]
    other = _call(api, OTHER, "POST", "/customers", customer_payload(1)).json()["customer"]
    assert first["customer_id"] != other["customer_id"]  # the same payload, two records, two ids
    # A record of one organisation does not exist in the other, by id or in a listing.
    missing = _call(api, OTHER, "GET", f"/customers/{first['customer_id']}")
    assert missing.status_code == 404 and missing.json()["code"] == 1002
    listed = _call(api, OTHER, "GET", "/customers").json()["customers"]
    assert [c["customer_id"] for c in listed] == [other["customer_id"]]
    # Invoices of the other organisation only take its own customers, and number on their own.
    refused = _call(api, OTHER, "POST", "/invoices", invoice_payload(first["customer_id"], "INV-1"))
    assert refused.status_code != 201
    made = _call(api, OTHER, "POST", "/invoices", invoice_payload(other["customer_id"], "INV-1"))
    assert made.status_code == 201
    assert [c["customer_id"] for c in sim.state()["customers"]] == [first["customer_id"]]
    assert sim.state()["invoices"] == []
    assert len(sim.state(OTHER)["invoices"]) == 1
    # Counters per organisation: the first saw one create; the other its create, read, list, two posts.
    assert sim.stats()["calls"] == {"POST /customers 201": 1}
    assert sim.stats(OTHER)["calls"]["POST /customers 201"] == 1
    assert sim.stats(OTHER)["requests"] == 5
    assert sim.stats()["organization_id"] == sim.org_id and sim.stats(OTHER)["organization_id"] == OTHER


def test_limits_are_per_organisation(zoho_sim_factory) -> None:
    from tests.fixtures_zoho import sim_config

    limits = sim_config().limits
    limits.per_window, limits.window_seconds = 3, 60.0
    sim = zoho_sim_factory(other_organization_ids=(OTHER,), limits=limits)
    api = RawApi(sim)
    assert [_call(api, sim.org_id, "GET", "/customers").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert _call(api, OTHER, "GET", "/customers").status_code == 200  # its own window


def test_an_organisation_the_user_does_not_belong_to_is_refused_as_zoho_refuses_it(zoho_sim_factory) -> None:
    sim = zoho_sim_factory(other_organization_ids=(OTHER,))
    api = RawApi(sim)
    reply = _call(api, "31000000", "GET", "/customers")
    assert reply.status_code == 400 and reply.json()["code"] == 6041
    assert "31000000" in reply.json()["message"]
    # Billing reads the header only: Books' query parameter names no organisation here.
    no_header = api.http.get(
        "/customers",
        params={"organization_id": OTHER},
        headers={"Authorization": f"Zoho-oauthtoken {api.token}"},
    )
    assert no_header.status_code == 400 and no_header.json()["code"] == 6041
    assert httpx.get(f"{sim.url}/__sim__/stats", params={"organization_id": "31000000"}).status_code == 404


def test_organisations_added_later_are_served_and_ids_never_cross(zoho_sim) -> None:
    api = RawApi(zoho_sim)
    assert _call(api, OTHER, "GET", "/customers").status_code == 400
    zoho_sim.set_config(other_organization_ids=[OTHER])
    made = _call(api, OTHER, "POST", "/customers", customer_payload(7)).json()["customer"]
    mine = _call(api, zoho_sim.org_id, "POST", "/customers", customer_payload(7)).json()["customer"]
    assert made["customer_id"] != mine["customer_id"]
    assert (
        api.http.get(
            f"/customers/{made['customer_id']}", headers={**api.headers(), ORG_HEADER: zoho_sim.org_id}
        ).status_code
        == 404
    )
    zoho_sim.reset()  # a wipe empties every organisation
    assert zoho_sim.state(OTHER)["customers"] == [] and zoho_sim.stats(OTHER)["requests"] == 0


def test_the_command_serves_the_organisations_it_is_given() -> None:
    from connectors.zoho_sim.server import start_subprocess

    handle = start_subprocess(None, "--other-org-id", OTHER)
    try:
        api = RawApi(handle)
        assert _call(api, OTHER, "POST", "/customers", customer_payload(1)).status_code == 201
        assert _call(api, "31000000", "GET", "/customers").status_code == 400
        assert handle.stats(OTHER)["calls"] == {"POST /customers 201": 1}
        assert handle.state()["customers"] == []
    finally:
        handle.stop()
