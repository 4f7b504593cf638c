"""The relay lane of `make chaos`: real PostgreSQL changes through the real Debezium relay, with faults.

    python -m benchmarks.chaos_relay [--short] [--seed N] [--no-write]

Echoes only exist when the relay is in the loop: every write-back zoho-cdc makes is streamed back, and
an unchanged TOASTed column comes back as a placeholder. This lane writes real rows and updates into
PostgreSQL in waves (customers Zoho refuses, invoices whose line items are TOASTed, mapped updates,
notes-only and write-back-column-only updates, then status changes: invoices paid and voided,
customers closed), runs the relay and `zoho-cdc run` as subprocesses
against a simulator that injects 500/503s, timeouts and lost replies, SIGKILLs the consumer a few
times, waits for the sync to settle and then watches a quiet period. Figures:

* Zoho write calls per source change (target 1.0, plus the retries the injected faults cause);
* write calls in the final quiet period (target 0: no echo loop);
* dead letters per distinct refused state (target 1);
* invoices and customers whose Zoho status differs from the source (`chaos_status_mismatches`, target 0).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import secrets
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import infra, report
from benchmarks.chaos import FAULTS, FAULTY_CLIENT, log
from connectors.zoho_sim import SimConfig, SimFaults, SimLimits, run_in_thread
from consumer.entities.customers.rules import customer_zoho_status
from consumer.entities.invoices.status import zoho_invoice_stage
from consumer.entities.registry import source_topics
from consumer.model.plan import MappingConfig
from consumer.pipeline.intake.end_offsets import end_offsets
from tests.fixtures_relay import RelayProcess, relay_env


@dataclass(frozen=True)
class Plan:
    customers: int  # accepted by Zoho, one invoice each
    refused: int  # customers whose email Zoho refuses, one invoice each
    toasted: int  # of the accepted customers' invoices, how many carry 30 large line items
    kills: int
    quiet_s: float
    settle_timeout_s: float


FULL = Plan(customers=60, refused=6, toasted=15, kills=3, quiet_s=60.0, settle_timeout_s=300.0)
SHORT = Plan(customers=12, refused=3, toasted=4, kills=1, quiet_s=12.0, settle_timeout_s=150.0)


@dataclass
class Ledger:
    """What the workload did, in the units the figures are counted in."""

    mapped_changes: int = 0  # each should cost one write call
    unmapped_changes: int = 0  # notes, updated_at, write-back columns: should cost none
    refused_states: int = 0  # each should give one dead letter
    status_changes: int = 0  # of mapped_changes: invoices paid or voided, customers closed


def _items(n: int, large: bool, rng: random.Random) -> list[dict[str, Any]]:
    if not large:
        return [{"description": f"Plan {n}", "quantity": 1, "unit_price": "100.00"}]
    return [
        {"description": secrets.token_urlsafe(300), "quantity": 1, "unit_price": f"{rng.randint(5, 90)}.00"}
        for _ in range(30)
    ]


def _insert(db: str, plan: Plan, rng: random.Random, ledger: Ledger) -> None:
    with psycopg.connect(db) as conn:
        for n in range(plan.customers + plan.refused):
            refused = n >= plan.customers
            with conn.transaction():
                cid = conn.execute(
                    "INSERT INTO customers (account_number, email, company_name, phone)"
                    " VALUES (%s, %s, %s, %s) RETURNING id",
                    (
                        f"CR-{n:05d}",
                        "not-an-email" if refused else f"c{n}@relay.example",
                        f"Relay {n}",
                        "+27 1",
                    ),
                ).fetchone()[0]  # type: ignore[index]
                items = _items(n, n < plan.toasted, rng)
                subtotal = sum(float(i["unit_price"]) for i in items)
                conn.execute(
                    "INSERT INTO customer_invoices (customer_id, invoice_number, invoice_date, due_date,"
                    " subtotal, vat_amount, total_amount, status, line_items)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, 'sent', %s)",
                    (
                        cid,
                        f"INV-R-{n:05d}",
                        dt.date(2026, 11, 1),
                        dt.date(2026, 11, 30),
                        subtotal,
                        round(subtotal * 0.15, 2),
                        round(subtotal * 1.15, 2),
                        json.dumps(items),
                    ),
                )
            if refused:
                ledger.refused_states += 2  # the customer, and its invoice that cannot go without it
            else:
                ledger.mapped_changes += 2


def _update(db: str, plan: Plan, wave: int, ledger: Ledger) -> None:
    """Mapped updates of every accepted row, plus changes that must cost nothing."""
    with psycopg.connect(db) as conn:
        for n in range(plan.customers):
            conn.execute(
                "UPDATE customers SET phone = %s WHERE account_number = %s", (f"+27 {wave}{n}", f"CR-{n:05d}")
            )
            conn.execute(
                "UPDATE customer_invoices SET due_date = %s WHERE invoice_number = %s",
                (dt.date(2026, 12, 1) + dt.timedelta(days=wave), f"INV-R-{n:05d}"),
            )
            ledger.mapped_changes += 2
        conn.execute("UPDATE customers SET notes = %s, updated_at = now()", (f"wave {wave}",))
        conn.execute(
            "UPDATE customer_invoices SET zoho_sync_status = 'pending' WHERE zoho_sync_status = 'synced'"
        )
        ledger.unmapped_changes += 2 * (plan.customers + plan.refused)


def _statuses(db: str, plan: Plan, rng: random.Random, ledger: Ledger) -> None:
    """Status changes, each one Zoho call: invoices paid (a payment) and voided, customers closed."""
    accepted = list(range(plan.customers))
    changed = rng.sample(accepted, max(2, plan.customers // 4) + max(1, plan.customers // 6))
    paid, voided = changed[: max(2, plan.customers // 4)], changed[max(2, plan.customers // 4) :]
    closed = rng.sample(accepted, max(1, plan.customers // 6))
    with psycopg.connect(db) as conn:
        for n in paid:
            conn.execute(
                "UPDATE customer_invoices SET status = 'paid' WHERE invoice_number = %s", (f"INV-R-{n:05d}",)
            )
        for n in voided:
            conn.execute(
                "UPDATE customer_invoices SET status = 'void' WHERE invoice_number = %s", (f"INV-R-{n:05d}",)
            )
        for n in closed:
            conn.execute("UPDATE customers SET status = 'closed' WHERE account_number = %s", (f"CR-{n:05d}",))
    ledger.mapped_changes += len(paid) + len(voided) + len(closed)
    ledger.status_changes += len(paid) + len(voided) + len(closed)


def _writes(sim: Any) -> int:
    return sum(sum(by.values()) for e, by in sim.stats()["by_endpoint"].items() if not e.startswith("GET "))


async def _settled(bootstrap: str, group: str, topics: tuple[str, ...], timeout: float) -> bool:
    """Committed offsets equal the end offsets, and stay so for a few seconds (echoes included)."""
    deadline = time.monotonic() + timeout
    stable_since: float | None = None
    while time.monotonic() < deadline:
        # The fetch high watermark: Tansu's ListOffsets under-reports a partition's end.
        ends = await end_offsets(bootstrap, await infra.partitions(bootstrap, topics))
        committed = await infra.committed_offsets(bootstrap, group, topics)
        if ends and all(committed.get(tp, -1) == end for tp, end in ends.items()):
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= 5.0:
                return True
        else:
            stable_since = None
        await asyncio.sleep(1.0)
    return False


def _check(db: str, state: dict[str, Any], plan: Plan) -> dict[str, int]:
    customers = state["customers"]
    invoices = state["invoices"]
    by_account: dict[str, list[dict[str, Any]]] = {}
    for c in customers:
        for f in c.get("custom_fields", []):
            by_account.setdefault(str(f.get("value")), []).append(c)
    by_number: dict[str, list[dict[str, Any]]] = {}
    for i in invoices:
        by_number.setdefault(i["invoice_number"], []).append(i)
    found = {
        "missing or duplicated": 0,
        "void invoices never created": 0,
        "stale values": 0,
        "refused rows in Zoho": 0,
        "truncated line items": 0,
        "invoice status mismatches": 0,
        "customer status mismatches": 0,
        "duplicate payments": sum(
            n - 1 for n in Counter(p.get("reference_number") for p in state.get("payments", [])).values()
        ),
    }
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT c.account_number, c.phone, i.invoice_number, i.due_date,"
            " jsonb_array_length(i.line_items), c.status, i.status"
            " FROM customers c JOIN customer_invoices i ON i.customer_id = c.id"
        ).fetchall()
    for account, phone, number, due, n_items, customer_status, invoice_status in rows:
        refused = int(account.split("-")[1]) >= plan.customers
        if refused:
            found["refused rows in Zoho"] += len(by_account.get(account, [])) + len(by_number.get(number, []))
            continue
        if invoice_status == "void" and not by_number.get(number) and len(by_account.get(account, [])) == 1:
            # Created and voided before the consumer saw either (its kills let the waves coalesce): the
            # rule is not to create an invoice only to void it, so Zoho rightly has none.
            found["void invoices never created"] += 1
            continue
        if len(by_account.get(account, [])) != 1 or len(by_number.get(number, [])) != 1:
            found["missing or duplicated"] += 1
            continue
        invoice = by_number[number][0]
        if by_account[account][0].get("phone") != phone or invoice.get("due_date") != due.isoformat():
            found["stale values"] += 1
        if zoho_invoice_stage(invoice.get("status")) != invoice_status:
            found["invoice status mismatches"] += 1
        wanted = customer_zoho_status({"status": customer_status}, MappingConfig())
        if (by_account[account][0].get("status") or "active") != wanted:
            found["customer status mismatches"] += 1
        if len(invoice.get("invoice_items", [])) != n_items:
            found["truncated line items"] += 1
    return found


async def run(plan: Plan, seed: int, workdir: Path) -> dict[str, Any]:
    rng = random.Random(seed)
    prefix = f"chr{uuid.uuid4().hex[:6]}"
    topics = source_topics(prefix)
    ledger = Ledger()
    started = time.monotonic()
    with infra.broker(workdir) as bootstrap, infra.fresh_database("chaos_relay") as db:
        sim = run_in_thread(
            SimConfig(
                seed=seed,
                token_refresh_limit=10_000,
                limits=SimLimits(per_window=3000, daily=10_000_000, concurrency=10),
                faults=SimFaults(timeout_hold=3.0, **FAULTS),
            )
        )
        settings = infra.settings_for(
            sim, db, bootstrap, prefix,
            rate_per_window=3000,
            **FAULTY_CLIENT,
        )  # fmt: skip
        relay = RelayProcess(
            env=relay_env(db, prefix, bootstrap, workdir / "relay-state"),
            log_path=workdir / "relay.log",
            cwd=workdir,
        )
        consumer = infra.ConsumerProcess(settings, workdir / "consumer.log")
        try:
            await asyncio.to_thread(relay.start)
            consumer.start()
            waves = [lambda: _insert(db, plan, rng, ledger)] + [
                (lambda w=w: _update(db, plan, w, ledger)) for w in (1, 2)
            ]
            # last: a paid or void invoice takes no more edits, so the updates above must reach Zoho first
            waves.append(lambda: _statuses(db, plan, rng, ledger))
            kill_after = set(rng.sample(range(len(waves)), min(plan.kills, len(waves))))
            for index, wave in enumerate(waves):
                await asyncio.to_thread(wave)
                log(f"relay lane: wave {index + 1}/{len(waves)} written to PostgreSQL")
                await asyncio.sleep(rng.uniform(1.0, 4.0))
                if index in kill_after:
                    consumer.kill()
                    log("relay lane: consumer SIGKILLed")
                    await asyncio.sleep(1.0)
                    consumer.start()
                await asyncio.sleep(2.0)
            settled = await _settled(bootstrap, settings.consumer_group, topics, plan.settle_timeout_s)
            settle_s = time.monotonic() - started
            writes_settled = _writes(sim)
            log(f"relay lane: settled={settled} after {settle_s:.0f} s; quiet period of {plan.quiet_s:g} s")
            await asyncio.sleep(plan.quiet_s)
            writes_quiet = _writes(sim) - writes_settled
        finally:
            consumer.terminate()
            if relay.running:
                relay.terminate()
        stats = sim.stats()
        state = sim.state()
        sim.stop()
        found = _check(db, state, plan)
        dlq = await infra.read_all(bootstrap, (settings.dlq_topic,))
    faults_played = sum(stats.get("faults_played", {}).values())
    writes = writes_settled + writes_quiet
    return {
        "settled": settled,
        "elapsed_s": round(time.monotonic() - started),
        "mapped_changes": ledger.mapped_changes,
        "unmapped_changes": ledger.unmapped_changes,
        "refused_states": ledger.refused_states,
        "write_calls": writes,
        "faults_played": faults_played,
        "kills": consumer.kills,
        "writes_per_change": round(writes / ledger.mapped_changes, 3),
        # what the injected faults can explain: one more write per fault reply, at most
        "writes_per_change_bound": round((ledger.mapped_changes + faults_played) / ledger.mapped_changes, 3),
        "writes_in_quiet_period": writes_quiet,
        "quiet_period_s": plan.quiet_s,
        "dead_letters": len(dlq),
        "dead_letters_per_refused_state": round(len(dlq) / max(ledger.refused_states, 1), 3),
        "status_changes": ledger.status_changes,
        "chaos_status_mismatches": found["invoice status mismatches"] + found["customer status mismatches"],
        "void_never_created": found.pop("void invoices never created"),
        "found": found,
        "consumer_log": str(consumer.log_path),
    }


def passed(result: dict[str, Any]) -> bool:
    return (
        result["settled"]
        and result["writes_in_quiet_period"] == 0
        and result["writes_per_change"] <= result["writes_per_change_bound"]
        and result["dead_letters_per_refused_state"] == 1.0
        and not any(result["found"].values())
    )


def render(result: dict[str, Any], short: bool, seed: int) -> str:
    rows = [
        ("source changes that map to a Zoho call", result["mapped_changes"], ""),
        ("source changes that must cost nothing (notes, write-back columns)", result["unmapped_changes"], ""),
        ("Zoho write calls", result["write_calls"], ""),
        ("fault replies injected by the simulator", result["faults_played"], ""),
        ("consumer SIGKILLs", result["kills"], ""),
        (
            "**write calls per source change**",
            result["writes_per_change"],
            f"≤ {result['writes_per_change_bound']}",
        ),
        (
            f"**write calls in the final quiet {result['quiet_period_s']:g} s**",
            result["writes_in_quiet_period"],
            "0",
        ),
        ("**dead letters per distinct refused state**", result["dead_letters_per_refused_state"], "1"),
        ("status changes (invoices paid or voided, customers closed)", result["status_changes"], ""),
        (
            "void invoices never created (created and voided before the consumer saw either)",
            result.get("void_never_created", 0),
            "",
        ),
        (
            "**chaos_status_mismatches** (Zoho status differs from the source)",
            result["chaos_status_mismatches"],
            "0",
        ),
    ] + [(k, v, "0") for k, v in result["found"].items()]
    command = (
        "python -m benchmarks.chaos_relay --short"
        if short
        else "make chaos (python -m benchmarks.chaos_relay)"
    )
    return "\n".join(
        [
            f"Command: `{command}` (seed {seed}); date {infra.today()}; machine {infra.machine()};"
            f" {result['elapsed_s']} s.",
            "",
            f"**{'PASSED' if passed(result) else 'FAILED'}** (settled: {result['settled']}).",
            "",
            report.table(rows, ("relay lane", "measured", "target")),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.chaos_relay", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--no-write", action="store_true", help="print results only")
    args = parser.parse_args(argv)
    plan = SHORT if args.short else FULL
    result = asyncio.run(run(plan, args.seed, Path(tempfile.mkdtemp(prefix="zcdc-chaos-relay-"))))
    text = render(result, args.short, args.seed)
    print(text, flush=True)
    if not args.no_write and not args.short:
        report.merge_json(
            {
                "chaos_relay_writes_per_change": result["writes_per_change"],
                "chaos_relay_writes_per_change_bound": result["writes_per_change_bound"],
                "chaos_relay_writes_in_quiet_period": result["writes_in_quiet_period"],
                "chaos_relay_dead_letters_per_refused_state": result["dead_letters_per_refused_state"],
                "chaos_relay_status_mismatches": result["chaos_status_mismatches"],
                "chaos_relay_passed": passed(result),
                "chaos_relay_date": infra.today(),
            }
        )
        report.replace_section("chaos-relay", text)
    return 0 if passed(result) else 1


if __name__ == "__main__":
    sys.exit(main())
