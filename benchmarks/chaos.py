"""`make chaos`: one scripted fault-injection run of the live sync, then a check of what Zoho holds.

    python -m benchmarks.chaos [--short] [--seed N] [--no-write]

What it does (the `--short` variant, used by tests/test_chaos_short.py, scales every number down and
never restarts PostgreSQL):

* a source history of customers and invoices created, updated, sent, paid, voided and deleted, and
  customers closed (some reopened), is written to a fresh database (final rows) and its Debezium
  events are **pre-produced** to a fresh broker in waves while the consumer runs (same bytes the
  relay writes; the relay itself is not in this run), with poison (undecodable) events mixed in;
* the Zoho simulator (in this process) answers 500/503 at random, holds replies past the client's
  timeout, drops replies after applying the change, serves a burst of 429s every N seconds, and
  refuses token requests for a while once (all access tokens are expired at the same moment, so the
  consumer must refresh while refused);
* `zoho-cdc run` runs as a subprocess and is SIGKILLed at random moments and restarted; in the full
  run PostgreSQL is restarted once.

The pass criteria are checked against the simulator's records and the database: exactly one Zoho
customer per live non-test source customer with its latest values and the status its source status
asks for (closed: inactive), exactly one Zoho invoice per source invoice with the source's status
(`chaos_status_mismatches` counts both kinds of status difference: target 0), no duplicates (of
payments either), the DLQ holding exactly the poison events, an
outcome in the sync log for every offset, and the committed offsets equal to the end offsets.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from benchmarks import infra, report
from benchmarks.workload import CUSTOMERS, INVOICES, History, customer_row, invoice_row
from connectors.zoho_sim import SimConfig, SimFaults, SimLimits, run_in_thread
from consumer.entities.customers.rules import customer_payload, customer_zoho_status
from consumer.entities.invoices.status import zoho_invoice_stage
from consumer.entities.registry import source_topics
from consumer.model.events import EntityType
from consumer.model.plan import MappingConfig
from consumer.pipeline.effects.dead_letter_topic import H_OFFSET, H_TOPIC


@dataclass(frozen=True)
class Plan:
    customers: int
    invoices: int
    kills: int
    poison: int
    waves: int
    wave_interval_s: float
    burst_every_s: float
    burst_size: int
    token_refusal_s: float
    restart_postgres: bool
    settle_timeout_s: float
    rate_per_minute: int
    settle_kills: int  # of `kills`, how many land after the fault phase, while the backlog drains


FULL = Plan(
    customers=1000,
    invoices=1000,
    kills=10,
    poison=10,
    waves=8,
    wave_interval_s=15.0,
    burst_every_s=20.0,
    burst_size=15,
    token_refusal_s=30.0,
    restart_postgres=True,
    settle_timeout_s=300.0,
    rate_per_minute=3000,
    settle_kills=4,
)
SHORT = Plan(
    customers=100,
    invoices=100,
    kills=3,
    poison=3,
    waves=3,
    wave_interval_s=6.0,
    burst_every_s=8.0,
    burst_size=10,
    token_refusal_s=6.0,
    restart_postgres=False,
    settle_timeout_s=90.0,
    rate_per_minute=3000,
    settle_kills=1,
)

FAULTS = {"error_500": 0.025, "error_503": 0.025, "timeout": 0.03, "lost_response": 0.03}
#: The client under faults: short timeouts (the simulator holds 3 % of replies past 2 s) and quick retries.
FAULTY_CLIENT = {
    "zoho_connect_timeout": 1.0,
    "zoho_read_timeout": 2.0,
    "zoho_retry_base_seconds": 0.2,
    "zoho_max_attempts": 10,
    "log_level": "info",
}
POISON_VALUES = (
    # each (key, value) must be unique bytes: the DLQ check finds them by value
    b'{"op": "c", "after": {"id": "nul\\u0000in-the-id"}, "source": {"lsn": 1}}',  # NUL in the id
    json.dumps({"op": "z" * 600_000, "after": {"id": "huge-op"}}).encode(),  # a 600 kB unknown op
    json.dumps({"op": "c", "after": {"id": "i" * 3000}, "source": {"lsn": 1}}).encode(),  # a 3 kB id
    b"{this is not json",
    b'{"op": "c", "after": "a string, not a row", "source": {}}',
    b'{"payload": 42}',
    b"\xff\xfe\x00 binary",
    b'{"op": "z", "after": {"id": "x"}, "source": {"lsn": 1}}',
    b"[1, 2, 3]",  # a value that is not an object
)
#: Keys of the poison records; None: the record's own `{"id": "poison-<n>"}`.
POISON_KEYS: dict[int, bytes] = {
    0: b'{"id": "nul\\u0000in-the-id"}',
    2: json.dumps({"id": "i" * 3000}).encode(),
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] chaos: {message}", flush=True)


# --- the source history ---------------------------------------------------------------------------


@dataclass
class Scenario:
    history: History
    poison: list[tuple[str, int]] = field(default_factory=list)  # (topic, offset) of each poison event
    injected: Counter[str] = field(default_factory=Counter)


def build_history(prefix: str, plan: Plan, rng: random.Random) -> Scenario:
    """Customers and invoices created, updated, sent, paid, voided and deleted, customers closed, with
    poison events mixed in."""
    h = History(prefix)
    scenario = Scenario(h)
    n_test = max(2, plan.customers // 50)
    customer_ids = []
    for n in range(plan.customers):
        kind = {"account_type": "internal_test"} if n >= plan.customers - n_test else {}
        customer_ids.append(h.create(CUSTOMERS, customer_row(n, rng, **kind)))
    scenario.injected["customer creates"] = plan.customers
    # invoices belong to the first 80 % of customers (never to internal_test ones, never to deleted ones)
    owners = customer_ids[: int(plan.customers * 0.8)]
    invoice_ids = [h.create(INVOICES, invoice_row(m, rng.choice(owners), rng)) for m in range(plan.invoices)]
    scenario.injected["invoice creates"] = plan.invoices
    steps: list[tuple[str, str]] = []
    steps += [("update_customer", c) for c in customer_ids for _ in range(rng.randint(1, 2))]
    steps += [("update_invoice", i) for i in invoice_ids if rng.random() < 0.5]
    steps += [("send_invoice", i) for i in invoice_ids if rng.random() < 0.4]
    steps += [("pay_invoice", i) for i in invoice_ids if rng.random() < 0.25]
    rng.shuffle(steps)
    voided = rng.sample(invoice_ids, plan.invoices // 10)
    deletable = [i for i in invoice_ids if i not in set(voided)]
    deleted_invoices = rng.sample(deletable, plan.invoices // 20)
    lonely = [c for c in customer_ids[int(plan.customers * 0.8) : plan.customers - n_test]]
    deleted_customers = rng.sample(lonely, max(1, plan.customers // 20))
    # closed accounts, with and without invoices; a few of them reopened later
    closable = [c for c in customer_ids[: plan.customers - n_test] if c not in set(deleted_customers)]
    closed = rng.sample(closable, max(2, plan.customers // 10))
    reopened = closed[: max(1, len(closed) // 4)]
    tail = [("void_invoice", i) for i in voided] + [("delete_invoice", i) for i in deleted_invoices]
    tail += [("delete_customer", c) for c in deleted_customers]
    tail += [("close_customer", c) for c in closed]
    rng.shuffle(tail)
    # the voids and deletes are interleaved with the second half of the updates
    half = len(steps) // 2
    second = steps[half:] + tail
    rng.shuffle(second)
    # a reopen always comes after its close
    for c in reopened:
        close_at = next(n for n, step in enumerate(second) if step == ("close_customer", c))
        second.insert(rng.randint(close_at + 1, len(second)), ("reopen_customer", c))
    for kind, row_id in steps[:half] + second:
        if kind == "update_customer":
            if row_id not in h.customers:
                continue
            n = rng.randrange(10**7)
            h.update(CUSTOMERS, row_id, phone=f"+27 82 {n:07d}", email=f"c{n}@example.co.za")
        elif kind in ("update_invoice", "send_invoice", "pay_invoice"):
            # Zoho refuses to edit a paid invoice and nothing takes one back, so the source does neither
            status = h.invoices[row_id]["status"] if row_id in h.invoices else "deleted"
            if status not in (("draft",) if kind == "send_invoice" else ("draft", "sent")):
                continue
            if kind == "update_invoice":
                h.update(INVOICES, row_id, due_date=dt.date(2026, 12, rng.randint(1, 31)))
            else:
                h.update(INVOICES, row_id, status="sent" if kind == "send_invoice" else "paid")
        elif kind == "close_customer":
            h.update(CUSTOMERS, row_id, status="closed")
        elif kind == "reopen_customer":
            h.update(CUSTOMERS, row_id, status="active")
        elif kind == "void_invoice":
            h.update(INVOICES, row_id, status="void")
        elif kind == "delete_invoice":
            h.delete(INVOICES, row_id)
        elif kind == "delete_customer":
            h.delete(CUSTOMERS, row_id)
        scenario.injected[kind.replace("_", " ") + "s"] += 1
    # poison: undecodable records at random positions of both topics
    topics = {CUSTOMERS: EntityType.CUSTOMER.topic(prefix), INVOICES: EntityType.INVOICE.topic(prefix)}
    for p in range(plan.poison):
        table = CUSTOMERS if p % 2 == 0 else INVOICES
        at = rng.randrange(len(h.events) // 10, len(h.events))
        kind = p % len(POISON_VALUES)
        key = POISON_KEYS.get(kind, json.dumps({"id": f"poison-{p}"}).encode())
        record = (topics[table], key, POISON_VALUES[kind])
        h.events.insert(at, record)
    scenario.injected["poison events"] = plan.poison
    per_topic: Counter[str] = Counter()
    for topic, _, value in h.events:
        if value in POISON_VALUES:
            scenario.poison.append((topic, per_topic[topic]))
        per_topic[topic] += 1
    return scenario


# --- the fault script -------------------------------------------------------------------------------


class Script:
    """The timed injections, run in a thread next to the waves of events."""

    def __init__(self, plan: Plan, sim: Any, consumer: infra.ConsumerProcess, rng: random.Random) -> None:
        self.plan = plan
        self.sim = sim
        self.consumer = consumer
        self.rng = rng
        self.done = threading.Event()
        self.injected: Counter[str] = Counter()
        self.unexpected_exits: list[str] = []
        self.timeline: list[int] = []
        self.lock = threading.Lock()

    def supervise(self) -> None:
        """Restart the consumer if it exits by itself (as systemd or Kubernetes would), and say so."""
        with self.lock:
            proc = self.consumer.proc
            if proc is not None and proc.poll() is not None:
                self.unexpected_exits.append(f"exit code {proc.returncode}: {self.consumer.log_tail(600)}")
                self.consumer.start()

    def bursts(self, until: float) -> None:
        """429 bursts every `burst_every_s` until `until`, counted from the consumer's first request, and on
        until one is served: a slow start (an early kill, the token refusal) never leaves a run without."""
        while self.sim.stats()["requests"] == 0:
            if self.done.wait(0.2):
                return
        until = max(until, time.monotonic() + self.plan.burst_every_s + 1.0)
        while not self.done.wait(self.plan.burst_every_s) and (
            time.monotonic() < until or self.sim.stats()["http_429"] == 0  # not one served yet: go on
        ):
            self.sim.set_faults(burst_429=self.plan.burst_size)
            self.injected["429 bursts"] += 1
        self.sim.set_faults(burst_429=0)  # no leftover 429s after the fault phase

    def kills(self, times: list[float]) -> None:
        for at in times:
            while time.monotonic() < at:
                if self.done.wait(0.2):
                    return
                self.supervise()
            with self.lock:
                self.consumer.kill()
                self.injected["SIGKILLs"] += 1
                time.sleep(self.rng.uniform(0.2, 1.5))
                self.consumer.start()
        while not self.done.wait(0.5):
            self.supervise()

    def visit(self, visitor: infra.ConsumerProcess, join_at: float, leave_at: float) -> None:
        """A second consumer joins the group and later leaves: two forced rebalances mid-run."""
        if self.done.wait(max(0.0, join_at - time.monotonic())):
            return
        visitor.start()
        self.injected["consumers joined and left (rebalances)"] += 1
        self.done.wait(max(0.0, leave_at - time.monotonic()))
        visitor.terminate()

    def sample_calls(self) -> None:
        """Zoho calls accepted per 10 s, to show throughput across the faults."""
        last = 0
        while not self.done.wait(10.0):
            stats = self.sim.stats()
            accepted = stats["requests"] - stats["http_429"] - stats.get("http_401", 0)
            self.timeline.append(accepted - last)
            last = accepted

    def token_refusal(self) -> None:
        self.sim.set_faults(token_refusal_seconds=self.plan.token_refusal_s)
        self.sim.expire_access_tokens()
        self.injected["token refusal windows"] += 1

    def restart_postgres(self) -> None:
        version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
            check=True,
            capture_output=True,
        )
        self.injected["PostgreSQL restarts"] += 1


# --- checks -------------------------------------------------------------------------------------------


def account_number(record: dict[str, Any], label: str = "Account Number") -> str | None:
    for f in record.get("custom_fields") or []:
        if f.get("label") == label:
            return str(f.get("value"))
    return None


def check(
    db: str, state: dict[str, Any], scenario: Scenario, dlq: list[Any], logged: dict[str, set[int]],
    ends: dict[str, int], committed: dict[str, int],
) -> dict[str, Any]:  # fmt: skip
    with psycopg.connect(db) as conn:
        cur = conn.cursor(row_factory=dict_row)
        customers = cur.execute("SELECT * FROM customers").fetchall()
        invoices = cur.execute("SELECT * FROM customer_invoices").fetchall()
        unsynced = cur.execute(
            "SELECT count(*) AS n FROM customers WHERE account_type <> 'internal_test'"
            " AND zoho_billing_customer_id IS NULL"
        ).fetchone()["n"]
    h = scenario.history
    zoho_by_account: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in state["customers"]:
        zoho_by_account[account_number(c) or ""].append(c)
    zoho_by_number: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i in state["invoices"]:
        zoho_by_number[i["invoice_number"]].append(i)
    found: Counter[str] = Counter({"customer status mismatches": 0, "invoice status mismatches": 0})
    examples: list[str] = []
    zoho_customer_of: dict[str, str] = {}
    for row in customers:
        records = zoho_by_account.get(row["account_number"], [])
        if row["account_type"] == "internal_test":
            found["internal_test customers in Zoho"] += len(records)
            continue
        found["source customers"] += 1
        if not records:
            found["missing customers"] += 1
            examples.append(f"missing customer {row['account_number']}")
            continue
        found["duplicate customers"] += len(records) - 1
        z = records[0]
        zoho_customer_of[str(row["id"])] = z["customer_id"]
        want = customer_payload(row, MappingConfig())
        wrong = [
            k
            for k in ("display_name", "email", "phone", "first_name", "last_name")
            if (z.get(k) or "") != (want.get(k) or "")
        ]
        want_status = customer_zoho_status(row, MappingConfig())  # closed: inactive
        if (z.get("status") or "active") != want_status:
            wrong.append(f"status {z.get('status')} (source {row['status']}: {want_status})")
            found["customer status mismatches"] += 1
        if wrong:
            found["customers with stale values"] += 1
            examples.append(f"customer {row['account_number']}: {wrong}")
    for row_id in h.deleted[CUSTOMERS]:
        number = None
        for topic, key, value in h.events:  # the account number of a deleted row is in its create event
            if value and key == json.dumps({"id": row_id}).encode() and topic.endswith(CUSTOMERS):
                number = json.loads(value)["after"]["account_number"]
                break
        records = zoho_by_account.get(number or "", [])
        found["duplicate customers"] += max(0, len(records) - 1)
        found["deleted customers still active in Zoho"] += sum(
            1 for r in records if r.get("status") != "inactive"
        )
    for row in invoices:
        found["source invoices"] += 1
        records = zoho_by_number.get(row["invoice_number"], [])
        if row["status"] == "void":  # never synced before it was voided: no Zoho invoice is right too
            if len(records) > 1:
                found["duplicate invoices"] += len(records) - 1
            if records and records[0]["status"] != "void":
                found["invoices with wrong status"] += 1
                found["invoice status mismatches"] += 1
                examples.append(f"invoice {row['invoice_number']} should be void, is {records[0]['status']}")
            continue
        if not records:
            found["missing invoices"] += 1
            examples.append(f"missing invoice {row['invoice_number']}")
            continue
        found["duplicate invoices"] += len(records) - 1
        z = records[0]
        problems = []
        if zoho_invoice_stage(z["status"]) != row["status"]:  # the Zoho status follows the source's
            problems.append(f"status {z['status']} (source {row['status']})")
            found["invoice status mismatches"] += 1
        if Decimal(str(z["total"])).quantize(Decimal("0.01")) != row["total_amount"]:
            problems.append(f"total {z['total']} != {row['total_amount']}")
        if z.get("due_date") != row["due_date"].isoformat():
            problems.append(f"due_date {z.get('due_date')} != {row['due_date']}")
        if z["customer_id"] != zoho_customer_of.get(str(row["customer_id"])):
            problems.append("customer")
        if problems:
            found["invoices with wrong status"] += 1
            examples.append(f"invoice {row['invoice_number']}: {problems}")
    for row in invoices:
        found[f"source invoices {row['status']}"] += 1
    for row in customers:
        if row["account_type"] != "internal_test":
            found[f"source customers {row['status']}"] += 1
    for row_id in h.deleted[INVOICES]:
        number = None
        for topic, key, value in h.events:
            if value and key == json.dumps({"id": row_id}).encode() and topic.endswith(INVOICES):
                number = json.loads(value)["after"]["invoice_number"]
                break
        records = zoho_by_number.get(number or "", [])
        found["duplicate invoices"] += max(0, len(records) - 1)
        found["deleted invoices not void in Zoho"] += sum(1 for r in records if r["status"] != "void")
    # the DLQ
    positions = []
    for m in dlq:
        headers = {k: v.decode() for k, v in (m.headers or ())}
        positions.append((headers.get(H_TOPIC), int(headers.get(H_OFFSET, -1))))
    expected = sorted(scenario.poison)
    found["DLQ records"] = len(dlq)
    found["DLQ distinct source offsets"] = len(set(positions))
    found["DLQ repeated copies (redelivered after a kill)"] = len(positions) - len(set(positions))
    found["DLQ records that are not poison"] = sum(1 for p in positions if p not in set(expected))
    found["poison events missing from DLQ"] = sum(1 for p in expected if p not in set(positions))
    dlq_exact = sorted(positions) == expected
    for (topic, offset), copies in sorted(Counter(positions).items()):
        if copies > 1:
            examples.append(f"DLQ holds {copies} copies of {topic}@{offset}")
    # the sync log and the offsets
    without = 0
    for topic, end in ends.items():
        have = logged.get(topic, set())
        without += sum(1 for off in range(end) if off not in have)
    found["offsets without outcome"] = without
    found["partitions with committed != end"] = sum(1 for t, e in ends.items() if committed.get(t) != e)
    found["unsynced non-test rows (user's query)"] = unsynced
    return {"found": dict(found), "dlq_exact": dlq_exact, "examples": examples[:15]}


# --- the run --------------------------------------------------------------------------------------------


async def run(plan: Plan, seed: int, workdir: Path) -> dict[str, Any]:
    rng = random.Random(seed)
    prefix = f"chaos{uuid.uuid4().hex[:6]}"
    scenario = build_history(prefix, plan, rng)
    events = scenario.history.events
    topics = source_topics(prefix)
    log(f"{len(events)} events ({plan.customers} customers, {plan.invoices} invoices, {plan.poison} poison)")
    started = time.monotonic()
    with infra.broker(workdir) as bootstrap, infra.fresh_database("chaos") as db:
        scenario.history.load(db)
        await infra.create_topics(bootstrap, (*topics, f"{prefix}.dlq"))
        sim = run_in_thread(
            SimConfig(
                seed=seed,
                token_refresh_limit=10_000,  # only the scripted refusal window refuses tokens
                limits=SimLimits(per_window=plan.rate_per_minute, daily=10_000_000, concurrency=10),
                faults=SimFaults(timeout_hold=3.0, **FAULTS),
            )
        )
        settings = infra.settings_for(
            sim, db, bootstrap, prefix,
            rate_per_window=plan.rate_per_minute,
            zoho_retry_max_seconds=120.0,
            zoho_token_backoff_seconds=1.0,
            zoho_token_backoff_max_seconds=4.0,
            commit_interval_seconds=0.5,
            **FAULTY_CLIENT,
        )  # fmt: skip
        consumer = infra.ConsumerProcess(settings, workdir / "consumer.log")
        visitor = infra.ConsumerProcess(settings, workdir / "consumer-visitor.log")
        script = Script(plan, sim, consumer, rng)
        waves = [
            events[i * len(events) // plan.waves : (i + 1) * len(events) // plan.waves]
            for i in range(plan.waves)
        ]
        produce_span = plan.wave_interval_s * (plan.waves - 1)
        t0 = time.monotonic()
        fault_end = t0 + produce_span + 10.0
        # Kills land at random moments of the fault phase, one right after the last 429 burst, and
        # `settle_kills` at random moments while the backlog drains afterwards. The organisation's rate is
        # kept in PostgreSQL, so no kill resets it: the run shows that it recovers from the 429 bursts by
        # itself (within about five clean windows, connectors/zoho/limits/aimd.py).
        early = plan.kills - 1 - plan.settle_kills
        kill_times = sorted(t0 + rng.uniform(2.0, produce_span + 5.0) for _ in range(early))
        kill_times.append(fault_end)
        kill_times += sorted(
            fault_end + rng.uniform(20.0, 20.0 + 12.0 * plan.settle_kills) for _ in range(plan.settle_kills)
        )
        threads = [
            threading.Thread(target=script.kills, args=(kill_times,), daemon=True),
            threading.Thread(target=script.bursts, args=(fault_end - 3.0,), daemon=True),
            threading.Thread(target=script.sample_calls, daemon=True),
            threading.Thread(
                target=script.visit,
                args=(visitor, t0 + produce_span / 3, t0 + 2 * produce_span / 3),
                daemon=True,
            ),
        ]
        consumer.start()
        for t in threads:
            t.start()
        try:
            for i, wave in enumerate(waves):
                await infra.produce(bootstrap, wave)
                log(f"wave {i + 1}/{plan.waves}: {len(wave)} events")
                if i == plan.waves // 3:
                    script.token_refusal()
                    log(f"token endpoint refuses for {plan.token_refusal_s:g} s; access tokens expired")
                if plan.restart_postgres and i == plan.waves // 2:
                    await asyncio.to_thread(script.restart_postgres)
                    log("PostgreSQL restarted")
                if i < plan.waves - 1:
                    await asyncio.sleep(plan.wave_interval_s)
            await asyncio.sleep(max(0.0, kill_times[-1] + 1 - time.monotonic()))
            log(f"all events produced, {script.injected['SIGKILLs']} kills; waiting for the sync to settle")
            truth = {}
            for m in await infra.read_all(bootstrap, topics):
                truth[m.topic] = max(truth.get(m.topic, 0), m.offset + 1)
            deadline = time.monotonic() + plan.settle_timeout_s
            committed: dict[str, int] = {}
            while time.monotonic() < deadline:
                committed = {
                    tp.topic: off
                    for tp, off in (
                        await infra.committed_offsets(bootstrap, settings.consumer_group, topics)
                    ).items()
                }
                if (
                    all(committed.get(t) == e for t, e in truth.items())
                    and script.injected["SIGKILLs"] >= plan.kills
                ):
                    break
                await asyncio.sleep(2.0)
            settled = time.monotonic() - t0
            log(f"settled after {settled:.0f} s: committed {committed} / end {truth}")
        finally:
            script.done.set()
            for t in threads:
                t.join(timeout=30)
            visitor.terminate()
            exit_code = consumer.terminate()
        stats = sim.stats()
        state = sim.state()
        reported = sim.duplicates()
        sim.stop()
        with psycopg.connect(db) as conn:
            logged: dict[str, set[int]] = defaultdict(set)
            for topic, offset in conn.execute(
                "SELECT topic, kafka_offset FROM zoho_sync_log WHERE consumer_group = %s",
                (settings.consumer_group,),
            ).fetchall():
                logged[topic].add(int(offset))
            outcomes = dict(
                conn.execute(
                    "SELECT outcome, count(*) FROM zoho_sync_log WHERE consumer_group = %s GROUP BY outcome",
                    (settings.consumer_group,),
                ).fetchall()
            )
        dlq = await infra.read_all(bootstrap, (settings.dlq_topic,))
        result = check(db, state, scenario, dlq, logged, truth, committed)
        result["found"]["duplicates reported by the simulator"] = sum(
            len(v) - 1 for k, v in reported.items() if k != "field" for v in v.values()
        )
        result["found"]["duplicate payments (one invoice paid twice)"] = sum(
            len(v) - 1 for v in reported.get("payments_by_reference", {}).values()
        )
        result["found"]["Zoho payments"] = len(state.get("payments", []))
    injected = Counter(scenario.injected)
    injected.update(script.injected)
    for fault, n in stats.get("faults_played", {}).items():
        injected[f"simulator {fault} replies"] = n
    injected["HTTP 429 served"] = stats["http_429"]
    injected["token requests refused"] = stats["token_refusals"]
    found = result["found"]
    duplicates_total = max(
        found.get("duplicate customers", 0) + found.get("duplicate invoices", 0),
        found.get("duplicates reported by the simulator", 0),
    )
    missing_total = found.get("missing customers", 0) + found.get("missing invoices", 0)
    status_mismatches = found.get("customer status mismatches", 0) + found.get("invoice status mismatches", 0)
    dlq_distinct_exact = (
        found.get("DLQ records that are not poison", 0) == 0
        and found.get("poison events missing from DLQ", 0) == 0
    )
    # every criterion except "each poison event exactly once in the DLQ" (see the known issue)
    core_passed = (
        duplicates_total == 0
        and missing_total == 0
        and found.get("customers with stale values", 0) == 0
        and found.get("invoices with wrong status", 0) == 0
        and status_mismatches == 0
        and found.get("internal_test customers in Zoho", 0) == 0
        and found.get("deleted customers still active in Zoho", 0) == 0
        and found.get("deleted invoices not void in Zoho", 0) == 0
        and dlq_distinct_exact
        and found.get("offsets without outcome", 0) == 0
        and found.get("partitions with committed != end", 0) == 0
    )
    passed = core_passed and result["dlq_exact"]
    return {
        "passed": passed,
        "core_passed": core_passed,
        "dlq_distinct_exact": dlq_distinct_exact,
        "injected": dict(injected),
        "found": found,
        "examples": result["examples"],
        "dlq_exact": result["dlq_exact"],
        "duplicates": duplicates_total,
        "missing": missing_total,
        "offsets_without_outcome": found.get("offsets without outcome", 0),
        "outcomes": outcomes,
        "unexpected_exits": script.unexpected_exits,
        "calls_per_10s": script.timeline,
        "final_exit_code": exit_code,
        "zoho_requests": stats["requests"],
        "chaos_status_mismatches": status_mismatches,
        "events": len(events),
        "elapsed_s": round(time.monotonic() - started),
        "consumer_log": str(consumer.log_path),
    }


def render(result: dict[str, Any], short: bool, seed: int) -> str:
    injected = report.table(sorted(result["injected"].items()), ("injected", "count"))
    found = report.table(sorted(result["found"].items()), ("found", "count"))
    f = result["found"]
    statuses = report.table(
        [
            ("invoices whose Zoho status is not the source's", f.get("invoice status mismatches", 0), "0"),
            ("customers whose Zoho status is not the source's", f.get("customer status mismatches", 0), "0"),
            ("**chaos_status_mismatches**", result["chaos_status_mismatches"], "0"),
            (
                "duplicate payments (one invoice paid twice)",
                f.get("duplicate payments (one invoice paid twice)", 0),
                "0",
            ),
        ],
        ("status", "found", "target"),
    )
    lines = [
        f"Command: `{'python -m benchmarks.chaos --short' if short else 'make chaos'}` (seed {seed}); "
        f"date {infra.today()}; machine {infra.machine()}; {result['elapsed_s']} s.",
        "",
        f"**{'PASSED' if result['passed'] else 'FAILED'}**: duplicates {result['duplicates']}, missing "
        f"{result['missing']}, DLQ exact {result['dlq_exact']}, offsets without outcome "
        f"{result['offsets_without_outcome']}, Zoho statuses differing from the source "
        f"(chaos_status_mismatches) {result['chaos_status_mismatches']}; consumer exits not caused by the "
        f"script: {len(result['unexpected_exits'])}; sync-log outcomes {result['outcomes']}.",
        "",
        f"Zoho calls accepted per 10 s over the run: {result['calls_per_10s']}.",
        "",
        injected,
        "",
        statuses,
        "",
        found,
    ]
    if result["examples"]:
        lines += ["", "Examples of what was found wrong:", ""] + [f"- {e}" for e in result["examples"]]
    if result["unexpected_exits"]:
        lines += ["", "Unexpected consumer exits:", ""] + [
            f"- `{e[:300]}`" for e in result["unexpected_exits"]
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true", help="the small variant run by make test")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--no-write", action="store_true", help="print results only")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    plan = SHORT if args.short else FULL
    workdir = Path(tempfile.mkdtemp(prefix="zcdc-chaos-"))
    result = asyncio.run(run(plan, args.seed, workdir))
    text = render(result, args.short, args.seed)
    print(json.dumps(result, indent=1, default=str) if args.json else text, flush=True)
    if not args.no_write and not args.short:
        report.merge_json(
            {
                "chaos_duplicates": result["duplicates"],
                "chaos_missing": result["missing"],
                "chaos_dlq_exact": result["dlq_exact"],
                "chaos_offsets_without_outcome": result["offsets_without_outcome"],
                "chaos_status_mismatches": result["chaos_status_mismatches"],
                "chaos_passed": result["passed"],
                "chaos_date": infra.today(),
                "chaos_injected": result["injected"],
                "chaos_found": result["found"],
                "chaos_unexpected_exits": len(result["unexpected_exits"]),
                "chaos_calls_per_10s": result["calls_per_10s"],
                "machine": infra.machine(),
            }
        )
        report.replace_section("chaos", text)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
