"""The in-process Zoho of the simulation: the real `ZohoClient` against the real simulator's rules, with
no socket, and what a socket would show (a lost reply, a dropped request, a held reply) raised as the
aiohttp pool raises it. Plain `asyncio.run`: short deadlines stand in for virtual time.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import selectors
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from connectors.zoho import errors
from connectors.zoho.client import ZohoClient
from connectors.zoho_sim.config import SimConfig, SimFaults, SimLimits
from simulation.zoho import InProcessZoho, RefusedByZoho

FAST = {"retry_base_seconds": 0.01, "connect_timeout": 0.05, "read_timeout": 0.1}


def run(scenario: Callable[[InProcessZoho, ZohoClient], Awaitable[Any]], **config: Any) -> Any:
    """Run `scenario` against a fresh seeded Zoho and a client over it; every request settled after."""

    async def main() -> Any:
        zoho = InProcessZoho(SimConfig(seed=config.pop("seed", 11), **config))
        async with zoho.client(random.Random(5), **FAST) as client:
            result = await scenario(zoho, client)
        await zoho.settle()
        assert zoho.failures == []
        return zoho, result

    return asyncio.run(main())


ANN = {"display_name": "Ann", "email": "ann@example.com"}


def test_the_real_client_creates_and_updates_a_customer_in_the_simulator() -> None:
    async def scenario(zoho: InProcessZoho, client: ZohoClient) -> str:
        made = await client.create_customer(ANN)
        await client.update_customer(made["customer_id"], {"display_name": "Ann Lee"})
        return made["customer_id"]

    zoho, customer_id = run(scenario)
    [customer] = zoho.records("customers")
    assert (customer["customer_id"], customer["display_name"]) == (customer_id, "Ann Lee")
    assert zoho.calls().by_endpoint == {"POST /customers 201": 1, "PUT /customers/{id} 200": 1}


def test_a_lost_response_applies_the_create_and_the_client_sees_it_in_doubt() -> None:
    async def scenario(zoho: InProcessZoho, client: ZohoClient) -> None:
        zoho.set_faults(SimFaults(once=[["POST /customers", "lost_response"]]))
        with pytest.raises(errors.ResponseLost):
            await client.create_customer(ANN)

    zoho, _ = run(scenario)
    assert [c["display_name"] for c in zoho.records("customers")] == ["Ann"]
    assert zoho.calls().by_endpoint == {"POST /customers lost-201": 1}


def test_a_lost_response_reaches_the_wire_as_the_error_of_a_connection_lost_mid_reply() -> None:
    async def main() -> None:
        zoho = InProcessZoho(SimConfig(seed=3, faults=SimFaults(once=[["GET /items", "lost_response"]])))
        async with zoho.client(random.Random(1)) as client:
            await client.auth.token()
        pool = zoho.pool()
        token = zoho.sim.accounts.tokens
        headers = {"Authorization": f"Zoho-oauthtoken {next(iter(token))}"}
        headers["X-com-zoho-subscriptions-organizationid"] = zoho.sim.config.organization_id
        with pytest.raises(httpx.ReadError):
            await pool.send(
                "GET", f"{zoho.origin}/billing/v1/items", params=None, body=None, headers=headers, timeouts={}
            )

    asyncio.run(main())


def test_an_applied_502_makes_the_create_and_leaves_the_client_in_doubt() -> None:
    async def scenario(zoho: InProcessZoho, client: ZohoClient) -> None:
        zoho.set_faults(SimFaults(once=[["POST /customers", "applied_502"]]))
        with pytest.raises(errors.ReplyUnreadable):
            await client.create_customer(ANN)

    zoho, _ = run(scenario)
    assert len(zoho.records("customers")) == 1
    assert zoho.calls().by_endpoint == {"POST /customers applied-201-502": 1}


def test_a_dropped_request_is_never_sent_so_the_client_sends_it_again() -> None:
    async def scenario(zoho: InProcessZoho, client: ZohoClient) -> None:
        zoho.set_faults(SimFaults(once=[["POST /customers", "drop_request"]]))
        with client.tracking() as tracker:
            await client.create_customer(ANN)
        return tracker.attempts

    zoho, attempts = run(scenario)
    assert attempts == 2
    assert len(zoho.records("customers")) == 1
    assert zoho.calls().by_endpoint == {"POST /customers 201": 1, "POST /customers dropped": 1}


def test_a_held_reply_times_out_at_the_call_deadline_while_zoho_applies_it() -> None:
    async def scenario(zoho: InProcessZoho, client: ZohoClient) -> float:
        zoho.set_faults(SimFaults(once=[["POST /customers", "timeout"]], timeout_hold=0.5))
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(errors.ResponseLost):
            await client.create_customer(ANN)
        assert zoho.sim.default.in_flight == 1  # Zoho still holds the request the client gave up on
        return loop.time() - started

    zoho, waited = run(scenario)
    assert 0.15 <= waited < 0.4  # the call's deadline (connect + read timeouts), not the 0.5 s hold
    assert len(zoho.records("customers")) == 1
    assert zoho.sim.default.in_flight == 0
    assert zoho.calls().by_endpoint == {"POST /customers 201": 1}  # counted once its reply was written


def test_a_timed_out_read_is_sent_again_and_answered() -> None:
    async def scenario(zoho: InProcessZoho, client: ZohoClient) -> str:
        made = await client.create_customer(ANN)
        zoho.set_faults(SimFaults(once=[["GET /customers/{id}", "timeout"]], timeout_hold=0.3))
        return (await client.get_customer(made["customer_id"]))["display_name"]

    zoho, name = run(scenario)
    assert name == "Ann"
    assert zoho.calls().by_endpoint["GET /customers/{id} 200"] == 2


def test_one_token_serves_many_calls() -> None:
    async def scenario(zoho: InProcessZoho, client: ZohoClient) -> None:
        made = await client.create_customer(ANN)
        await asyncio.gather(*(client.get_customer(made["customer_id"]) for _ in range(20)))

    zoho, _ = run(scenario)
    assert zoho.calls().token_requests == 1
    assert zoho.calls().accepted == 21


def test_the_counters_count_accepted_calls_refusals_and_the_busiest_window() -> None:
    async def scenario(zoho: InProcessZoho, client: ZohoClient) -> None:
        made = await client.create_customer(ANN)
        zoho.set_faults(SimFaults(burst_429=2))
        for _ in range(9):
            await client.get_customer(made["customer_id"])

    limits = SimLimits(per_window=4, window_seconds=0.2, daily=1000)
    zoho, _ = run(scenario, limits=limits)
    calls = zoho.calls()
    assert (calls.accepted, calls.refused_429) == (10, 2)
    assert 1 <= calls.max_in_window <= calls.per_window_limit == 4
    assert calls.last_accepted_at is not None


def test_what_people_do_in_zoho_changes_records_but_is_no_api_call() -> None:
    async def scenario(zoho: InProcessZoho, client: ZohoClient) -> str:
        made = await client.create_customer(ANN)
        before = zoho.calls().accepted
        zoho.edit_customer(made["customer_id"], display_name="Ann Edited")
        zoho.set_customer_status(made["customer_id"], "inactive")
        other = zoho.create_customer(display_name="Bob", email="bob@example.com")
        assert zoho.calls().accepted == before
        with pytest.raises(RefusedByZoho):
            zoho.edit_customer("999", display_name="nobody")
        return other["customer_id"]

    zoho, bob = run(scenario)
    shown = {c["customer_id"]: (c["display_name"], c["status"]) for c in zoho.records("customers")}
    assert list(shown.values()) == [("Ann Edited", "inactive"), ("Bob", "active")]
    assert bob in shown


def test_a_portal_payment_pays_the_invoice_the_client_made() -> None:
    async def scenario(zoho: InProcessZoho, client: ZohoClient) -> dict[str, Any]:
        customer = await client.create_customer(ANN)
        item = await client.create_item({"name": "Line", "rate": 10.0})
        invoice = await client.create_invoice(
            {
                "customer_id": customer["customer_id"],
                "invoice_number": "INV-1",
                "date": "2026-12-01",
                "invoice_items": [{"product_id": item["item_id"], "quantity": 1, "price": 10.0}],
            }
        )
        await client.open_invoice(invoice["invoice_id"])
        return zoho.pay_invoice(invoice["invoice_id"])

    zoho, payment = run(scenario)
    [invoice] = zoho.records("invoices")
    assert invoice["balance"] == 0 and [p["payment_id"] for p in invoice["payments"]] == [
        payment["payment_id"]
    ]
    assert [p["payment_id"] for p in zoho.records("payments")] == [payment["payment_id"]]


def test_one_seed_plays_the_same_faults_and_hands_out_the_same_tokens() -> None:
    def history(seed: int) -> tuple[dict[str, int], list[str]]:
        async def scenario(zoho: InProcessZoho, client: ZohoClient) -> None:
            zoho.set_faults(SimFaults(error_500=0.4))
            for n in range(8):
                await client.create_customer({"display_name": f"C{n}", "email": f"c{n}@example.com"})

        zoho, _ = run(scenario, seed=seed)
        return zoho.calls().by_endpoint, sorted(zoho.sim.accounts.tokens)

    assert history(21) == history(21)
    assert history(21) != history(22)


def test_no_simulator_route_runs_in_a_thread_pool() -> None:
    zoho = InProcessZoho(SimConfig(seed=1))
    sync = [route.path for route in zoho.app.routes if not inspect.iscoroutinefunction(route.endpoint)]
    assert sync == []


def test_the_simulator_reads_the_running_loops_clock() -> None:
    class EpochLoop(asyncio.SelectorEventLoop):
        def wall(self) -> float:
            return 86400.0  # 1970-01-02, the virtual wall clock of `connectors.clock`

    async def scenario() -> dict[str, Any]:
        zoho = InProcessZoho(SimConfig(seed=1))
        async with zoho.client(random.Random(1)) as client:
            return await client.create_customer(ANN)

    with asyncio.Runner(loop_factory=EpochLoop) as runner:
        made = runner.run(scenario())
    assert made["created_time"] == "1970-01-02T00:00:00+0000"


class _SkippingSelector(selectors.DefaultSelector):
    """Waits no real time: a wait for the next timer moves the virtual clock to it instead."""

    now = 1000.0

    def select(self, timeout: float | None = None) -> list:
        if timeout:
            self.now += timeout
        return super().select(0)


class _VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A stand-in for the harness's virtual-time loop: just enough to show the deadlines are the loop's."""

    def __init__(self) -> None:
        self._clock = _SkippingSelector()
        super().__init__(self._clock)

    def time(self) -> float:
        return self._clock.now


def test_on_virtual_time_the_35_second_hold_outlasts_the_12_second_call_deadline() -> None:
    async def scenario() -> tuple[float, InProcessZoho]:
        zoho = InProcessZoho(SimConfig(seed=2))
        zoho.set_faults(SimFaults(once=[["POST /customers", "timeout"]]))
        loop = asyncio.get_running_loop()
        async with zoho.client(random.Random(1)) as client:
            await client.auth.token()
            started = loop.time()
            with pytest.raises(errors.ResponseLost):
                await client.create_customer(ANN)
            waited = loop.time() - started
        await zoho.settle()
        return waited, zoho

    real = time.monotonic()
    with asyncio.Runner(loop_factory=_VirtualTimeLoop) as runner:
        waited, zoho = runner.run(scenario())
    assert waited == pytest.approx(12.0)  # the client's connect + read timeouts, in virtual seconds
    assert time.monotonic() - real < 2.0
    assert zoho.calls().by_endpoint == {"POST /customers 201": 1}  # written, to nobody, 35 s in
