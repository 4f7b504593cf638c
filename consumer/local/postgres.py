"""Make the local PostgreSQL ready for Debezium: running, `wal_level=logical`, schema applied.

Only for the single-machine stack and tests: it restarts the local cluster with
`pg_ctlcluster`, which a production database is never subjected to.
"""

from __future__ import annotations

import glob
import os
import subprocess
import time
from importlib import resources
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from consumer.jobs.status import replication_slot_active


class LocalPostgresError(Exception):
    """The local PostgreSQL could not be prepared; the message says what to do."""


def _cluster_version() -> str:
    versions = sorted(os.path.basename(p) for p in glob.glob("/etc/postgresql/*"))
    if not versions:
        raise LocalPostgresError("No local PostgreSQL cluster found under /etc/postgresql.")
    return versions[-1]


def pg_ctlcluster(action: str) -> None:
    cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", _cluster_version(), "main", action]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 and "already running" not in (result.stderr + result.stdout):
        raise LocalPostgresError(f"{' '.join(cmd)} failed: {result.stderr.strip() or result.stdout.strip()}")


def admin_url(database_url: str) -> str:
    """The same server, connected to the `postgres` maintenance database."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path="/postgres"))


def wait_until_up(database_url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(admin_url(database_url), connect_timeout=2):
                return
        except psycopg.OperationalError as exc:
            last = exc
            time.sleep(0.3)
    raise LocalPostgresError(f"PostgreSQL did not accept connections within {timeout:.0f} s: {last}")


def ensure_running(database_url: str) -> None:
    try:
        with psycopg.connect(admin_url(database_url), connect_timeout=2):
            return
    except psycopg.OperationalError:
        pg_ctlcluster("start")
        wait_until_up(database_url)


def wal_level(database_url: str) -> str:
    with psycopg.connect(admin_url(database_url), connect_timeout=5) as conn:
        return str(conn.execute("SHOW wal_level").fetchone()[0])  # type: ignore[index]


def ensure_logical_decoding(database_url: str) -> bool:
    """Set wal_level=logical and restart the local cluster if needed. Returns True if it restarted."""
    ensure_running(database_url)
    if wal_level(database_url) == "logical":
        return False
    with psycopg.connect(admin_url(database_url), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET wal_level = logical")
    pg_ctlcluster("restart")
    wait_until_up(database_url)
    if wal_level(database_url) != "logical":
        raise LocalPostgresError("wal_level is still not 'logical' after a restart.")
    return True


def source_schema_sql() -> str:
    return resources.files("consumer").joinpath("sql/source_schema.sql").read_text()


def ensure_database(database_url: str) -> None:
    """Create the database named in the URL if missing, and apply the source schema."""
    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(admin_url(database_url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(source_schema_sql())


def drop_inactive_slot(database_url: str, slot_name: str, wait_seconds: float = 10) -> bool:
    """Drop the replication slot if it exists and nothing streams from it (waiting briefly for a relay
    that was just stopped to let go). An inactive slot pins WAL forever; returns True if dropped."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        deadline = time.monotonic() + wait_seconds
        while True:
            active = replication_slot_active(conn, slot_name)
            if active is None:
                return False
            if not active:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot_name,))
                return True
            if time.monotonic() > deadline:
                return False  # still streaming (another relay or a Connect worker): not ours to drop
            time.sleep(0.2)


def drop_database(database_url: str) -> None:
    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(admin_url(database_url), autocommit=True) as conn:
        # Replication slots pin a database; drop the ones on it before the database itself.
        # An active slot's walsender is ended first (a relay killed moments ago may still hold it).
        for slot, pid in conn.execute(
            "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = %s", (name,)
        ).fetchall():
            if pid is not None:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                for _ in range(50):
                    if not conn.execute(
                        "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
                    ).fetchone()[0]:
                        break
                    time.sleep(0.1)
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
