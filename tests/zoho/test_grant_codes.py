"""The simulator's self-client grant codes and organisations list, and the client's one exchange.

Codes live 3 minutes, are single use, 10 per 10 minutes per client; a used, expired or unknown code is
`invalid_code` alike; the refresh token an exchange returns then works like any other.
"""

from __future__ import annotations

import httpx
import pytest

from connectors.zoho.oauth.data_centres import SCOPE_STRING
from connectors.zoho.oauth.grant import GrantCodeRefused, exchange_grant_code, visible_organizations
from connectors.zoho.wire.protocol import ORG_HEADER
from tests.zoho.conftest import fetch_token


async def _exchange(sim, code: str):  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient() as http:
        return await exchange_grant_code(http, sim.accounts_url, sim.client_id, sim.client_secret, code)


async def test_a_grant_code_becomes_a_refresh_token_that_works_for_the_api(zoho_sim):
    issued = zoho_sim.generate_grant_code(SCOPE_STRING)
    assert issued["expires_in"] == 180
    grant = await _exchange(zoho_sim, issued["code"])
    assert grant.api_domain == zoho_sim.url
    assert grant.refresh_token.startswith("1000.") and grant.access_token.startswith("1000.")
    # the refresh token refreshes, and its access token reaches the API
    refreshed = fetch_token(zoho_sim, refresh_token=grant.refresh_token).json()
    async with httpx.AsyncClient() as http:
        reply = await http.get(
            f"{zoho_sim.base_url}/customers",
            headers={
                "Authorization": f"Zoho-oauthtoken {refreshed['access_token']}",
                ORG_HEADER: zoho_sim.org_id,
            },
        )
    assert reply.status_code == 200 and reply.json()["code"] == 0
    assert zoho_sim.stats()["token_requests"] == 2


async def test_a_used_code_is_refused_with_the_three_causes_and_make_a_new_one(zoho_sim):
    code = zoho_sim.generate_grant_code(SCOPE_STRING)["code"]
    await _exchange(zoho_sim, code)
    with pytest.raises(GrantCodeRefused) as refused:
        await _exchange(zoho_sim, code)
    sentence = str(refused.value)
    for cause in ("already used", "older than its 3 minutes", "another data centre", "make a new one"):
        assert cause in sentence


async def test_an_expired_code_is_refused_alike(zoho_sim):
    code = zoho_sim.generate_grant_code(SCOPE_STRING)["code"]
    zoho_sim.expire_grant_codes()
    with pytest.raises(GrantCodeRefused, match="make a new one"):
        await _exchange(zoho_sim, code)
    # and no refresh token came of it
    assert zoho_sim.stats()["tokens_issued"] == 0


async def test_a_code_from_another_data_centre_is_unknown_here(zoho_sim, zoho_sim_factory):
    elsewhere = zoho_sim_factory()
    code = elsewhere.generate_grant_code(SCOPE_STRING)["code"]
    with pytest.raises(GrantCodeRefused, match="another data centre"):
        await _exchange(zoho_sim, code)


def test_ten_codes_per_ten_minutes_then_access_denied(zoho_sim):
    codes = [zoho_sim.generate_grant_code(SCOPE_STRING) for _ in range(10)]
    assert all("code" in c for c in codes) and len({c["code"] for c in codes}) == 10
    assert zoho_sim.generate_grant_code(SCOPE_STRING) == {"error": "access_denied"}


async def test_the_organisations_list_shows_every_organisation_the_token_sees(zoho_sim_factory):
    sim = zoho_sim_factory(other_organization_ids=("20099001",), organization_name="First books")
    token = fetch_token(sim).json()["access_token"]
    async with httpx.AsyncClient() as http:
        orgs = await visible_organizations(http, sim.base_url, token)
    assert [o.organization_id for o in orgs] == [sim.org_id, "20099001"]
    assert [o.name for o in orgs] == ["First books", "Organisation 20099001"]
    # without a token: 401, like any API call
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{sim.base_url}/organizations")).status_code == 401


def test_a_custom_field_the_organisation_does_not_define_is_not_kept(zoho_sim_factory):
    sim = zoho_sim_factory(customer_custom_fields=("Account No",))
    token = fetch_token(sim).json()["access_token"]
    headers = {"Authorization": f"Zoho-oauthtoken {token}", ORG_HEADER: sim.org_id}
    body = {
        "display_name": "Hand made",
        "custom_fields": [
            {"label": "Account Number", "value": "A-1"},
            {"label": "Account No", "value": "A-1"},
        ],
    }
    created = httpx.post(f"{sim.base_url}/customers", json=body, headers=headers).json()["customer"]
    assert [f["label"] for f in created["custom_fields"]] == ["Account No"]
