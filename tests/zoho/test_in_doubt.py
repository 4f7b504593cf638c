"""Writes in doubt are settled from what Zoho holds before anything is sent again (issue 22, item 3).

Each test plays the simulator's `applied_502` fault once on one write: Zoho applies it, then a gateway
answers with an HTML 502. The applier (real client, real PostgreSQL store for intents) must read Zoho and
settle: one record, one payment, one status call, no refusal. Calls are counted on the simulator's own
counters, then a quiet period checks nothing more is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from connectors.zoho import InDoubt, ReplyUnreadable, TransientError, ZohoClient
from connectors.zoho.wire.protocol import error_from_reply
from connectors.zoho_sim import SimHandle
from consumer.migrations import migrate
from consumer.model.events import EntityType
from consumer.model.plan import Action, Plan
from consumer.pipeline.durability.store import SyncStore
from consumer.pipeline.effects.apply import ApplyOptions, ZohoApplier
from consumer.service.zoho_config import zoho_config
from tests.fixtures_zoho import settings_for
from tests.zoho.conftest import customer_payload

QUIET_SECONDS = 1.5
GATEWAY_502 = "applied_502"


@pytest.fixture
def strict_sim(zoho_sim_factory: Any) -> SimHandle:
    """The simulator as strict as the spec: every invoice line names a Zoho item."""
    return zoho_sim_factory()


@pytest.fixture
async def applier(strict_sim: SimHandle, database_url: str) -> AsyncIterator[ZohoApplier]:
    migrate(database_url)
    settings = settings_for(strict_sim, database_url)
    async with SyncStore(database_url) as store, ZohoClient(zoho_config(settings)) as client:
        yield ZohoApplier(client, store, ApplyOptions())


def _writes(sim: SimHandle) -> dict[str, int]:
    """Every non-GET request the simulator received, by endpoint and outcome ("applied-201-502": applied,
    then answered by the gateway)."""
    return {call: n for call, n in sim.stats()["calls"].items() if not call.startswith("GET ")}


async def _quiet(sim: SimHandle, writes: dict[str, int]) -> None:
    await asyncio.sleep(QUIET_SECONDS)
    assert _writes(sim) == writes, "writes kept coming after the work was done"


def _customer_row(n: int) -> dict[str, Any]:
    return {"id": f"c{n}", "account_number": f"CT-{n}", "email": f"c{n}@example.com"}


def _invoice_row(n: int) -> dict[str, Any]:
    return {"id": f"i{n}", "invoice_number": f"INV-D-{n}"}


def _invoice_payload(customer_id: str, n: int) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "date": "2026-11-01",
        "due_date": "2026-11-30",
        "reference_number": f"i{n}",
        "invoice_items": [{"description": "Fibre", "rate": 172.5, "quantity": 1}],
    }


async def _customer(applier: ZohoApplier, n: int) -> str:
    plan = Plan(Action.CREATE_CUSTOMER, customer_payload(n), "h", "test", status="active")
    applied = await applier.apply(EntityType.CUSTOMER, f"c{n}", plan, _customer_row(n), None)
    assert applied.zoho_id is not None
    return applied.zoho_id


async def _invoice(applier: ZohoApplier, customer_id: str, n: int, status: str) -> str:
    plan = Plan(Action.CREATE_INVOICE, _invoice_payload(customer_id, n), "h", "test", status=status)
    applied = await applier.apply(EntityType.INVOICE, f"i{n}", plan, _invoice_row(n), None)
    assert applied.zoho_id is not None and applied.zoho_status == status
    return applied.zoho_id


async def test_a_customer_create_applied_then_502_is_found_not_made_again(applier, strict_sim):
    strict_sim.set_faults(once=[["POST /customers", GATEWAY_502]])
    customer_id = await _customer(applier, 1)
    [customer] = strict_sim.state()["customers"]
    assert customer["customer_id"] == customer_id
    writes = _writes(strict_sim)
    assert writes == {"POST /customers applied-201-502": 1}  # found by account number, never re-sent
    await _quiet(strict_sim, writes)


async def test_an_invoice_and_its_item_created_then_502_are_each_found_not_made_again(applier, strict_sim):
    customer_id = await _customer(applier, 2)
    strict_sim.set_faults(once=[["POST /items", GATEWAY_502], ["POST /invoices", GATEWAY_502]])
    invoice_id = await _invoice(applier, customer_id, 2, "draft")
    state = strict_sim.state()
    assert [i["invoice_id"] for i in state["invoices"]] == [invoice_id]
    assert len(state["items"]) == 1
    writes = _writes(strict_sim)
    assert writes == {
        "POST /customers 201": 1,
        "POST /items applied-201-502": 1,
        "POST /invoices applied-201-502": 1,
    }
    await _quiet(strict_sim, writes)


async def test_a_payment_applied_then_502_is_found_on_the_invoice_never_paid_twice(applier, strict_sim):
    customer_id = await _customer(applier, 3)
    invoice_id = await _invoice(applier, customer_id, 3, "sent")
    before = _writes(strict_sim)
    strict_sim.set_faults(once=[["POST /payments", GATEWAY_502]])
    plan = Plan(Action.RECORD_PAYMENT, None, "h", "test", status="paid", from_status="sent")
    applied = await applier.apply(EntityType.INVOICE, "i3", plan, _invoice_row(3), invoice_id)
    assert applied.zoho_status == "paid"
    [payment] = strict_sim.state()["payments"]
    assert payment["reference_number"] == "i3" and payment["amount"] == 172.5
    invoice = next(i for i in strict_sim.state()["invoices"] if i["invoice_id"] == invoice_id)
    assert invoice["status"] == "paid" and invoice["balance"] == 0
    made = {k: n - before.get(k, 0) for k, n in _writes(strict_sim).items() if n != before.get(k, 0)}
    assert made == {"POST /payments applied-201-502": 1}  # no second payment, so no refusal either
    await _quiet(strict_sim, _writes(strict_sim))


async def test_converttoopen_applied_then_502_is_read_back_not_sent_again(applier, strict_sim):
    customer_id = await _customer(applier, 4)
    invoice_id = await _invoice(applier, customer_id, 4, "draft")
    before = _writes(strict_sim)
    strict_sim.set_faults(once=[["POST /invoices/{id}/converttoopen", GATEWAY_502]])
    plan = Plan(Action.OPEN_INVOICE, None, "h", "test", status="sent", from_status="draft")
    applied = await applier.apply(EntityType.INVOICE, "i4", plan, _invoice_row(4), invoice_id)
    assert applied.zoho_status == "sent"
    made = {k: n - before.get(k, 0) for k, n in _writes(strict_sim).items() if n != before.get(k, 0)}
    assert made == {"POST /invoices/{id}/converttoopen applied-200-502": 1}
    await _quiet(strict_sim, _writes(strict_sim))


async def test_a_void_applied_then_502_is_read_back_not_sent_again(applier, strict_sim):
    customer_id = await _customer(applier, 5)
    invoice_id = await _invoice(applier, customer_id, 5, "paid")
    before = _writes(strict_sim)
    strict_sim.set_faults(once=[["POST /invoices/{id}/void", GATEWAY_502]])
    plan = Plan(Action.VOID_INVOICE, None, "h", "test", status="void", from_status="paid")
    applied = await applier.apply(EntityType.INVOICE, "i5", plan, _invoice_row(5), invoice_id)
    assert applied.zoho_status == "void"
    invoice = next(i for i in strict_sim.state()["invoices"] if i["invoice_id"] == invoice_id)
    assert invoice["status"] == "void"
    made = {k: n - before.get(k, 0) for k, n in _writes(strict_sim).items() if n != before.get(k, 0)}
    assert made == {"POST /invoices/{id}/void applied-200-502": 1}  # never a second void ("already void")
    await _quiet(strict_sim, _writes(strict_sim))


async def test_mark_inactive_applied_then_502_is_read_back_not_sent_again(applier, strict_sim):
    customer_id = await _customer(applier, 6)
    before = _writes(strict_sim)
    strict_sim.set_faults(once=[["POST /customers/{id}/markasinactive", GATEWAY_502]])
    plan = Plan(Action.MARK_CUSTOMER_INACTIVE, None, "h", "test", status="inactive", from_status="active")
    applied = await applier.apply(EntityType.CUSTOMER, "c6", plan, _customer_row(6), customer_id)
    assert applied.zoho_status == "inactive"
    assert strict_sim.state()["customers"][0]["status"] == "inactive"
    made = {k: n - before.get(k, 0) for k, n in _writes(strict_sim).items() if n != before.get(k, 0)}
    assert made == {"POST /customers/{id}/markasinactive applied-200-502": 1}
    await _quiet(strict_sim, _writes(strict_sim))


async def test_a_status_call_the_gateway_lost_before_zoho_is_sent_again(applier, strict_sim):
    """In doubt, and Zoho shows no effect (the gateway answered without reaching Zoho): sent again once."""
    customer_id = await _customer(applier, 7)
    before = _writes(strict_sim)
    strict_sim.set_faults(once=[["POST /customers/{id}/markasinactive", "error_503"]])
    plan = Plan(Action.MARK_CUSTOMER_INACTIVE, None, "h", "test", status="inactive", from_status="active")
    with applier.client.tracking() as tracker:
        await applier.apply(EntityType.CUSTOMER, "c7", plan, _customer_row(7), customer_id)
    assert strict_sim.state()["customers"][0]["status"] == "inactive"
    made = {k: n - before.get(k, 0) for k, n in _writes(strict_sim).items() if n != before.get(k, 0)}
    mark = "POST /customers/{id}/markasinactive"
    assert made == {f"{mark} 503": 1, f"{mark} 200": 1}
    # between the two: one read of the customer, which showed it still active
    assert [c.endpoint for c in tracker.calls] == [
        "POST /customers/{id}/markasinactive",
        "GET /customers/{id}",
        "POST /customers/{id}/markasinactive",
    ]


async def test_zohos_own_5xx_envelope_on_a_write_is_a_plain_retry(applier, strict_sim):
    """Zoho said it failed (a JSON envelope): nothing to settle, the write is sent again at once."""
    strict_sim.set_faults(once=[["POST /customers", "error_500"]])
    with applier.client.tracking() as tracker:
        await _customer(applier, 8)
    # The match rules' lookups (account number, e-mail: nothing made by others) come first, then the
    # write and its immediate retry.
    assert [(c.endpoint, c.http_status) for c in tracker.calls] == [
        ("GET /customers", 200),
        ("GET /customers", 200),
        ("POST /customers", 500),
        ("POST /customers", 201),
    ]
    assert len(strict_sim.state()["customers"]) == 1


async def test_a_gateway_502_on_an_update_is_retried_as_sent(applier, strict_sim):
    """An idempotent PUT answered by a gateway is simply sent again: nothing can be doubled."""
    customer_id = await _customer(applier, 9)
    strict_sim.set_faults(once=[["PUT /customers/{id}", GATEWAY_502]])
    with applier.client.tracking() as tracker:
        updated = await applier.client.update_customer(customer_id, {"phone": "555"})
    assert updated["phone"] == "555"
    assert [c.http_status for c in tracker.calls] == [502, 200]


@pytest.mark.parametrize(
    ("status", "body", "family"),
    [
        (502, None, ReplyUnreadable),  # a gateway's HTML page
        (504, None, ReplyUnreadable),
        (200, {"invoice": {}}, ReplyUnreadable),  # a 2xx without `code`
        (200, None, ReplyUnreadable),
        (500, {"code": 1000, "message": "Internal error"}, TransientError),  # Zoho said it failed
        (503, {"code": 1000, "message": "Service unavailable"}, TransientError),
    ],
)
def test_only_a_reply_without_a_zoho_envelope_is_in_doubt(status, body, family):
    error = error_from_reply(status, body)
    assert type(error) is family
    assert isinstance(error, InDoubt) == (family is ReplyUnreadable)


async def test_a_delete_applied_then_502_is_retried_and_its_not_found_read_as_done(applier, strict_sim):
    """DELETE is idempotent: sent again, and Zoho's "not found" after the gateway's page means it is gone."""
    customer_id = await _customer(applier, 10)
    invoice_id = await _invoice(applier, customer_id, 10, "draft")
    strict_sim.set_faults(once=[["DELETE /invoices/{id}", GATEWAY_502]])
    await applier.client.delete_invoice(invoice_id)
    assert strict_sim.state()["invoices"] == []
    calls = strict_sim.stats()["by_endpoint"]["DELETE /invoices/{id}"]
    assert calls == {"applied-200-502": 1, "404": 1}


@pytest.mark.parametrize("fault", ["lost_response", "timeout"])
async def test_a_void_whose_reply_is_lost_or_late_is_read_back_not_sent_again(applier, strict_sim, fault):
    """The other in-doubt kinds: the connection reset after the request, or no reply before the client's
    read timeout (the simulator holds it past 5 s). Both applied in Zoho; neither is sent again."""
    customer_id = await _customer(applier, 11)
    invoice_id = await _invoice(applier, customer_id, 11, "sent")
    before = _writes(strict_sim)
    strict_sim.set_faults(once=[["POST /invoices/{id}/void", fault]], timeout_hold=7.0)
    plan = Plan(Action.VOID_INVOICE, None, "h", "test", status="void", from_status="sent")
    applied = await applier.apply(EntityType.INVOICE, "i11", plan, _invoice_row(11), invoice_id)
    assert applied.zoho_status == "void"
    await asyncio.sleep(7.5 if fault == "timeout" else 0)  # the held reply is counted once it is sent
    made = {k: n - before.get(k, 0) for k, n in _writes(strict_sim).items() if n != before.get(k, 0)}
    label = "lost-200" if fault == "lost_response" else "200"
    assert made == {f"POST /invoices/{{id}}/void {label}": 1}
    await _quiet(strict_sim, _writes(strict_sim))
