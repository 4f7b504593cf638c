"""Doctor on a PostgreSQL server with `wal_level=replica`: a throwaway cluster (`initdb` under a temp
dir, on its own free port, as the `postgres` user), never the shared server on 5432."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumer.jobs.doctor.postgres import postgres_checks
from consumer.local.broker import free_port
from consumer.settings import Settings

BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*command: str) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture
def replica_server() -> Iterator[str]:
    if not (BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 binaries are not installed")
    root = Path(tempfile.mkdtemp(prefix="zcdc-walrep-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    _as_postgres(str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust")
    _as_postgres(
        str(BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "start",
        "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c wal_level=replica",
    )  # fmt: skip
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        _as_postgres(str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_doctor_names_the_fix_for_a_server_without_logical_decoding(replica_server):
    checks = postgres_checks(Settings(_env_file=None, database_url=replica_server))  # type: ignore[call-arg]
    wal = next(c for c in checks if c.name == "wal_level")
    assert wal.state == "fail"
    assert wal.detail.startswith("PostgreSQL has wal_level=replica but Debezium needs wal_level=logical")
    assert "ALTER SYSTEM SET wal_level = logical" in wal.detail
    # the rest of what is missing on a bare server is named too, each with its fix
    names = {c.name for c in checks if c.state == "fail"}
    assert {"wal_level", "table customers", "table customer_invoices", "migrations"} <= names
