"""Doctor's Zoho lines that need no Kafka: the default item and the account-number custom field, read
from records zoho-cdc did not create (made in Zoho by hand), with GET requests only."""

from __future__ import annotations

import httpx

from connectors.zoho.wire.protocol import ORG_HEADER
from consumer.jobs.doctor.zoho import zoho_checks
from consumer.migrations import migrate
from tests.zoho.conftest import fetch_token


async def by_name(settings):  # type: ignore[no-untyped-def]
    return {c.name: c for c in await zoho_checks(settings)}


async def made_in_zoho(sim, path: str, body: dict) -> dict:  # type: ignore[type-arg]
    """A record someone made in Zoho, not zoho-cdc."""
    token = fetch_token(sim).json()["access_token"]
    headers = {"Authorization": f"Zoho-oauthtoken {token}", ORG_HEADER: sim.org_id}
    async with httpx.AsyncClient() as http:
        reply = await http.post(f"{sim.base_url}{path}", json=body, headers=headers)
    assert reply.status_code == 201, reply.text
    return reply.json()


async def test_the_default_item_exists_will_be_created_or_is_a_wrong_id(
    database_url, zoho_sim, zoho_settings
):
    migrate(database_url)
    assert (await by_name(zoho_settings))["default item"].detail == (
        "'Invoice line' does not exist yet: zoho-cdc creates it for the first line without a code"
    )
    item = (await made_in_zoho(zoho_sim, "/items", {"name": "Invoice line", "rate": 0}))["item"]
    found = (await by_name(zoho_settings))["default item"]
    assert found.state == "ok" and item["item_id"] in found.detail
    wrong = (await by_name(zoho_settings.model_copy(update={"zoho_default_item_id": "90300000999"})))[
        "default item"
    ]
    assert (
        wrong.state == "fail"
        and "ZOHO_DEFAULT_ITEM_ID=90300000999 is not an item of this organisation" in (wrong.detail)
    )
    calls = zoho_sim.stats()["calls"]
    assert [k for k in calls if not k.startswith("GET ")] == ["POST /items 201"]  # the test's own, no other


async def test_the_custom_field_is_read_on_a_customer_made_by_hand_or_said_cannot_check(
    database_url, zoho_sim, zoho_settings
):
    migrate(database_url)
    empty = (await by_name(zoho_settings))["account-number field"]
    assert empty.state == "unknown" and empty.detail.startswith(
        "cannot check: the organisation has no customer"
    )
    await made_in_zoho(
        zoho_sim,
        "/customers",
        {"display_name": "By hand", "custom_fields": [{"label": "Account Number", "value": "CT-9"}]},
    )
    seen = (await by_name(zoho_settings))["account-number field"]
    assert seen.state == "ok" and "'Account Number'" in seen.detail
    # a label that customer does not carry: not zoho-cdc's record, so no verdict, and said why
    other = await by_name(zoho_settings.model_copy(update={"zoho_account_number_field": "Acct No"}))
    line = other["account-number field"]
    assert line.state == "unknown" and "not written by zoho-cdc" in line.detail
