"""`zoho-cdc snapshot --table T`: ask Debezium for an incremental snapshot of one source table.

It inserts an `execute-snapshot` signal row into `debezium_signal`; the running connector (relay or
Kafka Connect) picks it up from the WAL and emits `op: r` events for every row, in chunks, while it
keeps streaming. Consumers treat them as upserts.
"""

from __future__ import annotations

import json
import uuid
from enum import StrEnum

import typer

SIGNAL_TABLE = "debezium_signal"


class SnapshotTable(StrEnum):
    customers = "customers"
    customer_invoices = "customer_invoices"


def snapshot_signal(table: str, signal_id: str | None = None) -> tuple[str, str, str]:
    """The (id, type, data) row Debezium reads as 'execute-snapshot' for public.<table>."""
    data = {"data-collections": [f"public.{table}"], "type": "incremental"}
    return (signal_id or str(uuid.uuid4()), "execute-snapshot", json.dumps(data))


def request_snapshot(database_url: str, table: str) -> str:
    """Insert the signal row; returns its id."""
    import psycopg

    row = snapshot_signal(table)
    with psycopg.connect(database_url, connect_timeout=5, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {SIGNAL_TABLE} (id, type, data) VALUES (%s, %s, %s)", row)
    return row[0]


def register(app: typer.Typer) -> None:
    @app.command("snapshot")
    def snapshot_command(
        table: SnapshotTable = typer.Option(..., "--table", help="Source table to re-read."),
    ) -> None:
        """Re-emit every row of a table as op=r events (Debezium incremental snapshot)."""
        import psycopg

        from consumer.commands.cli import fail, settings_or_exit
        from consumer.settings import mask_url_password

        settings = settings_or_exit()
        try:
            signal_id = request_snapshot(settings.database_url, table.value)
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            fail(
                f"Could not insert the snapshot signal into {SIGNAL_TABLE} at "
                f"{mask_url_password(settings.database_url)} ({first})."
            )
            return
        typer.echo(
            f"incremental snapshot of public.{table.value} requested (signal {signal_id}); "
            "the running relay or Kafka Connect connector will emit op=r events for every row."
        )
