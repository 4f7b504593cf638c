"""The relay refuses to start with one clear sentence (no traceback, non-zero exit) when the
database is not set up for logical decoding, the broker is unreachable, or DATABASE_URL is wrong.
These checks run before the JVM starts, so these tests are fast."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from consumer.local.broker import free_port
from consumer.relay.errors import EngineFailed, StaleOffsetsError, WalLevelError
from consumer.relay.preflight import check_wal_level
from consumer.relay.runner import classify_failure
from consumer.settings import load_settings
from tests.fixtures_relay import relay_env


def run_relay_cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", "relay", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_clear_error(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for phrase in phrases:
        assert phrase in errors[0], errors[0]


@pytest.mark.parametrize("observed", ["replica", "minimal", " Replica "])
def test_wal_level_other_than_logical_is_refused_with_the_alter_system_and_restart_commands(observed):
    with pytest.raises(WalLevelError) as info:
        check_wal_level(observed)
    message = str(info.value)
    assert f"wal_level={observed.strip()}" in message
    assert "ALTER SYSTEM SET wal_level = logical" in message
    assert "restart" in message


def test_wal_level_logical_passes():
    check_wal_level("logical")


def test_debezium_slot_errors_become_the_reset_offsets_instruction():
    settings = load_settings(debezium_slot_name="myslot")
    error = classify_failure(
        settings, "Cannot stream: replication slot 'myslot' is ahead of the stored offset LSN"
    )
    assert isinstance(error, StaleOffsetsError)
    assert "zoho-cdc relay --reset-offsets" in str(error) and "'myslot'" in str(error)
    assert isinstance(classify_failure(settings, "Connection refused"), EngineFailed)


def test_unreachable_broker_is_one_sentence_naming_kafka_bootstrap_servers(database_url, tmp_path):
    env = relay_env(database_url, "terr", f"127.0.0.1:{free_port()}", tmp_path)
    result = run_relay_cli(env, tmp_path)
    assert_one_clear_error(result, "No Kafka broker answers", "KAFKA_BOOTSTRAP_SERVERS")


@pytest.mark.parametrize(
    "url, phrase",
    [
        ("postgresql://postgres@127.0.0.1:notaport/x", "DATABASE_URL"),
        ("mysql://root@127.0.0.1/x", "DATABASE_URL"),
    ],
)
def test_malformed_database_url_is_one_sentence_naming_database_url(url, phrase, kafka_bootstrap, tmp_path):
    result = run_relay_cli(relay_env(url, "terr", kafka_bootstrap, tmp_path), tmp_path)
    assert_one_clear_error(result, phrase)


def test_unreachable_database_is_one_sentence_without_the_password(kafka_bootstrap, tmp_path):
    url = f"postgresql://postgres:s3cret-pw@127.0.0.1:{free_port()}/nowhere"
    result = run_relay_cli(relay_env(url, "terr", kafka_bootstrap, tmp_path), tmp_path)
    assert_one_clear_error(result, "Cannot connect to PostgreSQL", "DATABASE_URL")
    assert "s3cret-pw" not in result.stderr + result.stdout


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture
def replica_only_postgres(tmp_path_factory) -> str:
    """A throwaway PostgreSQL cluster with wal_level=replica, owned by the postgres OS user."""
    pg_bin = _pg_bin()
    if pg_bin is None or shutil.which("runuser") is None or os.geteuid() != 0:
        pytest.skip("needs root, runuser and a local PostgreSQL installation to start a second cluster")
    base = Path(f"/tmp/zcdc-walcheck-{os.getpid()}-{time.monotonic_ns()}")
    base.mkdir(mode=0o777)
    shutil.chown(base, "postgres")
    data, port = base / "data", free_port()

    def as_postgres(*cmd: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, timeout=60)

    as_postgres(str(pg_bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    opts = f"-p {port} -c wal_level=replica -c listen_addresses=127.0.0.1 -k {base}"
    as_postgres(str(pg_bin / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(base / "log"), "-w", "start")
    try:
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        with psycopg.connect(url) as conn:
            assert conn.execute("SHOW wal_level").fetchone()[0] == "replica"
        yield url
    finally:
        as_postgres(str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


def test_relay_against_a_server_without_logical_decoding_says_how_to_enable_it(
    replica_only_postgres, kafka_bootstrap, tmp_path
):
    result = run_relay_cli(relay_env(replica_only_postgres, "terr", kafka_bootstrap, tmp_path), tmp_path)
    assert_one_clear_error(result, "wal_level=replica", "ALTER SYSTEM SET wal_level = logical", "restart")
