"""The time a call waits for the rate window is not charged to its retries (`ZOHO_RETRY_MAX_SECONDS`).

Found by the simulation (category "missing": seeds 669, 267, 33 and others): with calls queued behind a
full window, a call got its slot after more than the retry budget, so its first transient error (a 500,
a lost reply to a read, a 429) was not retried at all: the record was dead-lettered after one to three
attempts as "retries exhausted", and its invoices with it. The window's wait is the organisation's own
pacing, as the daily budget's is: neither says anything about Zoho failing.

The real `ZohoClient` against the in-process simulator, on the simulation's virtual-time loop.
"""

from __future__ import annotations

import random
from typing import Any

from connectors.zoho_sim.config import SimConfig, SimFaults, SimLimits
from simulation.loop import run
from simulation.zoho import InProcessZoho

PER_WINDOW = 2
BUDGET = 30.0  # seconds of retries, half the window


def test_a_call_that_queued_longer_than_the_retry_budget_still_retries_a_500() -> None:
    async def listed(client: Any) -> list[dict[str, Any]]:
        return [customer async for customer in client.iter_customers()]

    async def scenario() -> tuple[list[dict[str, Any]], float, InProcessZoho]:
        limits = SimLimits(per_window=PER_WINDOW, window_seconds=60.0, daily=1000, concurrency=5)
        zoho = InProcessZoho(SimConfig(seed=3, limits=limits))
        async with zoho.client(random.Random(1), retry_max_seconds=BUDGET, rate_pacing="even") as client:
            for _ in range(PER_WINDOW):  # the window is full
                await listed(client)
            zoho.set_faults(SimFaults(once=[["GET /customers", "error_500"]]))
            started = client.window._now()
            found = await listed(client)  # queues past the budget, then Zoho answers 500 once
            waited = client.window._now() - started
        await zoho.settle()
        return found, waited, zoho

    found, waited, zoho = run(scenario())

    assert found == []
    assert waited > BUDGET
    assert zoho.calls().by_endpoint.get("GET /customers 500") == 1
    assert zoho.calls().by_endpoint.get("GET /customers 200") == PER_WINDOW + 1  # retried, answered
