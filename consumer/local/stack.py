"""The single-machine stack behind `zoho-cdc dev up|down|status`.

`up` makes PostgreSQL ready (wal_level=logical, database, schema), starts Tansu on the port of
KAFKA_BOOTSTRAP_SERVERS unless a broker already listens there, starts the relay and (if the module
exists) the Zoho simulator as background processes, and writes `<state_dir>/stack.env` with the
effective settings. It is idempotent: what runs is reused. `down` stops only processes `up`
started, by recorded pid, after checking the pid still belongs to that program.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from consumer.local import broker as local_broker
from consumer.local import postgres as local_pg
from consumer.settings import Settings

RELAY_READY = "relay.task_started"


class StackError(Exception):
    """A stack component could not start; the message says which and where its log is."""


@dataclass
class Component:
    name: str
    pid: int
    marker: str  # a word of its command line, so a recycled pid is never signalled
    log: str
    port: int | None = None


def state_dir(settings: Settings) -> Path:
    path = Path(settings.state_dir).resolve()
    (path / "logs").mkdir(parents=True, exist_ok=True)
    return path


def _state_file(settings: Settings) -> Path:
    return state_dir(settings) / "stack.json"


def load_components(settings: Settings) -> dict[str, Component]:
    path = _state_file(settings)
    if not path.exists():
        return {}
    return {name: Component(**data) for name, data in json.loads(path.read_text()).items()}


def _save(settings: Settings, components: dict[str, Component]) -> None:
    _state_file(settings).write_text(json.dumps({k: asdict(v) for k, v in components.items()}, indent=2))


def is_running(component: Component) -> bool:
    try:
        cmdline = Path(f"/proc/{component.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        stat = Path(f"/proc/{component.pid}/stat").read_text()
    except OSError:
        return False
    return component.marker in cmdline and ") Z " not in stat


def _broker_address(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.kafka_bootstrap_servers.split(",")[0].strip().rpartition(":")
    return host, int(port)


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )


def _wait_for_line(
    proc: subprocess.Popen[bytes], log: Path, offset: int, needle: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_bytes()[offset:].decode(errors="replace")
        if needle in text:
            return
        if proc.poll() is not None:
            tail = "\n".join(text.strip().splitlines()[-5:])
            raise StackError(f"{proc.args[-1]} exited with code {proc.returncode}; see {log}:\n{tail}")
        time.sleep(0.2)
    raise StackError(f"{needle} did not appear in {log} within {timeout:.0f} s")


def simulator_available() -> bool:
    """True once the Zoho simulator package and its `zoho-cdc zoho-sim` command exist."""
    try:
        spec = importlib.util.find_spec("connectors.zoho_sim")
    except ImportError:
        return False
    if spec is None or spec.origin is None:  # a bare folder (namespace package) is not a simulator yet
        return False
    from consumer.commands.cli import app

    return any(command.name == "zoho-sim" for command in app.registered_commands)


def stack_env(settings: Settings, sim_port: int | None) -> dict[str, str]:
    """The settings other commands need to use this stack (written to stack.env)."""
    env = {
        "DATABASE_URL": settings.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "TOPIC_PREFIX": settings.topic_prefix,
        "STATE_DIR": str(state_dir(settings)),
    }
    if sim_port is not None:
        # The simulator's own default (fake) credentials; real ones are never written here.
        env.update(
            {
                "ZOHO_API_BASE": f"http://127.0.0.1:{sim_port}/billing/v1",
                "ZOHO_ACCOUNTS_URL": f"http://127.0.0.1:{sim_port}",
                "ZOHO_CLIENT_ID": "1000.SIMCLIENTID",
                "ZOHO_CLIENT_SECRET": "sim-client-secret",
                "ZOHO_REFRESH_TOKEN": "1000.simrefresh.0000000000000000",
                "ZOHO_ORGANIZATION_ID": "10234695",
            }
        )
    return env


def up(settings: Settings, relay_timeout: float = 120) -> dict[str, Component]:
    """Start whatever is not running yet; returns the components `up` owns."""
    sdir = state_dir(settings)
    components = {k: v for k, v in load_components(settings).items() if is_running(v)}

    local_pg.ensure_logical_decoding(settings.database_url)
    local_pg.ensure_database(settings.database_url)

    host, port = _broker_address(settings)
    if "broker" not in components and not local_broker.port_open(host, port):
        log = sdir / "logs" / "broker.log"
        proc = local_broker.start_broker(port, host=host, log_path=log)
        components["broker"] = Component("broker", proc.pid, "tansu", str(log), port)
        _save(settings, components)

    local_broker.ensure_topic(f"{host}:{port}", settings.dlq_topic)
    child_env = {**os.environ, **stack_env(settings, None)}
    sim_port = components["zoho_sim"].port if "zoho_sim" in components else None
    if "zoho_sim" not in components and simulator_available():
        sim_port = local_broker.free_port()
        log = sdir / "logs" / "zoho-sim.log"
        proc = _spawn(
            [sys.executable, "-m", "consumer", "zoho-sim", "--host", "127.0.0.1", "--port", str(sim_port)],
            log,
            child_env,
        )
        deadline = time.monotonic() + 20
        while not local_broker.port_open("127.0.0.1", sim_port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise StackError(f"the Zoho simulator did not start; see {log}")
            time.sleep(0.1)
        components["zoho_sim"] = Component("zoho_sim", proc.pid, "zoho-sim", str(log), sim_port)
        _save(settings, components)

    if "relay" not in components:
        log = sdir / "logs" / "relay.log"
        offset = log.stat().st_size if log.exists() else 0
        proc = _spawn([sys.executable, "-m", "consumer", "relay"], log, child_env)
        components["relay"] = Component("relay", proc.pid, "relay", str(log))
        _save(settings, components)
        _wait_for_line(proc, log, offset, RELAY_READY, relay_timeout)

    env_file = sdir / "stack.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in stack_env(settings, sim_port).items()))
    return components


def down(settings: Settings, timeout: float = 30, *, keep_slot: bool = False) -> list[str]:
    """Stop the processes `up` started (relay first, broker last); returns their names.

    When the relay `up` started is stopped, its replication slot is dropped too (unless `keep_slot`):
    nothing reads it any more, and an inactive slot makes PostgreSQL keep WAL forever. The next
    `up` creates it again and snapshots the tables."""
    components = load_components(settings)
    stopped = []
    for name in ("relay", "zoho_sim", "broker"):
        component = components.pop(name, None)
        if component is None or not is_running(component):
            continue
        os.kill(component.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while is_running(component) and time.monotonic() < deadline:
            time.sleep(0.2)
        if is_running(component):
            os.kill(component.pid, signal.SIGKILL)
        stopped.append(name)
        _save(settings, components)
    _save(settings, components)
    if "relay" in stopped and not keep_slot:
        try:
            if local_pg.drop_inactive_slot(settings.database_url, settings.debezium_slot_name):
                stopped.append(f"replication slot {settings.debezium_slot_name} (dropped so it pins no WAL)")
        except Exception as exc:  # noqa: BLE001 - stopping must not fail on the database being away
            stopped.append(f"replication slot left in place ({type(exc).__name__})")
    return stopped


def status(settings: Settings) -> list[tuple[str, str]]:
    """(component, description) for PostgreSQL, the broker and every process `up` recorded."""
    rows = []
    try:
        level = local_pg.wal_level(settings.database_url)
        rows.append(("postgres", f"up, wal_level={level}"))
    except Exception as exc:  # noqa: BLE001 - status reports, it does not fail
        rows.append(("postgres", f"down ({type(exc).__name__})"))
    host, port = _broker_address(settings)
    components = load_components(settings)
    owner = "started by dev up" if "broker" in components and is_running(components["broker"]) else "external"
    rows.append(
        ("kafka", f"listening on {host}:{port} ({owner})" if local_broker.port_open(host, port) else "down")
    )
    for name in ("relay", "zoho_sim"):
        component = components.get(name)
        if component is None:
            rows.append((name, "not started"))
        else:
            state = "running" if is_running(component) else "stopped"
            port_text = f", port {component.port}" if component.port else ""
            rows.append((name, f"{state} (pid {component.pid}{port_text}, log {component.log})"))
    return rows
