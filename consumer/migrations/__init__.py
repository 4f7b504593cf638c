"""Versioned SQL migrations for zoho-cdc's own tables (`zoho-cdc migrate`, also run at start).

Files are `NNNN_name.sql`, applied in order, each in its own transaction, and recorded in
`zoho_cdc_schema_version`; an advisory lock keeps two starting consumers from racing.
"""

from __future__ import annotations

from importlib import resources

import psycopg

_LOCK_ID = 0x20C0DC  # advisory lock key shared by every zoho-cdc process


def migration_files() -> list[tuple[int, str, str]]:
    out = []
    for entry in resources.files(__name__).iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            out.append((int(name[:4]), name, entry.read_text()))
    return sorted(out)


def migrate(database_url: str) -> list[str]:
    """Apply pending migrations; returns the names applied."""
    applied: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS zoho_cdc_schema_version ("
                " version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM zoho_cdc_schema_version")}
            for version, name, body in migration_files():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(body)  # type: ignore[arg-type]
                    conn.execute(
                        "INSERT INTO zoho_cdc_schema_version (version, name) VALUES (%s, %s)", (version, name)
                    )
                applied.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied
