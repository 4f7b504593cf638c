"""Helpers shared by the Zoho tests: raw HTTP access to a simulator with a valid token."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from connectors.zoho.wire.protocol import ORG_HEADER
from connectors.zoho_sim import SimHandle


def fetch_token(sim: SimHandle, **overrides: str) -> httpx.Response:
    form = {
        "refresh_token": sim.refresh_token,
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "grant_type": "refresh_token",
        **overrides,
    }
    return httpx.post(f"{sim.accounts_url}/oauth/v2/token", data=form)


class RawApi:
    """Plain httpx against the simulator's API, for checking the simulator itself."""

    def __init__(self, sim: SimHandle) -> None:
        self.sim = sim
        self.token = fetch_token(sim).json()["access_token"]
        self.http = httpx.Client(base_url=sim.base_url, timeout=10)

    def headers(self, token: str | None = None, org: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Zoho-oauthtoken {token or self.token}", ORG_HEADER: org or self.sim.org_id}

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
        return self.http.request(method, path, json=body, params=params, headers=self.headers())


@pytest.fixture
def raw_api(zoho_sim: SimHandle) -> RawApi:
    api = RawApi(zoho_sim)
    yield api
    api.http.close()


def customer_payload(n: int | str, **extra: Any) -> dict[str, Any]:
    return {
        "display_name": f"Customer {n}",
        "email": f"c{n}@example.com",
        "custom_fields": [{"label": "Account Number", "value": f"CT-{n}"}],
        **extra,
    }


def invoice_payload(customer_id: str, number: str, **extra: Any) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "date": "2025-03-01",
        "invoice_number": number,
        "invoice_items": [{"name": "Subscription", "price": 100.0, "quantity": 1}],
        **extra,
    }


def fault_next(sim: SimHandle, count: int = 1, fault: str = "lost_response") -> None:
    """Play `fault` on the next `count` accepted API requests of an in-thread simulator."""
    simulator = sim.simulator
    assert simulator is not None
    original = simulator.admit
    remaining = [count]

    def admit(*args: Any) -> Any:
        admission = original(*args)
        if admission.refusal is None and remaining[0] > 0:
            remaining[0] -= 1
            admission.fault = fault
        return admission

    simulator.admit = admit  # type: ignore[method-assign]


@pytest.fixture
def zoho_sim(zoho_sim_factory: Any) -> SimHandle:
    """A simulator that accepts ad-hoc invoice lines: these tests check the client's and the simulator's
    invoice calls, not item references (the strict default runs in tests/e2e/test_status_lifecycle.py)."""
    return zoho_sim_factory(require_product_id=False)
