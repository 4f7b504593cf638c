"""`zoho-cdc demo` (what `make demo` runs): the main job end to end on the embedded default.

Local stack (PostgreSQL with logical decoding, Tansu, the Debezium relay, the Zoho simulator), the
user's 13 sample customers and their invoices (draft, sent, paid and void; one customer closed), the
live sync until the user's own verification query returns 0, then a summary that shows Zoho's
statuses beside the source's. A fresh demo database each time, so the run is repeatable.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from rich.console import Console
from rich.table import Table

from consumer import event_loop
from consumer.entities.customers.rules import customer_zoho_status, is_internal_test
from consumer.entities.invoices.status import invoice_source_stage, zoho_invoice_stage
from consumer.jobs.reconcile.comparison import compare
from consumer.jobs.reconcile.sides import SourceSnapshot, ZohoSnapshot, read_source
from consumer.local import postgres as local_pg
from consumer.local import stack
from consumer.local.seed import seed
from consumer.model.plan import MappingConfig
from consumer.service.wiring import sync_session
from consumer.service.worker import Worker
from consumer.settings import Settings

DEMO_DATABASE = "zoho_cdc_demo"

# The user's verification queries: what is still missing from Zoho.
UNSYNCED_CUSTOMERS = (
    "SELECT count(*) FROM customers"
    " WHERE account_type <> 'internal_test' AND zoho_billing_customer_id IS NULL"
)
# A void invoice that never reached Zoho is not missing: no invoice is created only to be voided.
UNSYNCED_INVOICES = (
    "SELECT count(*) FROM customer_invoices i JOIN customers c ON c.id = i.customer_id"
    " WHERE c.account_type <> 'internal_test' AND i.zoho_billing_invoice_id IS NULL AND i.status <> 'void'"
)
INVOICE_STATUSES = ("draft", "sent", "paid", "void")
CUSTOMER_STATUSES = ("active", "inactive")


@dataclass
class StatusSummary:
    """Statuses side by side: what the source asks Zoho to show, and what Zoho shows."""

    invoices_source: dict[str, int] = field(default_factory=dict)  # source stage -> invoices
    invoices_zoho: dict[str, int] = field(default_factory=dict)  # Zoho stage -> invoices
    customers_source: dict[str, int] = field(default_factory=dict)  # Zoho status the source asks for
    customers_zoho: dict[str, int] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)  # one line per entity whose status differs


def status_summary(
    source: SourceSnapshot, zoho_state: dict[str, Any], config: MappingConfig
) -> StatusSummary:
    """Count statuses on both sides; a mismatch is what `zoho-cdc reconcile` reports as status drift."""
    internal = {c["id"] for c in source.customers if is_internal_test(c)}
    customers = [c for c in source.customers if c["id"] not in internal]
    invoices = [i for i in source.invoices if str(i.get("customer_id")) not in internal]
    zoho = ZohoSnapshot(list(zoho_state["customers"]), list(zoho_state["invoices"]))
    report = compare(source, zoho, config, list_filter="")
    by_stage = Counter(stage for z in zoho.invoices if (stage := zoho_invoice_stage(z.get("status"))))
    return StatusSummary(
        invoices_source=dict(Counter(invoice_source_stage(i) for i in invoices)),
        invoices_zoho=dict(by_stage),
        customers_source=dict(Counter(customer_zoho_status(c, config) for c in customers)),
        customers_zoho=dict(Counter(str(c.get("status") or "active") for c in zoho.customers)),
        mismatches=[
            f"{d.entity_type} {d.natural_key}: {d.status[0]} in the source, {d.status[1]} in Zoho"
            for d in report.status_drift
            if d.status is not None
        ]
        + [f"{m.entity_type} {m.natural_key}: not in Zoho" for m in report.missing],
    )


@dataclass
class DemoResult:
    outcomes: dict[str, int]
    unsynced_customers: int
    unsynced_invoices: int
    zoho_stats: dict[str, Any]
    zoho_customers: int
    zoho_invoices: int
    statuses: StatusSummary
    elapsed_s: float


def demo_settings(base: Settings) -> Settings:
    url = base.database_url.rsplit("/", 1)[0] + "/" + DEMO_DATABASE
    return base.model_copy(update={"database_url": url})


def _with_stack_env(settings: Settings) -> Settings:
    env_file = stack.state_dir(settings) / "stack.env"
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    update: dict[str, Any] = {
        k.lower(): v for k, v in values.items() if k.lower() in type(settings).model_fields
    }
    fresh = Settings(_env_file=None, **(settings.model_dump() | update))  # type: ignore[call-arg]
    return fresh


def _count(database_url: str, sql: str) -> int:
    with psycopg.connect(database_url) as conn:
        return int(conn.execute(sql).fetchone()[0])  # type: ignore[index]


async def _sync_until_caught_up(settings: Settings, console: Console, timeout: float) -> None:
    async with sync_session(settings, live_sync=True) as session:
        worker = Worker(session, session.run_options(settings.consumer_group))
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + timeout
        try:
            with console.status("syncing…") as status:
                while time.monotonic() < deadline:
                    if task.done():
                        task.result()  # raises the reason the sync stopped
                    customers = _count(settings.database_url, UNSYNCED_CUSTOMERS)
                    invoices = _count(settings.database_url, UNSYNCED_INVOICES)
                    tally = ", ".join(f"{k} {v}" for k, v in sorted(session.metrics.tally.items()))
                    status.update(
                        f"waiting for Zoho: {customers} customers and {invoices} invoices to go  [{tally}]"
                    )
                    if customers == 0 and invoices == 0 and worker.engine.in_flight == 0:
                        break
                    await asyncio.sleep(0.5)
                else:
                    raise TimeoutError(f"the sync did not catch up within {timeout:.0f} s")
        finally:
            worker.stop("demo finished")
            await task


def run_demo(base: Settings, *, keep: bool = False, timeout: float = 300) -> DemoResult:
    console = Console()
    settings = demo_settings(base)
    started = time.monotonic()
    console.rule("[bold]zoho-cdc demo")
    stack.down(settings)  # leftovers of an earlier demo
    local_pg.ensure_logical_decoding(settings.database_url)
    local_pg.drop_database(settings.database_url)
    console.print(
        "starting the local stack: PostgreSQL (wal_level=logical), Tansu broker, Debezium relay, Zoho sim"
    )
    components = stack.up(settings)
    settings = _with_stack_env(settings)
    try:
        summary = seed(settings.database_url)
        console.print(
            f"seeded {summary.customers_inserted} customers and {summary.invoices_inserted} invoices "
            f"into {DEMO_DATABASE}; the relay streams them into Kafka"
        )
        event_loop.run(_sync_until_caught_up(settings, console, timeout))
        sim_port = components["zoho_sim"].port
        admin = f"http://127.0.0.1:{sim_port}/__sim__"
        stats = httpx.get(f"{admin}/stats", timeout=5).json()
        state = httpx.get(f"{admin}/state", timeout=5).json()
        with psycopg.connect(settings.database_url) as conn:
            outcomes = dict(
                conn.execute("SELECT outcome, count(*) FROM zoho_sync_log GROUP BY outcome").fetchall()
            )
        result = DemoResult(
            outcomes=outcomes,
            unsynced_customers=_count(settings.database_url, UNSYNCED_CUSTOMERS),
            unsynced_invoices=_count(settings.database_url, UNSYNCED_INVOICES),
            zoho_stats=stats,
            zoho_customers=len(state["customers"]),
            zoho_invoices=len(state["invoices"]),
            statuses=status_summary(
                event_loop.run(read_source(settings.database_url, settings.zoho_organization_id)),
                state,
                MappingConfig.from_settings(settings),
            ),
            elapsed_s=time.monotonic() - started,
        )
    finally:
        if not keep:
            stack.down(settings)
    _print(console, result, settings, keep)
    return result


def _print(console: Console, r: DemoResult, settings: Settings, keep: bool) -> None:
    table = Table(title="sync log outcomes")
    table.add_column("outcome")
    table.add_column("events", justify="right")
    for name, n in sorted(r.outcomes.items()):
        table.add_row(name, str(n))
    console.print(table)
    zoho = Table(title="Zoho Billing (simulator)")
    zoho.add_column("what")
    zoho.add_column("count", justify="right")
    zoho.add_row("customers", str(r.zoho_customers))
    zoho.add_row("invoices", str(r.zoho_invoices))
    zoho.add_row("API requests", str(r.zoho_stats.get("requests")))
    zoho.add_row("HTTP 429 responses", str(r.zoho_stats.get("http_429")))
    zoho.add_row("token requests", str(r.zoho_stats.get("token_requests")))
    console.print(zoho)
    st = r.statuses
    statuses = Table(title="statuses in the source and in Zoho")
    statuses.add_column("record")
    statuses.add_column("status")
    statuses.add_column("source", justify="right")
    statuses.add_column("Zoho", justify="right")
    for name in INVOICE_STATUSES:
        statuses.add_row(
            "invoices", name, str(st.invoices_source.get(name, 0)), str(st.invoices_zoho.get(name, 0))
        )
    for name in CUSTOMER_STATUSES:
        statuses.add_row(
            "customers", name, str(st.customers_source.get(name, 0)), str(st.customers_zoho.get(name, 0))
        )
    console.print(statuses)
    if st.invoices_source.get("void"):
        console.print("void invoices that never reached Zoho are not created there only to be voided")
    console.print(f"Zoho statuses that differ from the source: {len(st.mismatches)}")
    for line in st.mismatches:
        console.print(f"  {line}")
    console.print(
        f"verification: customers not in Zoho = {r.unsynced_customers}, invoices not in Zoho = "
        f"{r.unsynced_invoices}  ({r.elapsed_s:.0f} s in all)"
    )
    if keep:
        console.print(
            f"the stack is still running: `set -a; . {settings.state_dir}/stack.env; set +a` then "
            "`zoho-cdc status`; stop it with `zoho-cdc dev down`"
        )
