"""Checks the relay runs before it starts the JVM, so common mistakes end in one clear sentence.

`check_wal_level` is pure (it judges an observed value); `observe_wal_level` and `check_broker` do the
I/O. None of them prints a password: connection errors name host, port and database only.
"""

from __future__ import annotations

import socket

import psycopg

from consumer.relay.errors import BrokerUnreachable, DatabaseUnreachable, WalLevelError
from consumer.relay.properties import database_parts


def wal_level_fix(observed: str) -> str:
    """The exact commands that switch a PostgreSQL server to logical decoding."""
    return (
        f"PostgreSQL has wal_level={observed} but Debezium needs wal_level=logical: run "
        'psql -c "ALTER SYSTEM SET wal_level = logical" as a superuser, then restart PostgreSQL '
        "(e.g. sudo systemctl restart postgresql, or pg_ctlcluster <version> main restart), "
        "or for the local stack run 'zoho-cdc dev up'."
    )


def check_wal_level(observed: str) -> None:
    """Raise WalLevelError unless the server's wal_level allows logical decoding."""
    if observed.strip().lower() != "logical":
        raise WalLevelError(wal_level_fix(observed.strip()))


def observe_wal_level(database_url: str, connect_timeout: int = 5) -> str:
    """SHOW wal_level on the database of DATABASE_URL (also proves it is reachable)."""
    db = database_parts(database_url)
    where = f"{db.hostname}:{db.port}/{db.dbname} as {db.user}"
    try:
        with psycopg.connect(database_url, connect_timeout=connect_timeout) as conn:
            row = conn.execute("SHOW wal_level").fetchone()
    except psycopg.Error as exc:
        reason = (
            _first_line(str(exc)).replace(db.password, "********") if db.password else _first_line(str(exc))
        )
        raise DatabaseUnreachable(
            f"Cannot connect to PostgreSQL at {where} ({reason}); "
            "check DATABASE_URL and that the server runs."
        ) from None
    return str(row[0]) if row else ""


def check_broker(bootstrap_servers: str, timeout: float = 3.0) -> None:
    """Raise BrokerUnreachable unless at least one bootstrap server accepts a TCP connection."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return
        except (OSError, ValueError):
            continue
    raise BrokerUnreachable(
        f"No Kafka broker answers at {bootstrap_servers}; start it (e.g. 'zoho-cdc dev up') "
        "or set KAFKA_BOOTSTRAP_SERVERS."
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no reason given"
