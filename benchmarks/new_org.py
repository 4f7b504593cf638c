"""Benchmark 10: backfill into a new Zoho organisation (issue 22, item 5).

    python -m benchmarks.run --only neworg

N customers and N invoices are synced into organisation A (the live one: the first sync of a fresh
install records it), then `backfill` runs with ZOHO_ORGANIZATION_ID = B against the same simulator,
which serves both organisations apart. Counted from the simulator's own records and counters:
entities missing in B (by account number and invoice number: the target is 0), records B holds more
than once, the calls B's second backfill makes, A's calls during B's backfills, and source id
columns the backfills into B changed (they hold A's ids: the target is 0).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import infra
from benchmarks.workload import CUSTOMERS, INVOICES, History, customer_row, invoice_row
from connectors.zoho_sim import SimConfig, SimLimits, run_in_thread
from consumer.jobs.backfill import run_backfill
from consumer.service.wiring import sync_session

ORG_B = "20468013"
ENTITIES = 150  # customers, and as many invoices
RATE = 1000  # calls per 1-second window: the figure is about completeness, not pacing
UNLIMITED = 100_000_000
SOURCE_IDS = (
    "SELECT id::text, zoho_billing_customer_id FROM customers"
    " UNION ALL SELECT id::text, zoho_billing_invoice_id FROM customer_invoices ORDER BY 1"
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _account_numbers(customers: list[dict[str, Any]], label: str) -> list[str]:
    return [
        str(f.get("value"))
        for c in customers
        for f in c.get("custom_fields", [])
        if f.get("label") == label and f.get("value")
    ]


async def _backfill(settings: Any, group: str) -> Any:
    async with sync_session(settings) as session:
        return await run_backfill(session, group_id=group)


async def bench_neworg(workdir: Path, entities: int = ENTITIES) -> dict[str, Any]:
    prefix = f"bn{random.randrange(16**6):06x}"
    with infra.broker(workdir) as bootstrap, infra.fresh_database("neworg") as db:
        history, rng = History(prefix), random.Random(22)
        for n in range(entities):
            customer = history.create(CUSTOMERS, customer_row(n, rng))
            history.create(INVOICES, invoice_row(n, customer, rng))
        history.load(db)
        await infra.produce(bootstrap, history.events)
        limits = SimLimits(per_window=RATE, window_seconds=1.0, daily=UNLIMITED)
        handle = run_in_thread(SimConfig(seed=22, other_organization_ids=(ORG_B,), limits=limits))
        try:
            settings_a = infra.settings_for(
                handle, db, bootstrap, prefix, rate_per_window=RATE, window_seconds=1
            )
            settings_b = settings_a.model_copy(update={"zoho_organization_id": ORG_B})
            live = await _backfill(settings_a, f"{prefix}-a")
            log(f"neworg: organisation A {live.outcomes}")
            with psycopg.connect(db) as conn:
                source_before = conn.execute(SOURCE_IDS).fetchall()
            a_calls = handle.stats()["requests"]
            started = time.perf_counter()
            first = await _backfill(settings_b, f"{prefix}-b1")
            elapsed = time.perf_counter() - started
            b_calls = handle.stats(ORG_B)["requests"]
            second = await _backfill(settings_b, f"{prefix}-b2")
            log(f"neworg: organisation B {first.outcomes}, again {second.outcomes}")
            b_state, b_duplicates = handle.state(ORG_B), handle.duplicates(ORG_B)
            with psycopg.connect(db) as conn:
                source_after = conn.execute(SOURCE_IDS).fetchall()
            label = handle.simulator.config.account_number_label if handle.simulator else "Account Number"
            in_b = set(_account_numbers(b_state["customers"], label))
            numbers_in_b = {i["invoice_number"] for i in b_state["invoices"]}
            missing = sum(1 for row in history.customers.values() if row["account_number"] not in in_b)
            missing += sum(
                1 for row in history.invoices.values() if row["invoice_number"] not in numbers_in_b
            )
            out = {
                "neworg_entities": 2 * entities,
                "neworg_backfill_missing": missing,
                "neworg_duplicates": sum(
                    len(v) - 1 for k, found in b_duplicates.items() if k != "field" for v in found.values()
                ),
                "neworg_backfill_calls": b_calls,
                "neworg_backfill_s": round(elapsed, 2),
                "neworg_second_backfill_calls": handle.stats(ORG_B)["requests"] - b_calls,
                "neworg_first_org_calls_during": handle.stats()["requests"] - a_calls,
                "neworg_source_ids_changed": sum(
                    1 for a, b in zip(source_before, source_after, strict=True) if a != b
                ),
            }
        finally:
            handle.stop()
    log(f"neworg: {out}")
    return out
