"""`zoho-cdc demo --switchover`: going live where an older integration left Zoho and the source.

The local stack as `zoho-cdc demo` starts it, loaded with the state of `tests/fixtures/switchover/`: 13
source customers (10 holding the Zoho id the older integration wrote back, 3 'failed' without one) and
those 10 customers in the simulator as records made by others (no Account Number custom field). It
prints the `zoho-cdc adopt` plan, records it, runs the live sync until the source is caught up, and
shows what Zoho holds: 13 customers, 3 created, the 10 stored ids kept, no duplicate.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psycopg
from rich.console import Console
from rich.table import Table

from consumer import event_loop
from consumer.jobs.adoption_links import record_plan
from consumer.jobs.adoption_plan import read_plan
from consumer.local import postgres as local_pg
from consumer.local import stack
from consumer.local.demo import _sync_until_caught_up, _with_stack_env, demo_settings
from consumer.migrations import migrate
from consumer.model.outcomes import SyncOutcome
from consumer.service.wiring import zoho_client
from consumer.settings import Settings

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "switchover"


async def _plan_and_record(settings: Settings, console: Console) -> int:
    migrate(settings.database_url)  # zoho-cdc's tables, as `zoho-cdc adopt` makes them
    client = zoho_client(settings)
    try:
        plan = await read_plan(settings, client)
    finally:
        await client.aclose()
    table = Table(title="zoho-cdc adopt: what going live does")
    table.add_column("verdict")
    table.add_column("customers", justify="right")
    for verdict, count in sorted(plan.counts().items()):
        table.add_row(verdict, str(count))
    console.print(table)
    console.print(
        f"the plan read Zoho with {plan.plan_calls} call(s); going live makes about {plan.going_live_calls}"
        f" ({plan.going_live_writes} writes)"
    )
    return len(await record_plan(settings, plan))


def run_switchover_demo(base: Settings, *, keep: bool = False, timeout: float = 300) -> dict[str, Any]:
    console = Console()
    settings = demo_settings(base)
    started = time.monotonic()
    console.rule("[bold]zoho-cdc demo --switchover")
    stack.down(settings)
    local_pg.ensure_logical_decoding(settings.database_url)
    local_pg.drop_database(settings.database_url)
    components = stack.up(settings)
    settings = _with_stack_env(settings)
    admin = f"http://127.0.0.1:{components['zoho_sim'].port}/__sim__"
    try:
        others = json.loads((FIXTURE / "zoho-customers.json").read_text())["customers"]
        httpx.post(f"{admin}/records", json={"customers": others}, timeout=5).raise_for_status()
        with psycopg.connect(settings.database_url) as conn:
            conn.execute((FIXTURE / "source-rows.sql").read_text())
            held = dict(conn.execute("SELECT account_number, zoho_billing_customer_id FROM customers"))
        console.print(
            f"the older integration's state: {sum(1 for z in held.values() if z)} of {len(held)} source"
            f" customers hold a Zoho id; Zoho holds {len(others)} customers without our Account Number field"
        )
        recorded = event_loop.run(_plan_and_record(settings, console))
        console.print(f"recorded {recorded} adoptions; going live")
        event_loop.run(_sync_until_caught_up(settings, console, timeout))
        stats = httpx.get(f"{admin}/stats", timeout=5).json()
        customers = httpx.get(f"{admin}/state", timeout=5).json()["customers"]
        with psycopg.connect(settings.database_url) as conn:
            now = dict(conn.execute("SELECT account_number, zoho_billing_customer_id FROM customers"))
            notes = conn.execute(
                "SELECT split_part(coalesce(error, ''), ':', 1), count(*) FROM zoho_sync_log"
                " WHERE outcome = %s GROUP BY 1 ORDER BY 1",
                (SyncOutcome.SYNCED,),
            ).fetchall()
    finally:
        if not keep:
            stack.down(settings)
    label = "Account Number"
    numbers = Counter(
        next((f["value"] for f in c.get("custom_fields", []) if f["label"] == label), None) for c in customers
    )
    writes = sum(sum(v.values()) for e, v in stats["by_endpoint"].items() if not e.startswith("GET "))
    result = {
        "zoho_customers": len(customers),
        "created": len({c["customer_id"] for c in customers} - {o["customer_id"] for o in others}),
        "stored_ids_kept": sum(1 for a, z in held.items() if z and now.get(a) == z),
        "duplicates": sum(n - 1 for n in numbers.values() if n > 1),
        "api_requests": stats["requests"],
        "writes": writes,
    }
    table = Table(title="after the switch-over")
    table.add_column("what")
    table.add_column("count", justify="right")
    for name, value in result.items():
        table.add_row(name.replace("_", " "), str(value))
    console.print(table)
    log = Table(title="sync log: how each customer was found")
    log.add_column("note")
    log.add_column("rows", justify="right")
    for note, count in notes:
        log.add_row(note or "updated (an adopted record brought up to the source)", str(count))
    console.print(log)
    console.print(f"{time.monotonic() - started:.0f} s in all")
    return result
