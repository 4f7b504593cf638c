"""Property: under random transient faults, lost replies included, N logical creates through the
idempotent helpers leave exactly N records in Zoho (no duplicates, none missing)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.zoho import MemoryTokenStore, ZohoClient
from consumer.service.zoho_config import zoho_config
from tests.fixtures_zoho import settings_for
from tests.zoho.conftest import customer_payload, invoice_payload


@pytest.fixture
def shared_token_store() -> MemoryTokenStore:
    """One token for every example, as a persisted token would be: a fresh client per example must not
    spend one of the simulator's 10 refreshes per 10 minutes each time."""
    return MemoryTokenStore()


faults = st.fixed_dictionaries(
    {
        "lost_response": st.floats(0, 0.2),
        "drop_request": st.floats(0, 0.1),
        "error_500": st.floats(0, 0.1),
        "error_503": st.floats(0, 0.1),
    }
)


@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(count=st.integers(1, 6), fault_rates=faults, seed=st.integers(0, 2**16))
def test_idempotent_creates_yield_exactly_one_record_per_logical_create(
    zoho_sim, database_url, shared_token_store, count, fault_rates, seed
):
    zoho_sim.reset()
    zoho_sim.simulator.rng.seed(seed)
    zoho_sim.set_faults(**fault_rates)
    config = settings_for(zoho_sim, database_url, zoho_max_attempts=12, zoho_retry_base_seconds=0.01)

    async def run() -> None:
        async with ZohoClient(zoho_config(config), token_store=shared_token_store) as client:

            async def one(n: int) -> None:
                customer = await client.create_customer_idempotent(
                    customer_payload(n), f"CT-{n}", f"c{n}@example.com"
                )
                await client.create_invoice_idempotent(
                    invoice_payload(customer["customer_id"], ""), f"CI-{n}"
                )

            await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(count))), 120)

    asyncio.run(run())
    zoho_sim.set_faults(lost_response=0, drop_request=0, error_500=0, error_503=0)
    state = zoho_sim.state()
    assert sorted(c["custom_fields"][0]["value"] for c in state["customers"]) == sorted(
        f"CT-{n}" for n in range(count)
    )
    assert sorted(i["invoice_number"] for i in state["invoices"]) == sorted(f"CI-{n}" for n in range(count))
    assert zoho_sim.duplicates()["customers_by_account_number"] == {}
