"""Fixtures for the embedded Debezium relay: run `zoho-cdc relay` as a real subprocess.

`relay_process(database_url, topic_prefix, kafka_bootstrap)` starts the relay (JVM and all), waits until
its Debezium task runs, and returns a `RelayProcess` to stop, kill or restart it; every relay still
running at the end of the test is killed. `read_records` reads what the relay wrote to Kafka.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

STARTED_EVENT = "relay.task_started"


def relay_env(
    database_url: str,
    topic_prefix: str,
    kafka_bootstrap: str,
    state_dir: Path,
    **extra: str,
) -> dict[str, str]:
    """Environment for a relay: a slot name unique to the topic prefix, fast offset flushes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOHO_", "DEBEZIUM_", "RELAY_"))}
    env.update(
        {
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "TOPIC_PREFIX": topic_prefix,
            "DEBEZIUM_SLOT_NAME": f"zcdc_{topic_prefix}".lower(),
            "DEBEZIUM_PUBLICATION_NAME": "zoho_cdc",
            "STATE_DIR": str(state_dir),
            "RELAY_OFFSET_FLUSH_INTERVAL_MS": "300",
            "RELAY_JVM_MAX_HEAP": "256m",
            "LOG_LEVEL": "info",
        }
    )
    env.update(extra)
    return env


@dataclass
class RelayProcess:
    """One `zoho-cdc relay` subprocess and its combined stdout/stderr log file."""

    env: dict[str, str]
    log_path: Path
    cwd: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _log_offset: int = field(default=0, repr=False)

    def start(self, wait: bool = True, timeout: float = 90) -> RelayProcess:
        """(Re)start the relay; with wait=True, return once its Debezium task is running."""
        assert self.proc is None or self.proc.poll() is not None, "relay already running"
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "consumer", "relay"],
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.starts += 1
        if wait:
            self.wait_for_log(STARTED_EVENT, timeout)
        return self

    def log_text(self, since_start: bool = False) -> str:
        if not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()
        return (
            data[self._log_offset :].decode(errors="replace")
            if since_start
            else data.decode(errors="replace")
        )

    def wait_for_log(self, needle: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_text(since_start=True):
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"relay exited {self.proc.returncode} before '{needle}':\n{self.log_text()}"
                )
            time.sleep(0.2)
        raise AssertionError(f"relay did not log '{needle}' within {timeout} s:\n{self.log_text()[-4000:]}")

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final offset flush."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def relay_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RelayProcess]]:
    """Factory: relay_process(database_url, topic_prefix, kafka_bootstrap, wait=True, **env)."""
    started: list[RelayProcess] = []

    def factory(
        database_url: str, topic_prefix: str, kafka_bootstrap: str, wait: bool = True, **extra_env: str
    ) -> RelayProcess:
        workdir = tmp_path_factory.mktemp(f"relay-{topic_prefix}")
        relay = RelayProcess(
            env=relay_env(database_url, topic_prefix, kafka_bootstrap, workdir / "state", **extra_env),
            log_path=workdir / "relay.log",
            cwd=workdir,
        )
        started.append(relay)
        return relay.start(wait=wait)

    yield factory
    for relay in started:
        if relay.running:
            relay.kill()


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    key: Any
    value: Any  # None for a tombstone

    @property
    def op(self) -> str | None:
        return None if self.value is None else self.value.get("op")


async def _read(bootstrap: str, topics: list[str]) -> list[KafkaRecord]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=10000
    )
    await consumer.start()
    out: list[KafkaRecord] = []
    try:
        await consumer.topics()
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not tps:
            return out
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for tp, messages in (await consumer.getmany(timeout_ms=1000)).items():
                for m in messages:
                    out.append(
                        KafkaRecord(
                            topic=tp.topic,
                            partition=tp.partition,
                            offset=m.offset,
                            key=None if m.key is None else json.loads(m.key),
                            value=None if m.value is None else json.loads(m.value),
                        )
                    )
    finally:
        await consumer.stop()
    return sorted(out, key=lambda r: (r.topic, r.partition, r.offset))


def read_records(bootstrap: str, topics: list[str]) -> list[KafkaRecord]:
    """Every record currently in `topics` (JSON-decoded key and value), in partition/offset order."""
    return asyncio.run(_read(bootstrap, topics))


def wait_for_records(
    bootstrap: str,
    topics: list[str],
    done: Callable[[list[KafkaRecord]], bool],
    timeout: float = 60,
    relay: RelayProcess | None = None,
) -> list[KafkaRecord]:
    """Poll the topics until `done(records)` holds; fail with what was there on timeout."""
    deadline = time.monotonic() + timeout
    records: list[KafkaRecord] = []
    while time.monotonic() < deadline:
        records = read_records(bootstrap, topics)
        if done(records):
            return records
        if relay is not None and relay.proc is not None and relay.proc.poll() is not None:
            raise AssertionError(f"relay exited {relay.proc.returncode}:\n{relay.log_text()[-4000:]}")
        time.sleep(0.3)
    raise AssertionError(f"condition not met within {timeout} s; {len(records)} records: {records[-10:]}")
