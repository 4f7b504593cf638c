"""Doctor's PostgreSQL lines: the server, the source tables zoho-cdc reads and writes back to, the
publication and slot Debezium streams from, and zoho-cdc's own migrations.

Nothing here writes: every statement runs in a READ ONLY transaction that is rolled back. Whether the
write-back columns accept what zoho-cdc writes is answered by planning its own UPDATE (EXPLAIN), assigning
each value to a variable of the column's type (lengths, domains) and evaluating the table's CHECK
constraints, read from the catalog, over those values; no row is touched.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from consumer.entities.registry import specs
from consumer.jobs.doctor.checks import Check, fail, mib, ok
from consumer.jobs.status import replication_slot_facts
from consumer.migrations import migration_files
from consumer.model.events import EntityType
from consumer.pipeline.effects.write_back import SYNC_STATUSES, write_back_statement
from consumer.relay.preflight import wal_level_fix
from consumer.settings import Settings

AREA = "postgres"
# A Zoho record id as Billing returns it (19 digits in the specs' examples), for the type check.
SAMPLE_ZOHO_ID = "4815000000044895321"
SYNCED_AT = "2026-12-06T10:00:00+00:00"


def postgres_checks(settings: Settings) -> list[Check]:
    try:
        conn = psycopg.connect(settings.database_url, connect_timeout=5)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [
            fail(AREA, "server", f"cannot connect ({first}): check DATABASE_URL and that the server runs.")
        ]
    with conn:
        conn.read_only = True
        checks = [_wal_level(conn)]
        tables = []
        for spec in specs():
            table = spec.entity.table
            columns = _columns(conn, table)
            if not columns:
                checks.append(
                    fail(
                        AREA,
                        f"table {table}",
                        f"{table} does not exist in schema public of this database:"
                        " check DATABASE_URL or create the source schema.",
                    )
                )
                continue
            tables.append(table)
            checks.append(_replica_identity(conn, table))
            checks.append(_write_back_columns(conn, spec.entity, columns, spec.write_back_id_column))
        checks.append(
            _publication(conn, settings.debezium_publication_name, tables, [s.entity.table for s in specs()])
        )
        checks.append(_slot(conn, settings.debezium_slot_name))
        checks.append(_migrations(conn))
        conn.rollback()
    return checks


def _wal_level(conn: psycopg.Connection[Any]) -> Check:
    row = conn.execute("SHOW wal_level").fetchone()
    level = str(row[0]) if row else "?"
    if level != "logical":
        return fail(AREA, "wal_level", wal_level_fix(level))
    version = conn.execute("SHOW server_version").fetchone()
    return ok(AREA, "wal_level", f"logical (PostgreSQL {version[0] if version else '?'})")


def _columns(conn: psycopg.Connection[Any], table: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped"
        " ORDER BY a.attnum",
        (table,),
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows}


def _replica_identity(conn: psycopg.Connection[Any], table: str) -> Check:
    row = conn.execute(
        "SELECT c.relreplident, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relname = %s",
        (table,),
    ).fetchone()
    identity, has_key = (str(row[0]), bool(row[1])) if row else ("n", False)
    name = f"{table} replica identity"
    if identity == "f":
        return ok(AREA, name, "FULL (updates carry every old value)")
    if identity == "i":
        return ok(AREA, name, "USING INDEX")
    if identity == "d" and has_key:
        return ok(
            AREA, name, "DEFAULT (primary key; unchanged TOASTed values are filled from remembered images)"
        )
    return fail(
        AREA,
        name,
        f"{table} has no replica identity, so its updates and deletes cannot be streamed: add a primary key"
        f" or run ALTER TABLE {table} REPLICA IDENTITY FULL.",
    )


def written_rows(id_column: str) -> list[dict[str, str | None]]:
    """The write-back column values zoho-cdc sets on a source row, one dict per kind of write."""
    return [
        {
            id_column: SAMPLE_ZOHO_ID if status == "synced" else None,
            "zoho_sync_status": status,
            "zoho_last_synced_at": SYNCED_AT,
        }
        for status in SYNC_STATUSES
    ]


def _write_back_columns(
    conn: psycopg.Connection[Any], entity: EntityType, columns: dict[str, str], id_column: str
) -> Check:
    """Three proofs, none writing: PostgreSQL plans zoho-cdc's own write-back UPDATE (column types it can
    assign text to); each value zoho-cdc writes is assigned to a variable of the column's type (lengths,
    domains); the table's CHECK constraints on those columns hold for the values written together."""
    table = entity.table
    name = f"{table} write-back columns"
    written = (id_column, "zoho_sync_status", "zoho_last_synced_at")
    missing = [c for c in written if c not in columns]
    if missing:
        return fail(
            AREA,
            name,
            f"{table} lacks {', '.join(missing)}: add them (text, text, timestamptz)"
            " as in consumer/sql/source_schema.sql.",
        )
    planned = sql.SQL("EXPLAIN ") + sql.SQL(write_back_statement(entity))  # type: ignore[arg-type]
    refusal = _refusal(conn, planned, ([], [], [], []))
    if refusal:
        kinds = ", ".join(f"{c} {columns[c]}" for c in written)
        return fail(
            AREA, name, f"zoho-cdc's write-back cannot set {kinds} ({refusal}): make the first two text."
        )
    for values in written_rows(id_column):
        for column, value in values.items():
            if value is None or column == "zoho_last_synced_at":  # set to now() by the statement itself
                continue
            assign = sql.SQL("DO $doctor$ DECLARE v {}; BEGIN v := CAST({} AS text); END $doctor$").format(
                sql.SQL(columns[column]), sql.Literal(value)
            )
            refusal = _refusal(conn, assign)
            if refusal:
                return fail(
                    AREA,
                    name,
                    f"{table}.{column} is {columns[column]}, which does not take {value!r} that zoho-cdc"
                    f" writes ({refusal}): make it text.",
                )
    for constraint, expression in _checks_on(conn, table, written):
        for values in written_rows(id_column):
            image = sql.SQL(", ").join(
                sql.SQL("CAST({} AS {}) AS {}").format(
                    sql.Literal(values.get(col)), sql.SQL(kind), sql.Identifier(col)
                )
                for col, kind in columns.items()
            )
            query = sql.SQL("SELECT ({}) IS NOT FALSE FROM (SELECT {}) AS {}").format(
                sql.SQL(expression), image, sql.Identifier(table)
            )
            refusal = _refusal(conn, query)
            row = None if refusal else conn.execute(query).fetchone()
            if refusal or not (row and row[0]):
                status = values["zoho_sync_status"]
                return fail(
                    AREA,
                    name,
                    f"CHECK constraint {constraint} on {table} rejects zoho_sync_status={status!r},"
                    f" which zoho-cdc writes ({expression}): allow {_listed(SYNC_STATUSES)} in it.",
                )
    kinds = ", ".join(f"{c} {columns[c]}" for c in written)
    return ok(AREA, name, f"{kinds}; accept {', '.join(SYNC_STATUSES)} and a Zoho id")


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(repr(v) for v in values)


def _refusal(
    conn: psycopg.Connection[Any], query: sql.Composable, params: tuple[Any, ...] = ()
) -> str | None:
    """The first line of PostgreSQL's error for `query`, or None when it runs (inside a savepoint).
    Parameters are merged on the client: a DO block or EXPLAIN takes no server-side parameters."""
    try:
        with conn.transaction():
            psycopg.ClientCursor(conn).execute(query, params or None)
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def _checks_on(conn: psycopg.Connection[Any], table: str, columns: tuple[str, ...]) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT con.conname, pg_get_expr(con.conbin, con.conrelid) FROM pg_constraint con"
        " JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relname = %s AND con.contype = 'c' AND con.conkey && ARRAY("
        "   SELECT a.attnum FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = ANY(%s))",
        (table, list(columns)),
    ).fetchall()
    return [(str(name), str(expression)) for name, expression in rows]


def _publication(
    conn: psycopg.Connection[Any], publication: str, tables: list[str], synced: list[str]
) -> Check:
    """`tables`: the synced tables that exist (the ones it must hold); `synced`: all, for the fix."""
    name = f"publication {publication}"
    exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,)).fetchone()
    if not exists:
        return fail(
            AREA,
            name,
            f"publication {publication} does not exist: start the relay or connector once (it creates it,"
            " publication.autocreate.mode=filtered) or"
            f" CREATE PUBLICATION {publication} FOR TABLE {', '.join(synced)}.",
        )
    held = {
        str(r[0])
        for r in conn.execute(
            "SELECT tablename FROM pg_publication_tables WHERE pubname = %s AND schemaname = 'public'",
            (publication,),
        ).fetchall()
    }
    missing = [t for t in tables if t not in held]  # tables that exist but are not published
    if missing:
        return fail(
            AREA,
            name,
            f"publication {publication} lacks {', '.join(missing)}: ALTER PUBLICATION {publication} ADD TABLE"
            f" {', '.join(missing)}.",
        )
    return ok(AREA, name, f"holds {', '.join(tables)}")


def _slot(conn: psycopg.Connection[Any], slot_name: str) -> Check:
    facts = replication_slot_facts(conn, slot_name)
    name = f"slot {slot_name}"
    if facts["active"] is None:
        return fail(
            AREA,
            name,
            f"replication slot {slot_name} does not exist in this database: start the relay"
            " (zoho-cdc relay) or the Kafka Connect connector, which creates it.",
        )
    held = mib(facts["retained_wal_bytes"])
    if facts["active"]:
        return ok(AREA, name, f"active, holds {held} of WAL")
    return fail(
        AREA,
        name,
        f"replication slot {slot_name} is inactive and holds {held} of WAL, which PostgreSQL keeps until"
        " it is read: start the relay or connector, or if it is retired"
        f" SELECT pg_drop_replication_slot('{slot_name}').",
    )


def _migrations(conn: psycopg.Connection[Any]) -> Check:
    wanted = {version: name for version, name, _ in migration_files()}
    try:
        with conn.transaction():
            done = {int(r[0]) for r in conn.execute("SELECT version FROM zoho_cdc_schema_version").fetchall()}
    except psycopg.errors.UndefinedTable:
        done = set()
    pending = [wanted[v] for v in sorted(wanted) if v not in done]
    span = " to ".join(dict.fromkeys((pending[0], pending[-1]))) if pending else ""
    if pending:
        return fail(
            AREA,
            "migrations",
            f"{len(pending)} of {len(wanted)} not applied ({span}):"
            " run zoho-cdc migrate (run also applies them at start).",
        )
    return ok(AREA, "migrations", f"all {len(wanted)} applied")
