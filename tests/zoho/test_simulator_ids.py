"""The simulator never hands out an id twice, even across a wipe (as Zoho never does)."""

from __future__ import annotations

import pytest

from connectors.zoho.client import ZohoClient
from connectors.zoho.errors import NotFound
from consumer.service.zoho_config import zoho_config
from tests.fixtures_zoho import settings_for
from tests.zoho.conftest import customer_payload


async def test_an_id_from_before_a_wipe_is_not_found_afterwards_never_someone_elses_record(
    zoho_sim, database_url
) -> None:
    async with ZohoClient(zoho_config(settings_for(zoho_sim, database_url))) as client:
        old = (await client.create_customer(customer_payload(1)))["customer_id"]
        zoho_sim.reset()
        new = (await client.create_customer(customer_payload(2)))["customer_id"]
        assert new != old
        with pytest.raises(NotFound):
            await client.get_customer(old)
