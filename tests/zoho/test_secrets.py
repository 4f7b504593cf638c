"""Secrets (client secret, refresh token, access tokens) never reach exception text, reprs or logs."""

from __future__ import annotations

import logging

import pytest

from connectors.zoho import AuthError, RefreshTokenRevoked, ZohoClient, ZohoError
from consumer.service.zoho_config import zoho_config
from tests.fixtures_zoho import settings_for
from tests.zoho.conftest import customer_payload


def _assert_clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret and secret not in text


async def test_secrets_stay_out_of_errors_reprs_and_logs(zoho_sim, database_url, caplog):
    caplog.set_level(logging.DEBUG)
    settings = settings_for(zoho_sim, database_url)
    texts: list[str] = []
    async with ZohoClient(zoho_config(settings)) as client:
        await client.create_customer(customer_payload(1))
        access_token = client.auth._token.access_token
        texts += [repr(client), repr(client.config), repr(client.auth), repr(client.auth._token)]
        zoho_sim.set_faults(lost_response=1.0)
        with pytest.raises(ZohoError) as lost:
            await client.create_customer(customer_payload(2))
        texts += [str(lost.value), repr(lost.value)]
        zoho_sim.set_faults(lost_response=0.0)
        zoho_sim.expire_access_tokens()
        zoho_sim.revoke_refresh_token()
        with pytest.raises(RefreshTokenRevoked) as revoked:
            await client.get_customer("1")
        texts += [str(revoked.value), repr(revoked.value)]
    bad = settings_for(zoho_sim, database_url, zoho_client_secret="wrong-secret-value")
    async with ZohoClient(zoho_config(bad)) as client:
        with pytest.raises(AuthError) as refused:
            await client.get_customer("1")
        texts += [str(refused.value), repr(zoho_config(bad))]
    texts.append(caplog.text)
    assert "ZOHO_CLIENT_SECRET" in str(refused.value)
    for text in texts:
        _assert_clean(
            text, zoho_sim.client_secret, zoho_sim.refresh_token, access_token, "wrong-secret-value"
        )
