"""Benchmark 9: payments in doubt. N invoices paid while half of all writes are applied by Zoho and then
answered by a gateway's HTML 502 (the simulator's `applied_502` fault).

Each payment goes through the live sync's applier (payment intent in PostgreSQL, `POST /payments`, and
after an in-doubt reply the invoice's `payments` list read by reference before anything is sent again).
The figure is counted on the simulator, not by the client: payments beyond one per invoice
(`doubt_duplicate_payments`, target 0), invoices left without one, and the payment calls it accepted.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import infra
from connectors.zoho import ZohoClient
from connectors.zoho_sim import SimConfig, SimLimits, run_in_thread
from consumer.model.events import EntityType
from consumer.model.plan import Action, Plan
from consumer.pipeline.durability.store import SyncStore
from consumer.pipeline.effects.apply import ApplyOptions, ZohoApplier
from consumer.service.zoho_config import zoho_config

INVOICES = 100
FAULT_RATE = 0.5
SEED = 2026


def _customer(n: int) -> dict[str, Any]:
    return {
        "display_name": f"Doubt {n}",
        "email": f"doubt{n}@bench.example",
        "custom_fields": [{"label": "Account Number", "value": f"CT-DB-{n}"}],
    }


def _invoice(customer_id: str, n: int) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "date": "2026-11-01",
        "due_date": "2026-11-30",
        "reference_number": f"inv-{n}",
        "invoice_items": [{"description": "Fibre", "rate": 172.5, "quantity": 1}],
    }


async def _sent_invoice(applier: ZohoApplier, n: int) -> str:
    """Customer n and its invoice, created and opened before any fault is switched on."""
    row = {"id": f"c-{n}", "account_number": f"CT-DB-{n}", "email": f"doubt{n}@bench.example"}
    plan = Plan(Action.CREATE_CUSTOMER, _customer(n), "h", "bench", status="active")
    customer = await applier.apply(EntityType.CUSTOMER, f"c-{n}", plan, row, None)
    assert customer.zoho_id is not None
    plan = Plan(Action.CREATE_INVOICE, _invoice(customer.zoho_id, n), "h", "bench", status="sent")
    invoice_row = {"id": f"inv-{n}", "invoice_number": f"INV-DB-{n}"}
    invoice = await applier.apply(EntityType.INVOICE, f"inv-{n}", plan, invoice_row, None)
    assert invoice.zoho_id is not None
    return invoice.zoho_id


async def _pay(applier: ZohoApplier, n: int, zoho_id: str) -> str | None:
    """The payment of invoice n as the live sync makes it; the error's class name if it failed."""
    plan = Plan(Action.RECORD_PAYMENT, None, "h", "bench", status="paid", from_status="sent")
    try:
        await applier.apply(EntityType.INVOICE, f"inv-{n}", plan, {"id": f"inv-{n}"}, zoho_id)
    except Exception as exc:  # noqa: BLE001 - counted: a payment that fails is a finding, not a crash
        return type(exc).__name__
    return None


async def bench_doubt(workdir: Path, invoices: int = INVOICES) -> dict[str, Any]:
    limits = SimLimits(per_window=1_000_000, daily=10_000_000, concurrency=5)
    sim = run_in_thread(SimConfig(seed=SEED, limits=limits))
    try:
        with infra.fresh_database("doubt") as db:
            settings = infra.settings_for(
                sim, db, "127.0.0.1:9", "bdoubt", rate_per_window=1_000_000, zoho_retry_base_seconds=0.01
            )
            async with SyncStore(db) as store, ZohoClient(zoho_config(settings)) as client:
                applier = ZohoApplier(client, store, ApplyOptions())
                ids = [await _sent_invoice(applier, n) for n in range(invoices)]
                sim.set_faults(applied_502=FAULT_RATE)
                started = time.monotonic()
                failures = await asyncio.gather(*(_pay(applier, n, z) for n, z in enumerate(ids)))
                elapsed = time.monotonic() - started
                sim.set_faults(applied_502=0.0)
        stats, state = sim.stats(), sim.state()
    finally:
        sim.stop()
    per_invoice = Counter(p["reference_number"] for p in state["payments"])
    paid_invoices = [i for i in state["invoices"] if i["status"] == "paid" and i["balance"] == 0]
    payment_calls = stats["by_endpoint"].get("POST /payments", {})
    return {
        "doubt_invoices": invoices,
        "doubt_fault_rate": FAULT_RATE,
        "doubt_duplicate_payments": sum(n - 1 for n in per_invoice.values() if n > 1),
        "doubt_unpaid_invoices": invoices - len(per_invoice),
        "doubt_paid_in_zoho": len(paid_invoices),
        "doubt_payment_calls": sum(payment_calls.values()),
        "doubt_payment_calls_answered_502": sum(n for s, n in payment_calls.items() if s.endswith("-502")),
        "doubt_failed_payments": Counter(f for f in failures if f is not None),
        "doubt_elapsed_s": round(elapsed, 2),
    }
