"""Services for one benchmark scenario: broker, database, simulator, settings and consumer processes.

Everything started here is stopped by the same context manager that started it, so a failing
scenario leaves no broker, database or process behind.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import SecretStr

from benchmarks.workload import customer_row
from connectors.zoho_sim import SimHandle
from consumer.local import broker as local_broker
from consumer.local import postgres as local_pg
from consumer.migrations import migrate
from consumer.pipeline.intake.end_offsets import topic_partitions
from consumer.settings import Settings

SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REPO = Path(__file__).resolve().parent.parent


def machine() -> dict[str, Any]:
    """Cores, memory and CPU model of this machine, as recorded with every result."""
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def today() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- broker and database ----------------------------------------------------------------------


@contextmanager
def broker(log_dir: Path | None = None) -> Iterator[str]:
    """A fresh Tansu broker on a free port; yields its bootstrap address."""
    port = local_broker.free_port()
    log = (log_dir or Path(tempfile.gettempdir())) / f"tansu-{port}.log"
    proc = local_broker.start_broker(port, log_path=log)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        local_broker.stop_process(proc)


def database_url_for(name: str) -> str:
    return SERVER_URL.rsplit("/", 1)[0] + "/" + name


@contextmanager
def fresh_database(tag: str) -> Iterator[str]:
    """A new database with the source schema and zoho-cdc's tables, dropped afterwards."""
    local_pg.ensure_logical_decoding(SERVER_URL)
    url = database_url_for(f"zcdc_bench_{tag}_{uuid.uuid4().hex[:8]}")
    local_pg.ensure_database(url)
    migrate(url)
    try:
        yield url
    finally:
        try:
            local_pg.drop_database(url)
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the scenario's own error
            print(f"warning: could not drop {url}: {exc}", file=sys.stderr)


# --- settings -----------------------------------------------------------------------------------


def settings_for(
    sim: SimHandle,
    database_url: str,
    bootstrap: str,
    prefix: str,
    *,
    rate_per_window: int,
    window_seconds: float = 60.0,
    concurrency: int = 5,
    **overrides: Any,
) -> Settings:
    """Settings of a consumer talking to `sim`, with the client paced to the given limits."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "kafka_bootstrap_servers": bootstrap,
        "topic_prefix": prefix,
        "consumer_group": f"{prefix}-live",
        "dlq_topic": f"{prefix}.dlq",
        "zoho_api_base": sim.base_url,
        "zoho_accounts_url": sim.accounts_url,
        "zoho_client_id": sim.client_id,
        "zoho_client_secret": sim.client_secret,
        "zoho_refresh_token": sim.refresh_token,
        "zoho_organization_id": sim.org_id,
        "zoho_rate_per_minute": rate_per_window,
        "zoho_rate_window_seconds": window_seconds,
        "zoho_rate_guard_seconds": 0.5 * window_seconds / 60.0,
        "zoho_max_concurrency": concurrency,
        "zoho_daily_limit": 10_000_000,
        "commit_interval_seconds": 0.5,
        "shutdown_timeout_seconds": 10.0,
        "log_level": "warning",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a `zoho-cdc` subprocess load exactly `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOHO_", "DEBEZIUM_", "RELAY_"))}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[name.upper()] = str(value)
    return env


# --- the consumer as a subprocess -----------------------------------------------------------------


@dataclass
class ConsumerProcess:
    """`zoho-cdc run` as a child process, killable and restartable like in production."""

    settings: Settings
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)

    def start(self) -> ConsumerProcess:
        assert self.proc is None or self.proc.poll() is not None, "consumer already running"
        env = settings_env(self.settings) | self.extra_env
        workdir = self.log_path.parent  # no .env file there
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "consumer", "run", "--no-status"],
                env=env,
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no drain, no final commit."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
            self.kills += 1

    def terminate(self, timeout: float = 60) -> int | None:
        """SIGTERM (drain and commit) and wait; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_tail(self, chars: int = 3000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[-chars:].decode(errors="replace")


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in kB; (0, 0) once it is gone."""
    rss = hwm = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return rss, hwm


# --- Kafka helpers --------------------------------------------------------------------------------


async def produce(bootstrap: str, records: Iterable[tuple[str, bytes | None, bytes | None]]) -> int:
    """Send records in order (per topic) and wait until the broker acknowledged all of them.

    The last record of each topic is sent alone, after everything else was acknowledged: Tansu 0.6
    reports a partition's end offset as (base offset of its last batch) + 1, so a multi-record last
    batch would hide its other records from every reader that stops at the end offset (backfills).
    """
    records = list(records)
    # one partition per topic, as Debezium's topics usually have (the broker's auto-create makes several)
    await create_topics(bootstrap, {topic for topic, _, _ in records})
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        max_batch_size=512 * 1024,
        max_request_size=8 * 1024 * 1024,
    )
    await producer.start()
    sent = 0
    try:
        last_index: dict[str, int] = {topic: i for i, (topic, _, _) in enumerate(records)}
        held = set(last_index.values())
        pending = []
        for i, (topic, key, value) in enumerate(records):
            if i in held:
                continue
            pending.append(await producer.send(topic, value, key=key))
            sent += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        for i in sorted(held):
            topic, key, value = records[i]
            await producer.send_and_wait(topic, value, key=key)
            sent += 1
    finally:
        await producer.stop()
    return sent


async def create_topics(bootstrap: str, topics: Iterable[str], partitions: int = 1) -> None:
    """Make sure the topics exist (one partition each by default, as Debezium's defaults create them)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()


async def partitions(bootstrap: str, topics: Iterable[str]) -> list[TopicPartition]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return await topic_partitions(consumer, topics)
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    tps = await partitions(bootstrap, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return await consumer.end_offsets(tps) if tps else {}
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, group: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    tps = await partitions(bootstrap, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {tp: (await consumer.committed(tp)) or 0 for tp in tps}
    finally:
        await consumer.stop()


async def read_all(bootstrap: str, topics: Iterable[str]) -> list[Any]:
    """Every record now in `topics`, in partition/offset order (raw aiokafka ConsumerRecords)."""
    tps = await partitions(bootstrap, topics)
    if not tps:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: list[Any] = []
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for messages in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                out.extend(messages)
    finally:
        await consumer.stop()
    return sorted(out, key=lambda m: (m.topic, m.partition, m.offset))


def wait_until(check: Any, timeout: float, interval: float = 0.5, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout:.0f} s (last: {last!r})")


# --- what the in-thread simulator saw -----------------------------------------------------------


def record_admissions(handle: Any) -> list[float]:
    """Arrival time (monotonic) of every request the in-thread simulator accepts."""
    sim = handle.simulator
    accepted: list[float] = []
    original = sim.admit

    def admit(*args: Any) -> Any:  # (authorization, organization[, endpoint])
        admission = original(*args)
        if admission.refusal is None:
            accepted.append(time.monotonic())
        return admission

    sim.admit = admit
    return accepted


def record_customer_calls(handle: Any) -> dict[str, float]:
    """Arrival time of the first customer call carrying each phone number (in-thread simulator)."""
    customers = handle.simulator.customers
    arrivals: dict[str, float] = {}
    for name in ("create", "update"):
        original = getattr(customers, name)

        def wrapped(*args: Any, _original: Any = original) -> Any:
            now = time.time()
            body = args[-1]
            phone = body.get("phone") if isinstance(body, dict) else None
            if phone:
                arrivals.setdefault(phone, now)
            return _original(*args)

        setattr(customers, name, wrapped)
    return arrivals


# --- source rows ---------------------------------------------------------------------------------


def insert_customer(conn: psycopg.Connection[Any], row: dict[str, Any]) -> None:
    """One source customer with the columns the benchmarks vary."""
    conn.execute(
        "INSERT INTO customers (id, account_number, email, first_name, last_name, phone)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (row["id"], row["account_number"], row["email"], row["first_name"], row["last_name"], row["phone"]),
    )


def create_customers(db: str, count: int) -> tuple[list[str], list[str]]:
    """Insert `count` customers in one transaction; their ids and phones."""
    ids, phones = [], []
    with psycopg.connect(db) as conn:
        for n in range(count):
            row = customer_row(800_000 + n, random.Random(n), phone=f"+27 61 {n:07d}")
            insert_customer(conn, row)
            ids.append(row["id"])
            phones.append(row["phone"])
    return ids, phones


def relay_process(workdir: Path, db: str, prefix: str, bootstrap: str) -> Any:
    """The embedded relay for `prefix`, its state and log in a folder of its own under `workdir`."""
    from tests.fixtures_relay import RelayProcess, relay_env  # the tests' relay runner, not a product module

    relay_dir = workdir / f"relay-{prefix}"
    relay_dir.mkdir(parents=True, exist_ok=True)
    return RelayProcess(
        env=relay_env(db, prefix, bootstrap, relay_dir / "state"),
        log_path=relay_dir / "relay.log",
        cwd=relay_dir,
    )
