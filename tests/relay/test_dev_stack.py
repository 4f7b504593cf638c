"""`zoho-cdc dev up|status|down` against the real local PostgreSQL, Tansu and relay."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from consumer.local.broker import free_port, port_open

pytestmark = pytest.mark.relay


def dev(args: list[str], env: dict[str, str], cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", "dev", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_dev_up_is_idempotent_writes_stack_env_and_down_stops_only_what_it_started(database_url, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOHO_", "DEBEZIUM_", "RELAY_"))}
    env.update(
        DATABASE_URL=database_url,
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}",
        TOPIC_PREFIX=f"dev{port}",
        DEBEZIUM_SLOT_NAME=f"zcdc_dev{port}",
        STATE_DIR=str(tmp_path / "state"),
        RELAY_JVM_MAX_HEAP="256m",
    )
    try:
        first = dev(["up"], env, tmp_path)
        assert first.returncode == 0, first.stderr + first.stdout
        assert port_open("127.0.0.1", port)
        stack_env = (tmp_path / "state" / "stack.env").read_text()
        assert f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{port}" in stack_env
        assert f"DATABASE_URL={database_url}" in stack_env
        pids = (tmp_path / "state" / "stack.json").read_text()

        second = dev(["up"], env, tmp_path)
        assert second.returncode == 0, second.stderr
        assert (tmp_path / "state" / "stack.json").read_text() == pids  # nothing restarted

        status = dev(["status"], env, tmp_path)
        assert "relay" in status.stdout and "running" in status.stdout
        assert "wal_level=logical" in status.stdout
    finally:
        down = dev(["down"], env, tmp_path)
    assert down.returncode == 0
    assert "relay" in down.stdout and "broker" in down.stdout
    assert not port_open("127.0.0.1", port)
    # The relay's slot is dropped with it: an inactive slot would pin WAL on the user's PostgreSQL.
    assert f"replication slot zcdc_dev{port}" in down.stdout
    with psycopg.connect(database_url) as conn:
        slots = conn.execute("SELECT slot_name FROM pg_replication_slots WHERE database = current_database()")
        assert slots.fetchall() == []
