"""`zoho-cdc reconcile [--fix] [--json] [--quick]`: compare the source with Zoho, repair what is missing.

The job is `consumer.jobs.reconcile`; this module maps its errors to one sentence each and prints its
report as tables (or JSON).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import typer

from consumer import event_loop
from consumer.commands.options import flag, json_flag


def register(app: typer.Typer) -> None:
    @app.command("reconcile")
    def reconcile_command(
        fix: bool = flag(
            "--fix", "Sync missing and drifted entities through the pipeline (never deletes in Zoho)."
        ),
        as_json: bool = json_flag(),
        quick: bool = flag(
            "--quick", "Compare only what Zoho lists show (billing addresses are then not checked)."
        ),
    ) -> None:
        """Find records missing in Zoho, duplicates, field and status drift, and Zoho-only records."""
        from connectors.zoho.errors import AuthError, ZohoError
        from consumer.commands.cli import fail, settings_or_exit
        from consumer.jobs.reconcile.repair import ReconcileError
        from consumer.jobs.reconcile.run import reconcile
        from consumer.service.wiring import ServiceUnavailable

        settings = settings_or_exit()
        try:
            report = event_loop.run(reconcile(settings, fix=fix, details=not quick))
        except (ServiceUnavailable, ReconcileError) as exc:
            fail(str(exc))
        except AuthError as exc:
            fail(
                f"Zoho refused our credentials ({exc}); "
                "check ZOHO_CLIENT_ID, ZOHO_CLIENT_SECRET and ZOHO_REFRESH_TOKEN."
            )
        except ZohoError as exc:
            fail(f"Cannot read Zoho at ZOHO_API_BASE={settings.zoho_api_base} ({exc}).")
        if as_json:
            typer.echo(json.dumps(report.as_dict(), indent=2, default=str))
            return
        print_report(report)


def print_report(report: Any) -> None:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # piped or captured: wide enough that ids and operations are not cut
        console = Console(width=max(console.width, 200))
    console.print(_table("reconcile", ("check", "found"), _summary(report), right=("found",)))
    for title, columns, rows in _findings(report):
        if rows:
            console.print(_table(title, columns, rows))
    if report.repair is not None:
        _print_repair(console, report.repair)
    elif report.in_sync:
        console.print("[green]Zoho matches the source[/]")


def _table(
    title: str, columns: Sequence[str], rows: Iterable[Sequence[str]], right: Sequence[str] = ()
) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    for row in rows:
        table.add_row(*row)
    return table


def _summary(r: Any) -> list[tuple[str, str]]:
    return [
        ("source customers / invoices checked", f"{r.source_customers} / {r.source_invoices}"),
        ("Zoho customers / invoices listed", f"{r.zoho_customers} / {r.zoho_invoices}"),
        ("missing in Zoho", str(len(r.missing))),
        ("duplicates in Zoho", str(len(r.duplicates))),
        ("field drift", str(len(r.drift))),
        ("  of which status (paid, void, sent, active/inactive)", str(len(r.status_drift))),
        ("Zoho records with no source row", str(len(r.orphans))),
        ("Zoho ahead (changed in Zoho on its own; not repaired)", str(len(r.zoho_ahead))),
        ("Zoho calls made", str(r.zoho_calls)),
    ]


def _findings(r: Any) -> list[tuple[str, tuple[str, ...], list[tuple[str, ...]]]]:
    """(title, columns, rows) of each kind of finding, in the order they are printed."""
    return [
        (
            "missing in Zoho",
            ("entity", "source id", "natural key", "mapped Zoho id (gone)"),
            [(m.entity_type, m.entity_id, m.natural_key, m.mapped_zoho_id or "") for m in r.missing],
        ),
        (
            "field drift (source -> mapped value; Zoho value)",
            ("entity", "natural key", "Zoho id", "field", "expected", "in Zoho"),
            [
                (d.entity_type, d.natural_key, d.zoho_id, name, expected, actual)
                for d in r.drift
                for name, (expected, actual) in d.fields.items()
            ],
        ),
        (
            "duplicates in Zoho: resolve by hand (zoho-cdc never deletes)",
            ("entity", "natural key", "Zoho ids", "synced to"),
            [
                (d.entity_type, d.natural_key, ", ".join(d.zoho_ids), d.mapped_zoho_id or "")
                for d in r.duplicates
            ],
        ),
        (
            "Zoho records with no source row",
            ("entity", "Zoho id", "natural key", "name", "status"),
            [(o.entity_type, o.zoho_id, o.natural_key or "", o.name, o.status or "") for o in r.orphans],
        ),
        (
            "Zoho ahead: changed in Zoho on its own; make the source agree"
            " (README: Sharing Zoho with people)",
            ("entity", "natural key", "Zoho id", "in Zoho", "in the source", "recorded by the sync"),
            [
                (
                    a.entity_type,
                    a.natural_key,
                    a.zoho_id,
                    a.zoho_status,
                    a.source_status,
                    "yes" if a.recorded else "not yet",
                )
                for a in r.zoho_ahead
            ],
        ),
    ]


def _print_repair(console: Any, repair: Any) -> None:
    if not repair.submitted:
        console.print("[green]nothing to repair[/]")
        return
    columns = ("entity_type", "entity_id", "outcome", "operation", "zoho_id", "error")
    console.print(
        _table(
            f"repair (sync log group {repair.consumer_group})",
            ("entity", "source id", "outcome", "operation", "Zoho id", "error"),
            [tuple(row[c] or "" for c in columns) for row in repair.rows],
        )
    )
    console.print("run `zoho-cdc reconcile` again to confirm; duplicates stay until resolved by hand")
