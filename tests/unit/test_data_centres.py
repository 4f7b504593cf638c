"""Which data centre an address belongs to, and when the API base and a token's api_domain disagree."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.zoho.oauth.data_centres import (
    DATA_CENTRES,
    SCOPES,
    api_base_mismatch,
    data_centre,
    effective_api_base,
)
from connectors.zoho.oauth.grant import Grant, Organization
from connectors.zoho.wire.protocol import DEFAULT_API_BASE
from consumer.jobs.zoho_login import LoginError, api_base_for, choose_organization, mask


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("eu", "eu"),
        ("US", "us"),
        ("https://api-console.zoho.eu/client/1000.X", "eu"),
        ("https://api-console.zoho.com.au/", "au"),
        ("https://api-console.zoho.com/", "us"),
        ("accounts.zohocloud.ca", "ca"),
        ("https://www.zohoapis.com.cn/billing/v1", "cn"),
        ("https://accounts.zoho.sa", "sa"),
        ("https://www.zohoapis.jp", "jp"),
    ],
)
def test_a_data_centre_is_found_from_its_code_or_any_of_its_addresses(text, code):
    centre = data_centre(text)
    assert centre is not None and centre.code == code


@pytest.mark.parametrize("text", ["uk", "https://example.com", "zoho", "https://accounts.zoho.uk"])
def test_an_unknown_address_is_no_data_centre(text):
    assert data_centre(text) is None


@given(st.sampled_from(DATA_CENTRES), st.sampled_from(DATA_CENTRES))
def test_an_api_base_matches_a_token_exactly_when_both_are_one_data_centre(configured, token):
    """An explicit API base must be on the token's centre; the default (US) one follows the token."""
    mismatch = api_base_mismatch(configured.api_base, token.api_domain)
    if configured == token or configured.api_base == DEFAULT_API_BASE:
        assert mismatch is None
    else:
        assert mismatch is not None
        # the fix names the token's centre's settings
        assert f"ZOHO_API_BASE={token.api_base}" in mismatch and token.accounts_url in mismatch


@given(st.sampled_from(DATA_CENTRES))
def test_the_default_api_base_follows_the_tokens_api_domain(token):
    assert effective_api_base(DEFAULT_API_BASE, token.api_domain) == token.api_base


def test_the_scopes_cover_every_module_zoho_cdc_calls():
    modules = {scope.split(".")[1] for scope in SCOPES}
    assert modules == {"customers", "invoices", "items", "payments", "settings"}
    assert all(scope.startswith("ZohoSubscriptions.") for scope in SCOPES)


@given(st.text(min_size=16, max_size=80))
def test_a_masked_secret_never_shows_more_than_its_last_four_characters(secret):
    shown = mask(secret)
    assert shown == "********" + secret[-4:]


def _grant(api_domain: str) -> Grant:
    return Grant(refresh_token="1000.r", access_token="1000.a", api_domain=api_domain, expires_in=3600)


def test_login_takes_the_api_base_from_a_reply_of_the_data_centre_asked_for():
    eu = data_centre("eu")
    assert api_base_for(_grant("https://www.zohoapis.eu"), eu, None) == "https://www.zohoapis.eu/billing/v1"


def test_login_refuses_a_reply_naming_another_data_centre():
    with pytest.raises(LoginError, match="not https://www.zohoapis.com of the US data centre"):
        api_base_for(_grant("https://www.zohoapis.eu"), data_centre("us"), None)
    with pytest.raises(LoginError, match="ZOHO_API_BASE=https://www.zohoapis.in/billing/v1"):
        api_base_for(_grant("https://www.zohoapis.in"), None, "https://www.zohoapis.eu/billing/v1")


def test_login_chooses_the_only_organisation_or_the_one_named_and_asks_when_there_are_several():
    one, two = Organization("1", "One"), Organization("2", "Two")
    assert choose_organization([one], None) == one
    assert choose_organization([one, two], None) is None
    assert choose_organization([one, two], "2") == two
    with pytest.raises(
        LoginError, match=r"organisation 3 is not one this token can see \(1 \(One\), 2 \(Two\)\)"
    ):
        choose_organization([one, two], "3")
    with pytest.raises(LoginError, match="sees no Zoho Billing organisation"):
        choose_organization([], None)
