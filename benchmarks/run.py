"""`make bench`: pipeline overhead, budget use, the seed scenario, latency and memory.

    python -m benchmarks.run [--only pipeline,budget,seed,latency,memory,multi,single,burst,doubt,neworg,
                              switchover,simulation]
                             [--scale 1.0]
                             [--budget-window 20] [--no-write]

Each benchmark starts its own broker, database and simulator and removes them afterwards. The
figures are ratios and counts measured within one run; results are merged into docs/benchmarks.json
and the generated section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from aiokafka import AIOKafkaConsumer
from psycopg.rows import dict_row

from benchmarks import in_doubt, infra, new_org, report, scale_out, simulation, switchover
from benchmarks.workload import CUSTOMERS, INVOICES, History, bulk_history, customer_row, envelope
from connectors.zoho_sim import SimConfig, SimLimits, run_in_thread, start_subprocess
from consumer import event_loop
from consumer.entities.registry import source_topics
from consumer.jobs.backfill import run_backfill
from consumer.logs import configure_logging
from consumer.model.events import EntityType
from consumer.service.wiring import sync_session

UNLIMITED = 100_000_000


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def new_prefix(tag: str) -> str:
    return f"b{tag}{uuid.uuid4().hex[:6]}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def outcome_counts(database_url: str, group: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT outcome, count(*) FROM zoho_sync_log WHERE consumer_group = %s GROUP BY outcome", (group,)
        ).fetchall()
    return {k: int(v) for k, v in rows}


def synced_entities(database_url: str, group: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT (entity_type, entity_id)) FROM zoho_sync_log"
            " WHERE consumer_group = %s AND outcome = 'synced'",
            (group,),
        ).fetchone()
    return int(row[0]) if row else 0


def entities_in_step(database_url: str) -> int:
    """Entities the backfill brought into step with Zoho: entity-map rows holding a Zoho id. The database
    is fresh, so each was created by this backfill, whether by its own event or first, for a child."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM zoho_entity_map WHERE zoho_id IS NOT NULL").fetchone()
    return int(row[0]) if row else 0


# --- 1. pipeline overhead -------------------------------------------------------------------------


async def raw_read(bootstrap: str, topics: tuple[str, ...]) -> tuple[int, float]:
    """Plain aiokafka consumption of every record in `topics`: (records, seconds)."""
    tps = await infra.partitions(bootstrap, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        total = sum(ends.values())
        seen = 0
        started = time.perf_counter()
        while seen < total:
            for messages in (await consumer.getmany(timeout_ms=500, max_records=500)).values():
                seen += len(messages)
        return seen, time.perf_counter() - started
    finally:
        await consumer.stop()


async def bench_pipeline(scale: float, workdir: Path) -> dict[str, Any]:
    customers, invoices = int(10_000 * scale), int(5_000 * scale)
    prefix = new_prefix("p")
    with infra.broker(workdir) as bootstrap, infra.fresh_database("pipeline") as db:
        history = bulk_history(prefix, customers, 3, invoices, 1)
        events = len(history.events)
        log(f"pipeline: {customers} customers, {invoices} invoices, {events} events; loading rows")
        history.load(db)
        topics = source_topics(prefix)
        await infra.create_topics(bootstrap, topics)
        started = time.perf_counter()
        await infra.produce(bootstrap, history.events)
        log(f"pipeline: produced {events} events in {time.perf_counter() - started:.1f} s")
        raw_n, raw_s = await raw_read(bootstrap, topics)
        raw_rate = raw_n / raw_s
        log(f"pipeline: (a) raw read {raw_n} in {raw_s:.2f} s = {raw_rate:,.0f}/s")
        # The simulator runs as its own process (it would otherwise share the GIL with the consumer);
        # display-name uniqueness is off because its check scans every customer (O(n) per create).
        sim = start_subprocess(
            None,
            "--rate-per-window", str(UNLIMITED),
            "--daily-limit", str(UNLIMITED),
            "--concurrency", "100",
            "--no-unique-display-names",
        )  # fmt: skip
        try:
            settings = infra.settings_for(
                sim, db, bootstrap, prefix, rate_per_window=UNLIMITED, concurrency=10
            )
            del history  # the harness's copy of the events: not part of the backfill's memory
            async with sync_session(settings) as session:
                cpu_started = time.process_time()
                with PeakRss() as rss:
                    first = await run_backfill(session, group_id=f"{prefix}-fill")
                cpu_b = time.process_time() - cpu_started
                stats_b = sim.stats()
                log(f"pipeline: (b) backfill {first.records} in {first.elapsed_s:.1f} s {first.outcomes}")
                log(f"pipeline: (b) peak RSS {rss.peak_mb:.1f} MB (started at {rss.start_mb:.1f} MB)")
                cpu_started = time.process_time()
                replay = await run_backfill(session, group_id=f"{prefix}-replay")
                cpu_c = time.process_time() - cpu_started
                stats_c = sim.stats()
                log(f"pipeline: (c) replay {replay.records} in {replay.elapsed_s:.1f} s {replay.outcomes}")
                # (d) resync of the customers, twice: the organisation is in step both times; the second
                # is the figure (the first may still settle what the backfill left, e.g. statuses).
                await run_backfill(session, entity="customers", resync=True, group_id=f"{prefix}-resync1")
                stats_d0 = sim.stats()
                resync = await run_backfill(
                    session, entity="customers", resync=True, group_id=f"{prefix}-resync2"
                )
                stats_d = sim.stats()
                log(f"pipeline: (d) resync {resync.records} in {resync.elapsed_s:.1f} s {resync.outcomes}")
            entities = synced_entities(db, f"{prefix}-fill")
            in_step = entities_in_step(db)
            duplicates = sim.duplicates()
        finally:
            sim.stop()
    calls_b = stats_b["requests"] - stats_b["by_status"].get("401", 0)
    calls_c = stats_c["requests"] - stats_b["requests"]
    reads_d, writes_d = sim_calls(stats_d)
    reads_d0, writes_d0 = sim_calls(stats_d0)
    distinct = customers + invoices
    fill_rate = first.records / first.elapsed_s
    replay_rate = replay.records / replay.elapsed_s
    return {
        "pipeline_customers": customers,
        "pipeline_invoices": invoices,
        "pipeline_events": events,
        "raw_read_events_per_s": round(raw_rate),
        "backfill_events_per_s": round(fill_rate),
        "backfill_elapsed_s": round(first.elapsed_s, 1),
        "backfill_outcomes": first.outcomes,
        "backfill_zoho_calls": calls_b,
        "synced_entities": entities,
        "synced_entities_per_s": round(in_step / first.elapsed_s),
        "entities_in_step": in_step,
        "entities_with_synced_row_per_s": round(entities / first.elapsed_s),
        "calls_per_entity": round(calls_b / distinct, 3),
        "backfill_ratio": round(fill_rate / raw_rate, 4),
        "replay_events_per_s": round(replay_rate),
        "replay_outcomes": replay.outcomes,
        "replay_zoho_calls": calls_c,
        "replay_already_applied": replay.extra.get("already_applied", 0),
        "noop_replay_ratio": round(replay_rate / raw_rate, 4),
        "pipeline_duplicates": sum(len(v) for k, v in duplicates.items() if k != "field"),
        # CPU seconds of this process (the consumer; the simulator runs apart): figures a busy machine
        # does not move, unlike the wall-clock rates above
        "backfill_cpu_s": round(cpu_b, 1),
        "synced_entities_per_cpu_s": round(in_step / cpu_b),
        "replay_cpu_s": round(cpu_c, 1),
        "replay_events_per_cpu_s": round(replay.records / cpu_c),
        "backfill_peak_rss_mb": round(rss.peak_mb, 1),
        "backfill_start_rss_mb": round(rss.start_mb, 1),
        "resync_entities": customers,
        "resync_outcomes": resync.outcomes,
        "resync_writes_in_sync": writes_d - writes_d0,
        "resync_reads": reads_d - reads_d0,
        "resync_reads_per_entity": round((reads_d - reads_d0) / customers, 4),
        "resync_elapsed_s": round(resync.elapsed_s, 1),
    }


def sim_calls(stats: dict[str, Any]) -> tuple[int, int]:
    """(reads, writes) the simulator served so far: GETs, and every other method."""
    reads = writes = 0
    for endpoint, by_status in stats["by_endpoint"].items():
        n = sum(by_status.values())
        if endpoint.startswith("GET "):
            reads += n
        else:
            writes += n
    return reads, writes


class PeakRss:
    """This process's resident memory, sampled every 0.1 s from /proc while the block runs (MB)."""

    def __enter__(self) -> PeakRss:
        self.start_mb = self.peak_mb = self._rss()
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *exc: object) -> None:
        self._task.cancel()
        self.peak_mb = max(self.peak_mb, self._rss())

    async def _sample(self) -> None:
        while True:
            self.peak_mb = max(self.peak_mb, self._rss())
            await asyncio.sleep(0.1)

    @staticmethod
    def _rss() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


# --- 2. budget use --------------------------------------------------------------------------------


async def bench_budget(window: float, customers: int, workdir: Path) -> dict[str, Any]:
    # 600 calls per window; a window shorter than 60 s keeps the ratio semantics and saves time.
    per_window = 600
    prefix = new_prefix("b")
    with infra.broker(workdir) as bootstrap, infra.fresh_database("budget") as db:
        history = History(prefix)
        for n in range(customers):
            history.create(CUSTOMERS, customer_row(n, random.Random(n)))
        history.load(db)
        await infra.produce(bootstrap, history.events)
        handle = run_in_thread(
            SimConfig(seed=3, limits=SimLimits(per_window=per_window, window_seconds=window, daily=UNLIMITED))
        )
        accepted = infra.record_admissions(handle)
        try:
            settings = infra.settings_for(
                handle, db, bootstrap, prefix, rate_per_window=per_window, window_seconds=window
            )
            log(f"budget: {customers} customers at {per_window} calls per {window:g} s")
            async with sync_session(settings) as session:
                result = await run_backfill(session, group_id=f"{prefix}-fill")
            stats = handle.stats()
        finally:
            handle.stop()
    span = accepted[-1] - accepted[0] if len(accepted) > 1 else float("nan")
    achieved_per_window = (len(accepted) - 1) / span * window
    return {
        "budget_customers": customers,
        "budget_limit_per_window": per_window,
        "budget_window_s": window,
        "budget_calls": len(accepted),
        "budget_span_s": round(span, 1),
        "budget_achieved_per_window": round(achieved_per_window, 1),
        "budget_use_ratio": round(achieved_per_window / per_window, 4),
        "budget_http_429": stats["http_429"],
        "budget_token_requests": stats["token_requests"],
        "budget_max_in_window": stats["max_in_window"],
        "budget_outcomes": result.outcomes,
    }


# --- 3. the seed scenario vs a naive sync -----------------------------------------------------------


def seed_rows(database_url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from consumer.local.seed import seed

    seed(database_url)
    with psycopg.connect(database_url) as conn:
        cur = conn.cursor(row_factory=dict_row)
        customers = cur.execute("SELECT * FROM customers ORDER BY account_number").fetchall()
        invoices = cur.execute("SELECT * FROM customer_invoices ORDER BY invoice_number").fetchall()
    return customers, invoices


def naive_sync(handle: Any, customers: list[dict[str, Any]]) -> dict[str, Any]:
    """The user's old script: one customer at a time, a fresh access token for every call."""
    from consumer.entities.customers.rules import customer_payload, is_internal_test
    from consumer.model.plan import MappingConfig

    synced = failed = token_requests = 0
    errors: list[str] = []
    started = time.perf_counter()
    with httpx.Client(timeout=10) as http:
        for row in customers:
            if is_internal_test(row):
                continue
            token_requests += 1
            token = http.post(
                f"{handle.accounts_url}/oauth/v2/token",
                data={
                    "grant_type": "refresh_token",
                    "client_id": handle.client_id,
                    "client_secret": handle.client_secret,
                    "refresh_token": handle.refresh_token,
                },
            ).json()
            if "access_token" not in token:
                failed += 1
                errors.append(
                    f"{row['account_number']}: token refused ({token.get('error_description') or token})"
                )
                continue
            reply = http.post(
                f"{handle.base_url}/customers",
                json=customer_payload(row, MappingConfig()),
                headers={
                    "Authorization": f"Zoho-oauthtoken {token['access_token']}",
                    "X-com-zoho-subscriptions-organizationid": handle.org_id,
                },
            )
            if reply.status_code < 300 and reply.json().get("code") == 0:
                synced += 1
            else:
                failed += 1
                errors.append(f"{row['account_number']}: HTTP {reply.status_code}")
    return {
        "naive_synced": synced,
        "naive_failed": failed,
        "naive_wall_s": round(time.perf_counter() - started, 2),
        "naive_token_requests": token_requests,
        "naive_errors": errors[:3],
    }


async def bench_seed(workdir: Path) -> dict[str, Any]:
    prefix = new_prefix("s")
    out: dict[str, Any] = {}
    with infra.broker(workdir) as bootstrap, infra.fresh_database("seed") as db:
        customers, invoices = seed_rows(db)
        records = []
        for i, row in enumerate(customers):
            records.append(envelope(prefix, CUSTOMERS, "r", dict(row), str(row["id"]), 60_000_000 + i, 0))
        for i, row in enumerate(invoices):
            records.append(envelope(prefix, INVOICES, "r", dict(row), str(row["id"]), 61_000_000 + i, 0))
        await infra.produce(bootstrap, records)
        # Zoho's real limits: 100 calls per minute, 10 token requests per 10 minutes (simulator defaults).
        handle = run_in_thread(SimConfig(seed=5, limits=SimLimits(daily=UNLIMITED)))
        try:
            settings = infra.settings_for(
                handle, db, bootstrap, prefix, rate_per_window=100, window_seconds=60
            )
            started = time.perf_counter()
            async with sync_session(settings) as session:
                result = await run_backfill(session, entity="customers", group_id=f"{prefix}-fill")
            wall = time.perf_counter() - started
            stats = handle.stats()
        finally:
            handle.stop()
        out.update(
            seed_customers=len(customers),
            seed_synced=result.outcomes.get("synced", 0),
            seed_skipped=result.outcomes.get("skipped", 0),
            seed_failed=result.outcomes.get("dead_lettered", 0) + result.outcomes.get("failed", 0),
            seed_wall_s=round(wall, 2),
            seed_token_requests=stats["token_requests"],
            seed_http_429=stats["http_429"],
        )
        naive_handle = run_in_thread(SimConfig(seed=6, limits=SimLimits(daily=UNLIMITED)))
        try:
            out.update(naive_sync(naive_handle, customers))
        finally:
            naive_handle.stop()
    log(f"seed: ours {out['seed_synced']} synced / naive {out['naive_synced']} synced")
    return out


# --- 4. latency with the real relay -----------------------------------------------------------------


def write_changes(db: str, rate: float, seconds: float, existing: list[str]) -> list[str]:
    """Commit `rate` changes per second, alternating a new customer and a phone update of an existing
    one (each existing customer is updated at most once, so no two changes can be coalesced)."""
    phones: list[str] = []
    interval = 1.0 / rate
    started = time.monotonic()
    n = 0
    with psycopg.connect(db, autocommit=True) as conn:
        while n * interval < seconds:
            if (delay := started + n * interval - time.monotonic()) > 0:
                time.sleep(delay)
            phone = f"+27 60 {n:07d}"
            if n % 2 == 0:
                row = customer_row(900_000 + n, random.Random(n), phone=phone)
                infra.insert_customer(conn, row)
            else:
                conn.execute("UPDATE customers SET phone = %s WHERE id = %s", (phone, existing[n // 2]))
            phones.append(phone)
            n += 1
    return phones


async def bench_latency(seconds: float, workdir: Path) -> dict[str, Any]:

    prefix = new_prefix("l")
    with infra.broker(workdir) as bootstrap, infra.fresh_database("latency") as db:
        # 5 changes/s is 300 calls/min: above Zoho's 100/min, so the limit is raised to 1,000/min here.
        handle = run_in_thread(SimConfig(seed=7, limits=SimLimits(per_window=1000, daily=UNLIMITED)))
        arrivals = infra.record_customer_calls(handle)
        relay = infra.relay_process(workdir, db, prefix, bootstrap)
        settings = infra.settings_for(handle, db, bootstrap, prefix, rate_per_window=1000, log_level="info")
        consumer = infra.ConsumerProcess(settings, workdir / f"consumer-{prefix}.log")
        try:
            relay.start(wait=True, timeout=180)
            consumer.start()
            # warm-up: customers that the measured minute updates, synced before it starts
            existing, warm = infra.create_customers(db, int(seconds * 5) // 2 + 5)
            infra.wait_until(lambda: all(p in arrivals for p in warm), 180, what="warm-up customers in Zoho")
            arrivals.clear()
            log(f"latency: relay and consumer up; writing 5 changes/s for {seconds:g} s")
            phones = write_changes(db, 5, seconds, existing)
            infra.wait_until(lambda: all(p in arrivals for p in phones), 120, what="every change in Zoho")
        finally:
            consumer.terminate()
            if relay.running:
                relay.terminate()
            handle.stop()
        records = await infra.read_all(bootstrap, (EntityType.CUSTOMER.topic(prefix),))
    committed: dict[str, int] = {}
    appended: dict[str, int] = {}  # when the relay's record reached the broker (producer timestamp)
    for m in records:
        if m.value is None:
            continue
        value = json.loads(m.value)
        phone = (value.get("after") or {}).get("phone")
        if phone and phone not in committed:
            committed[phone] = value["source"]["ts_ms"]
            appended[phone] = m.timestamp
    measured = [p for p in phones if p in committed and p in arrivals]
    latencies = [arrivals[p] - committed[p] / 1000 for p in measured]
    relay_part = [(appended[p] - committed[p]) / 1000 for p in measured]
    consumer_part = [arrivals[p] - appended[p] / 1000 for p in measured]
    return {
        "latency_changes": len(phones),
        "latency_measured": len(latencies),
        "latency_p50_s": round(percentile(latencies, 0.50), 3),
        "latency_p95_s": round(percentile(latencies, 0.95), 3),
        "latency_p99_s": round(percentile(latencies, 0.99), 3),
        "latency_max_s": round(max(latencies), 3) if latencies else None,
        "latency_mean_s": round(statistics.fmean(latencies), 3) if latencies else None,
        "latency_relay_p50_s": round(percentile(relay_part, 0.50), 3),
        "latency_relay_p99_s": round(percentile(relay_part, 0.99), 3),
        "latency_consumer_p50_s": round(percentile(consumer_part, 0.50), 3),
        "latency_consumer_p99_s": round(percentile(consumer_part, 0.99), 3),
    }


# --- 5. memory ------------------------------------------------------------------------------------


async def memory_run(
    events: int, seconds: float, workdir: Path, *, rebalance: bool = False
) -> dict[str, Any]:
    """Peak RSS of one consumer working through a backlog; with `rebalance`, a second consumer joins the
    group a third of the way in and leaves at two thirds, so partitions move away and back mid-backlog."""
    prefix = new_prefix("m")
    with infra.broker(workdir) as bootstrap, infra.fresh_database("memory") as db:
        history = History(prefix)
        rng = random.Random(events)
        for n in range(events):
            history.create(CUSTOMERS, customer_row(n, rng))
        history.load(db)
        # Four partitions, so the mid-way rebalance really splits the backlog between two members.
        await infra.create_topics(bootstrap, {topic for topic, _, _ in history.events}, partitions=4)
        await infra.produce(bootstrap, history.events)
        history = None  # type: ignore[assignment]  # free the copy before measuring
        handle = run_in_thread(SimConfig(seed=8, limits=SimLimits(per_window=100, daily=UNLIMITED)))
        settings = infra.settings_for(handle, db, bootstrap, prefix, rate_per_window=100)
        consumer = infra.ConsumerProcess(settings, workdir / f"consumer-{prefix}.log")
        visitor = infra.ConsumerProcess(settings, workdir / f"consumer-{prefix}-2.log")
        samples: list[int] = []
        rebalances = 0
        try:
            consumer.start()
            started = time.monotonic()
            while time.monotonic() - started < seconds and consumer.running:
                samples.append(infra.rss_kb(consumer.pid)[0])
                elapsed = time.monotonic() - started
                if rebalance and rebalances == 0 and elapsed > seconds / 3:
                    visitor.start()  # joins the group: partitions are revoked and reassigned
                    rebalances += 1
                elif rebalance and rebalances == 1 and elapsed > 2 * seconds / 3:
                    visitor.terminate()  # leaves: its partitions come back to the first consumer
                    rebalances += 1
                await asyncio.sleep(0.25)
            _, hwm = infra.rss_kb(consumer.pid)
            alive = consumer.running
        finally:
            visitor.terminate()
            consumer.terminate()
            stats = handle.stats()
            handle.stop()
        if not alive:
            raise RuntimeError(f"the consumer exited during the memory run:\n{consumer.log_tail()}")
        logged = sum(outcome_counts(db, settings.consumer_group).values())
    tail = samples[len(samples) // 2 :]
    return {
        "events": events,
        "peak_rss_mb": round(hwm / 1024, 1),
        "rss_end_mb": round(samples[-1] / 1024, 1),
        "rss_second_half_spread_mb": round((max(tail) - min(tail)) / 1024, 1) if tail else None,
        "zoho_calls": stats["requests"],
        "outcomes_logged": logged,
        "rebalances": rebalances,
    }


async def bench_memory(seconds: float, workdir: Path, scale: float) -> dict[str, Any]:
    small, large = int(50_000 * scale), int(200_000 * scale)
    out: dict[str, Any] = {}
    for n, key in ((small, "50k"), (large, "200k")):
        log(f"memory: {n} events backlog, consumer sampled for {seconds:g} s")
        r = await memory_run(n, seconds, workdir, rebalance=key == "200k")
        log(f"memory: {n} events -> peak {r['peak_rss_mb']} MB")
        out[f"peak_rss_mb_{key}"] = r["peak_rss_mb"]
        out[f"memory_{key}"] = r
    return out


# --- the report -----------------------------------------------------------------------------------

BENCHES = (
    *("pipeline", "budget", "seed", "latency", "memory", "multi", "single", "burst", "doubt", "neworg"),
    "switchover",
    "simulation",
)


def render(r: dict[str, Any]) -> str:
    def g(key: str) -> Any:
        return r.get(key, "n/a")

    def ok(key: str, test: Any) -> str:
        return report.verdict(test(r[key]) if key in r else None)

    rss_50k = r.get("peak_rss_mb_50k", 0)
    seed_ok = ok(
        "seed_synced", lambda v: v == 12 and r.get("seed_skipped") == 1 and r.get("seed_failed") == 0
    )
    rows = [
        ("1a raw aiokafka read", f"{g('raw_read_events_per_s')} events/s", "ceiling", ""),
        ("1b backfill (limits off)", f"{g('backfill_events_per_s')} events/s", "", ""),
        ("1b synced entities/s (brought into step; both passes)", g("synced_entities_per_s"), ">= 1,000",
         ok("synced_entities_per_s", lambda v: v >= 1000)),
        ("1b of which with their own `synced` row, per s", g("entities_with_synced_row_per_s"), "", ""),
        ("1b synced entities per CPU second of the consumer", g("synced_entities_per_cpu_s"), "", ""),
        ("1b Zoho calls per distinct entity", g("calls_per_entity"), "<= 1.01",
         ok("calls_per_entity", lambda v: v <= 1.01)),
        ("1b peak RSS of the backfill (in-process; at its start)",
         f"{g('backfill_peak_rss_mb')} MB ({g('backfill_start_rss_mb')} MB)", "< 250 MB",
         ok("backfill_peak_rss_mb", lambda v: v < 250)),
        ("1b backfill / raw", g("backfill_ratio"), "", ""),
        ("1c no-op replay / raw", g("noop_replay_ratio"), "", ""),
        ("1c no-op replay", f"{g('replay_events_per_s')} events/s", ">= 20,000",
         ok("replay_events_per_s", lambda v: v >= 20_000)),
        ("1c no-op replay, events per CPU second of the consumer", g("replay_events_per_cpu_s"), "", ""),
        ("1c Zoho calls in replay", g("replay_zoho_calls"), "0", ok("replay_zoho_calls", lambda v: v == 0)),
        ("1c newest records known by their replay memo (not decoded)", g("replay_already_applied"), "", ""),
        ("1d second resync of customers in step: writes", g("resync_writes_in_sync"), "0",
         ok("resync_writes_in_sync", lambda v: v == 0)),
        ("1d second resync: reads per entity", g("resync_reads_per_entity"), "<= 0.01",
         ok("resync_reads_per_entity", lambda v: v <= 0.01)),
        ("2 budget use (calls per window / limit)", g("budget_use_ratio"), ">= 0.97",
         ok("budget_use_ratio", lambda v: v >= 0.97)),
        ("2 HTTP 429", g("budget_http_429"), "0", ok("budget_http_429", lambda v: v == 0)),
        ("2 token requests", g("budget_token_requests"), "1", ok("budget_token_requests", lambda v: v == 1)),
        ("3 seed: ours synced / skipped / failed",
         f"{g('seed_synced')} / {g('seed_skipped')} / {g('seed_failed')}", "12 / 1 / 0", seed_ok),
        ("3 seed: ours wall time", f"{g('seed_wall_s')} s", "", ""),
        ("3 seed: naive synced / failed", f"{g('naive_synced')} / {g('naive_failed')}", "(baseline)", ""),
        ("3 seed: naive wall time", f"{g('naive_wall_s')} s", "", ""),
        ("4 latency p50", f"{g('latency_p50_s')} s", "<= 0.7 s", ok("latency_p50_s", lambda v: v <= 0.7)),
        ("4 latency p95", f"{g('latency_p95_s')} s", "", ""),
        ("4 of which relay (commit -> Kafka) p50 / p99",
         f"{g('latency_relay_p50_s')} / {g('latency_relay_p99_s')} s", "", ""),
        ("4 of which consumer (Kafka -> Zoho) p50 / p99",
         f"{g('latency_consumer_p50_s')} / {g('latency_consumer_p99_s')} s", "", ""),
        ("4 latency p99", f"{g('latency_p99_s')} s", "<= 2 s", ok("latency_p99_s", lambda v: v <= 2.0)),
        ("5 peak RSS, 50k backlog", f"{g('peak_rss_mb_50k')} MB", "< 250 MB",
         ok("peak_rss_mb_50k", lambda v: v < 250)),
        ("5 peak RSS, 200k backlog, a rebalance mid-way", f"{g('peak_rss_mb_200k')} MB", "< 250 MB, flat",
         ok("peak_rss_mb_200k", lambda v: v < 250 and v <= 1.15 * (rss_50k or v))),
        ("6 multi: 3 instances, 1 killed: HTTP 429", g("multi_http_429"), "0",
         ok("multi_http_429", lambda v: v == 0)),
        ("6 multi: duplicates", g("multi_duplicates"), "0", ok("multi_duplicates", lambda v: v == 0)),
        ("6 multi: budget use, all calls (perfect / measured)", g("multi_budget_use"), ">= 0.95",
         ok("multi_budget_use", lambda v: v >= 0.95)),
        ("6 multi: budget use, creates alone", g("multi_creates_budget_use"), ">= 0.95",
         ok("multi_creates_budget_use", lambda v: v >= 0.95)),
        ("6 multi: calls / creates", f"{g('multi_calls')} / {g('multi_customers')}", "", ""),
        ("6 multi: kill -> next accepted call", f"{g('multi_kill_to_next_call_s')} s", "", ""),
        ("6 multi: latest window start after the kill (vs window + guard)",
         f"{g('multi_window_start_delay_max_s')} s", "", ""),
        ("6 multi: longest gap between calls around the kill (bursts are a window apart)",
         f"{g('multi_longest_gap_around_kill_s')} s", "", ""),
        ("6 multi: longest stall around the kill", f"{g('multi_longest_stall_around_kill_s')} s", "<= 10 s",
         ok("multi_longest_stall_around_kill_s", lambda v: v <= 10)),
        ("6 multi: kill -> restarted instance holds partitions (restart at +2 s)",
         f"{g('multi_kill_to_partitions_back_s')} s", "", ""),
        ("6 multi: max calls in a window / in flight (sim)",
         f"{g('multi_max_in_window')} / {g('multi_max_in_flight')}", "<= R / <= 5", ""),
        ("7 single: budget use (perfect / measured)", g("single_budget_use"), ">= 0.97",
         ok("single_budget_use", lambda v: v >= 0.97)),
        ("7 single: HTTP 429", g("single_http_429"), "0", ok("single_http_429", lambda v: v == 0)),
        ("8 burst: 50 changes at 100/min, last in Zoho", f"{g('burst_last_s')} s", "<= 5 s",
         ok("burst_last_s", lambda v: v <= 5)),
        (f"9 in doubt: {g('doubt_invoices')} invoices paid, half of all writes applied then 502: payments"
         " beyond one per invoice", g("doubt_duplicate_payments"), "0",
         ok("doubt_duplicate_payments", lambda v: v == 0)),
        ("9 in doubt: invoices left unpaid / payment calls (of which answered 502)",
         f"{g('doubt_unpaid_invoices')} / {g('doubt_payment_calls')}"
         f" ({g('doubt_payment_calls_answered_502')})",
         "0 / N", ok("doubt_unpaid_invoices", lambda v: v == 0)),
        ("10 neworg: entities missing in a second organisation after backfill",
         f"{g('neworg_backfill_missing')} of {g('neworg_entities')}", "0",
         ok("neworg_backfill_missing", lambda v: v == 0)),
        ("10 neworg: second backfill's calls / first organisation's calls / source ids changed",
         f"{g('neworg_second_backfill_calls')} / {g('neworg_first_org_calls_during')}"
         f" / {g('neworg_source_ids_changed')}", "0 / 0 / 0", ""),
        ("11 switch-over: Zoho calls per adopted record (`adopt`, then live)", g("adopt_calls_per_record"),
         "<= 2", ok("adopt_calls_per_record", lambda v: v <= 2)),
        ("11 switch-over: in Zoho / created / duplicates / stored ids kept",
         f"{g('adopt_zoho_customers')} / {g('adopt_created')} / {g('adopt_duplicates')} /"
         f" {g('adopt_stored_ids_kept')}", "13 / 3 / 0 / 10",
         ok("adopt_duplicates", lambda v: v == 0 and r.get("adopt_zoho_customers") == 13)),
        ("11 switch-over: writes", g("adopt_writes"), "<= 13", ok("adopt_writes", lambda v: v <= 13)),
        ("11 switch-over, live sync alone: calls per adopted record", g("adopt_live_only_calls_per_record"),
         "", ""),
        ("12 simulation: seeds in CI / seeds per second / invariant violations",
         f"{g('simulation_seeds_in_ci')} / {g('simulation_seeds_per_s')}"
         f" / {g('simulation_invariant_violations')}",
         ">= 2000 / - / 0", ok("simulation_invariant_violations", lambda v: v == 0)),
    ]  # fmt: skip
    head = (
        f"Command: `{r.get('bench_command')}`; date {r.get('bench_date')}; machine {r.get('machine')}; "
        f"total {r.get('bench_total_s')} s.\n\n"
    )
    reruns = [f"`{v}`" for v in sorted({v for k, v in r.items() if k.startswith("bench_rerun_")})]
    if reruns:
        head += "Figures re-measured since: " + "; ".join(reruns) + ".\n\n"
    details = (
        "\n\nRaw figures of this run (JSON):\n\n```json\n"
        + json.dumps(
            {k: v for k, v in r.items() if k not in ("machine",)}, indent=1, sort_keys=True, default=str
        )
        + "\n```\n"
    )
    return head + report.table(rows, ("figure", "measured", "target", "verdict")) + details


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    only = args.only.split(",") if args.only else list(BENCHES)
    workdir = Path(tempfile.mkdtemp(prefix="zcdc-bench-"))
    command = "python -m benchmarks.run " + " ".join(sys.argv[1:])
    if not args.only and args.scale == 1.0:
        results: dict[str, Any] = {"bench_command": "make bench", "bench_date": infra.today()}
    else:  # a partial run updates its own figures and says so, keeping the full run's command and date
        results = {f"bench_rerun_{name}": f"{command} ({infra.today()})" for name in only}
    results.update(machine=infra.machine(), bench_scale=args.scale)
    started = time.monotonic()
    if "pipeline" in only:
        results.update(await bench_pipeline(args.scale, workdir))
    if "budget" in only:
        results.update(await bench_budget(args.budget_window, int(2000 * min(1.0, args.scale)), workdir))
    if "seed" in only:
        results.update(await bench_seed(workdir))
    if "latency" in only:
        results.update(await bench_latency(args.latency_seconds, workdir))
    if "memory" in only:
        results.update(await bench_memory(args.memory_seconds, workdir, args.scale))
    if "multi" in only:
        results.update(await scale_out.bench_multi(workdir))
    if "single" in only:
        results.update(await scale_out.bench_single(workdir))
    if "burst" in only:
        results.update(await scale_out.bench_burst(workdir))
    if "doubt" in only:
        results.update(await in_doubt.bench_doubt(workdir))
    if "neworg" in only:
        results.update(await new_org.bench_neworg(workdir))
    if "switchover" in only:
        results.update(await switchover.bench_switchover(workdir))
    if "simulation" in only:
        results.update(simulation.bench_simulation())
    if "bench_date" in results:
        results["bench_total_s"] = round(time.monotonic() - started)
        results["date"] = results["bench_date"]
    log(f"logs and scratch files in {workdir}")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BENCHES)}")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply the data sizes (1.0 = as specified)"
    )
    parser.add_argument(
        "--budget-window", type=float, default=20.0, help="rate window of benchmark 2, seconds"
    )
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--memory-seconds", type=float, default=30.0)
    parser.add_argument("--no-write", action="store_true", help="print results only")
    args = parser.parse_args(argv)
    configure_logging("warning")
    results = event_loop.run(main_async(args))
    print(json.dumps(results, indent=1, default=str))
    if not args.no_write:
        merged = report.merge_json(results)
        report.replace_section("bench", render(merged))
        log(f"wrote {report.JSON_PATH} and {report.MD_PATH}")


if __name__ == "__main__":
    main()
