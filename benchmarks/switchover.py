"""Switch-over benchmark (issue 22): the older integration's state, then `zoho-cdc adopt` and going live.

    python -m benchmarks.run --only switchover

The fixture `tests/fixtures/switchover/` (13 source customers, 10 holding the Zoho id the older
integration wrote back; those 10 in the simulator as records made by others, without the Account
Number custom field), Zoho's limits as documented (100 calls a minute). Two lanes, each on a fresh
database, broker topics and simulator, through the real relay and a `zoho-cdc run` process:

- planned: `zoho-cdc adopt` (the plan, recorded), then the live sync;
- live only: the live sync alone (each stored id read once, each create matched by its rules first).

`adopt_calls_per_record` = every Zoho API call of the planned lane (listing pages included) / the
records adopted. After the work, a quiet period checks that no call follows.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import infra
from connectors.zoho_sim import SimConfig, run_in_thread
from consumer.jobs.adoption_links import record_plan
from consumer.jobs.adoption_plan import read_plan
from consumer.service.wiring import zoho_client

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "switchover"
QUIET_SECONDS = 30.0


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _source(db: str) -> dict[str, tuple[str | None, str | None]]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT account_number, zoho_billing_customer_id, zoho_sync_status FROM customers"
        )
        return {r[0]: (r[1], r[2]) for r in rows.fetchall()}


def _account_number(customer: dict[str, Any]) -> str | None:
    return next(
        (f["value"] for f in customer.get("custom_fields", []) if f["label"] == "Account Number"), None
    )


async def _lane(workdir: Path, bootstrap: str, planned: bool) -> dict[str, Any]:
    tag = "plan" if planned else "live"
    prefix = f"bswitch{tag}{int(time.time())}"
    others = json.loads((FIXTURE / "zoho-customers.json").read_text())["customers"]
    with infra.fresh_database(f"switch_{tag}") as db:
        with psycopg.connect(db) as conn:
            conn.execute((FIXTURE / "source-rows.sql").read_text())
        held = {a: z for a, (z, _) in _source(db).items() if z}
        handle = run_in_thread(SimConfig(seed=22))
        handle.load_records_of_others(customers=others)
        settings = infra.settings_for(handle, db, bootstrap, prefix, rate_per_window=100)
        relay = infra.relay_process(workdir, db, prefix, bootstrap)
        consumer = infra.ConsumerProcess(settings, workdir / f"consumer-{prefix}.log")
        recorded = 0
        try:
            if planned:
                client = zoho_client(settings)
                try:
                    plan = await read_plan(settings, client)
                finally:
                    await client.aclose()
                recorded = len(await record_plan(settings, plan))
                plan_calls = handle.stats()["requests"]
                _log(f"switchover/{tag}: plan read with {plan_calls} calls, {recorded} adoptions recorded")
            relay.start(wait=True, timeout=180)
            consumer.start()
            infra.wait_until(
                lambda: all(s == "synced" and z for z, s in _source(db).values()),
                180,
                what="13 customers synced",
            )
            settled = handle.stats()["requests"]
            await asyncio.sleep(QUIET_SECONDS)
            after_quiet = handle.stats()["requests"]
        finally:
            consumer.terminate()
            if relay.running:
                relay.terminate()
            stats, state = handle.stats(), handle.state()
            handle.stop()
        source = _source(db)
    customers = state["customers"]
    writes = sum(sum(v.values()) for e, v in stats["by_endpoint"].items() if not e.startswith("GET "))
    numbers = [_account_number(c) for c in customers]
    adopted = sum(1 for a, z in held.items() if source[a][0] == z)
    return {
        "calls": stats["requests"],
        "writes": writes,
        "zoho_customers": len(customers),
        "created": len([c for c in customers if c["customer_id"] not in {o["customer_id"] for o in others}]),
        "duplicates": len(numbers) - len(set(numbers)),
        "stored_ids_kept": adopted,
        "calls_in_quiet": after_quiet - settled,
        "recorded_by_plan": recorded,
        "by_endpoint": {e: sum(v.values()) for e, v in stats["by_endpoint"].items()},
    }


async def bench_switchover(workdir: Path) -> dict[str, Any]:
    with infra.broker(workdir) as bootstrap:
        planned = await _lane(workdir, bootstrap, planned=True)
        live = await _lane(workdir, bootstrap, planned=False)
    _log(f"switchover: planned {planned}; live only {live}")
    return {
        "adopt_calls_per_record": round(planned["calls"] / max(planned["stored_ids_kept"], 1), 2),
        "adopt_calls": planned["calls"],
        "adopt_writes": planned["writes"],
        "adopt_zoho_customers": planned["zoho_customers"],
        "adopt_created": planned["created"],
        "adopt_duplicates": planned["duplicates"],
        "adopt_stored_ids_kept": planned["stored_ids_kept"],
        "adopt_calls_in_quiet": planned["calls_in_quiet"],
        "adopt_calls_by_endpoint": planned["by_endpoint"],
        "adopt_live_only_calls_per_record": round(live["calls"] / max(live["stored_ids_kept"], 1), 2),
        "adopt_live_only_calls": live["calls"],
        "adopt_live_only_writes": live["writes"],
        "adopt_live_only_duplicates": live["duplicates"],
        "adopt_live_only_zoho_customers": live["zoho_customers"],
        "adopt_live_only_calls_in_quiet": live["calls_in_quiet"],
    }
