"""Scale-out benchmarks (issue 12): several `zoho-cdc run` instances sharing one organisation's budget.

    python -m benchmarks.run --only multi,single,burst

- multi: 3 instances (static membership), topics with 6 partitions, the simulator at R calls per
  window and every instance configured to R, 3R new customers; one instance is SIGKILLed in the
  middle of the second window's burst and restarted 2 s later.
- single: one instance, 3R waiting creates at R per window.
- burst: the real relay; 50 customers committed in one transaction at 100 calls/min; time until
  the last reaches the simulator.

Budget use = the time a perfect client needs under the sliding window (R at once, then R per
window: floor((N - 1) / R) windows for N calls) / the measured time, first accepted call to last,
both from the simulator's own arrival times. A "stall" is time between two accepted calls during
which the window had room (a full window is not a stall).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import infra
from benchmarks.workload import CUSTOMERS, History, customer_row
from connectors.zoho_sim import SimConfig, SimLimits, run_in_thread
from consumer.entities.registry import source_topics
from consumer.service.members import live_members

UNLIMITED = 100_000_000
RATE = 60  # calls per window (R)
WINDOW = 60.0  # seconds: R per minute, as Zoho counts it
PARTITIONS = 6
INSTANCES = 3


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def record_creates(handle: Any) -> list[float]:
    """Time (monotonic) of every customer create the in-thread simulator carries out."""
    customers = handle.simulator.customers
    created: list[float] = []
    original = customers.create

    def create_customer(*args: Any) -> Any:
        created.append(time.monotonic())
        return original(*args)

    customers.create = create_customer
    return created


def perfect_seconds(calls: int, rate: int, window: float) -> float:
    return ((calls - 1) // rate) * window


def stalls(accepted: list[float], rate: int, window: float) -> list[tuple[float, float]]:
    """(start, length) of every stretch between accepted calls during which the window had room."""
    out = []
    for i in range(1, len(accepted)):
        a, b = accepted[i - 1], accepted[i]
        # the window is full at a while `rate` calls lie in (a - window, a]; room from then on
        full_until = accepted[i - rate] + window if i >= rate else a
        start = max(a, full_until)
        if b > start:
            out.append((start, b - start))
    return out


async def create_partitioned_topics(bootstrap: str, topics: Iterable[str], partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    finally:
        await admin.close()


def members_of(db: str, group: str) -> list[dict[str, Any]]:
    with psycopg.connect(db) as conn:
        return live_members(conn, group)


def customers_in_sim(handle: Any) -> int:
    return len(handle.simulator.store.customers)


async def _scenario(
    workdir: Path, tag: str, instances: int, customers: int, *, kill: bool, static: bool = True
) -> dict[str, Any]:
    prefix = f"b{tag}{random.randrange(16**6):06x}"
    with infra.broker(workdir) as bootstrap, infra.fresh_database(tag) as db:
        topics = list(source_topics(prefix))
        await create_partitioned_topics(bootstrap, topics, PARTITIONS)
        history = History(prefix)
        for n in range(customers):
            history.create(CUSTOMERS, customer_row(n, random.Random(n)))
        history.load(db)
        handle = run_in_thread(
            SimConfig(seed=12, limits=SimLimits(per_window=RATE, window_seconds=WINDOW, daily=UNLIMITED))
        )
        accepted = infra.record_admissions(handle)
        creates = record_creates(handle)
        settings = infra.settings_for(
            handle, db, bootstrap, prefix, rate_per_window=RATE, window_seconds=WINDOW
        )
        procs = []
        for i in range(instances):
            extra = {"KAFKA_GROUP_INSTANCE_ID": f"zoho-cdc-{i}"} if static else {}
            procs.append(infra.ConsumerProcess(settings, workdir / f"{prefix}-{i}.log", extra_env=extra))
        timeline: list[tuple[float, list[dict[str, Any]]]] = []
        result: dict[str, Any] = {}
        try:
            for p in procs:
                p.start()
            infra.wait_until(
                lambda: (
                    len([m for m in members_of(db, settings.consumer_group) if m["partitions"]]) == instances
                ),
                120,
                what=f"{instances} members with partitions",
            )
            log(f"{tag}: {instances} instance(s) hold partitions; producing {customers} creates")
            await infra.produce(bootstrap, history.events)
            killed_at = restarted_at = None
            killed_pid = -1
            deadline = time.monotonic() + 20 * WINDOW
            while customers_in_sim(handle) < customers and time.monotonic() < deadline:
                now = time.monotonic()
                timeline.append((now, members_of(db, settings.consumer_group)))
                if kill and killed_at is None and accepted and now > accepted[0] + WINDOW + 0.6:
                    killed_pid = procs[0].pid
                    procs[0].kill()
                    killed_at = time.monotonic()
                    log(f"{tag}: SIGKILLed instance 0 at +{killed_at - accepted[0]:.1f} s")
                if killed_at is not None and restarted_at is None and now > killed_at + 2.0:
                    procs[0].start()
                    restarted_at = time.monotonic()
                    log(f"{tag}: restarted instance 0")
                await asyncio.sleep(0.25)
            done = customers_in_sim(handle)
            await asyncio.sleep(1.0)  # late calls, if any, still count
        finally:
            for p in procs:
                p.terminate()
            stats = handle.stats()
            duplicates = handle.duplicates()
            handle.stop()
        if done < customers:
            raise RuntimeError(
                f"{tag}: only {done} of {customers} customers reached Zoho:\n{procs[0].log_tail()}"
            )
    n = len(accepted)
    measured = accepted[-1] - accepted[0]
    perfect = perfect_seconds(n, RATE, WINDOW)
    result.update(
        customers=customers,
        instances=instances,
        calls=n,
        http_429=stats["http_429"],
        max_in_window=stats["max_in_window"],
        max_in_flight=stats["max_in_flight"],
        duplicates=sum(len(v) for k, v in duplicates.items() if k != "field"),
        measured_s=round(measured, 2),
        perfect_s=perfect,
        budget_use=round(perfect / measured, 4) if measured else None,
        # the same for the creates alone: crash-recovery lookups and other extra calls count against it
        creates_budget_use=round(perfect_seconds(len(creates), RATE, WINDOW) / (creates[-1] - creates[0]), 4),
        # how long the window's R calls took to go out, first window and last (a perfect client: 0)
        first_burst_s=round(accepted[min(RATE, n) - 1] - accepted[0], 2),
        last_burst_s=round(accepted[-1] - accepted[max(0, n - RATE)], 2),
        window_starts_s=[round(accepted[i] - accepted[0], 2) for i in range(0, n, RATE)],
    )
    if kill and killed_at is not None:
        around = [
            (s, g)
            for s, g in stalls(accepted, RATE, WINDOW)
            if killed_at - WINDOW <= s <= killed_at + 3 * WINDOW
        ]
        result["longest_stall_around_kill_s"] = round(max((g for _, g in around), default=0.0), 2)
        after = [t for t in accepted if t > killed_at]
        result["kill_to_next_call_s"] = round(after[0] - killed_at, 2) if after else None
        # each window's first call, late by how much against (previous window's first call + window + guard)?
        starts = [accepted[i] for i in range(0, n, RATE)]
        guard = settings.zoho_rate_guard_seconds
        result["window_start_delay_max_s"] = round(
            max((b - a - WINDOW - guard for a, b in zip(starts, starts[1:], strict=False)), default=0.0), 2
        )
        result["longest_gap_around_kill_s"] = round(
            max(
                (
                    b - a
                    for a, b in zip(accepted, accepted[1:], strict=False)
                    if killed_at - WINDOW <= a <= killed_at + 2 * WINDOW
                ),
                default=0.0,
            ),
            2,
        )
        # the restarted process (a new pid under the same instance id) holds partitions again
        back = [
            t
            for t, members in timeline
            if t > killed_at
            and any(
                m["instance"] == "zoho-cdc-0" and m["pid"] != killed_pid and m["partitions"] for m in members
            )
        ]
        result["kill_to_partitions_back_s"] = round(back[0] - killed_at, 2) if back else None
        result["killed_at_s"] = round(killed_at - accepted[0], 2)
    return result


async def bench_multi(workdir: Path) -> dict[str, Any]:
    r = await _scenario(workdir, "multi", INSTANCES, 3 * RATE, kill=True)
    log(f"multi: {r}")
    return {f"multi_{k}": v for k, v in r.items()}


async def bench_single(workdir: Path) -> dict[str, Any]:
    r = await _scenario(workdir, "single", 1, 3 * RATE, kill=False)
    log(f"single: {r}")
    return {f"single_{k}": v for k, v in r.items()}


async def bench_burst(workdir: Path) -> dict[str, Any]:
    """50 customers committed in one transaction, relay and `zoho-cdc run` at 100 calls/min."""

    prefix = f"bburst{random.randrange(16**6):06x}"
    with infra.broker(workdir) as bootstrap, infra.fresh_database("burst") as db:
        handle = run_in_thread(SimConfig(seed=13, limits=SimLimits(per_window=100, daily=UNLIMITED)))
        arrivals = infra.record_customer_calls(handle)
        relay = infra.relay_process(workdir, db, prefix, bootstrap)
        settings = infra.settings_for(handle, db, bootstrap, prefix, rate_per_window=100)
        consumer = infra.ConsumerProcess(settings, workdir / f"consumer-{prefix}.log")
        try:
            relay.start(wait=True, timeout=180)
            consumer.start()
            _, warm = infra.create_customers(db, 1)
            infra.wait_until(lambda: all(p in arrivals for p in warm), 180, what="warm-up customer in Zoho")
            # 50 new customers in one transaction (phones differ from the warm-up's)
            with psycopg.connect(db) as conn:
                phones = []
                for n in range(50):
                    row = customer_row(700_000 + n, random.Random(n), phone=f"+27 62 {n:07d}")
                    conn.execute(
                        "INSERT INTO customers (id, account_number, email, first_name, last_name, phone)"
                        " VALUES (%s, %s, %s, %s, %s, %s)",
                        (
                            row["id"],
                            row["account_number"],
                            row["email"],
                            row["first_name"],
                            row["last_name"],
                            row["phone"],
                        ),
                    )
                    phones.append(row["phone"])
            committed = time.time()
            infra.wait_until(lambda: all(p in arrivals for p in phones), 120, what="all 50 customers in Zoho")
        finally:
            consumer.terminate()
            if relay.running:
                relay.terminate()
            stats = handle.stats()
            handle.stop()
    times = sorted(arrivals[p] - committed for p in phones)
    return {
        "burst_changes": len(phones),
        "burst_last_s": round(times[-1], 2),
        "burst_first_s": round(times[0], 2),
        "burst_http_429": stats["http_429"],
    }
