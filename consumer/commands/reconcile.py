"""`zoho-cdc reconcile [--fix] [--json] [--quick]`: compare the source with Zoho, repair what is missing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    @app.command("reconcile")
    def reconcile_command(
        fix: bool = typer.Option(
            False,
            "--fix",
            help="Sync missing and drifted entities through the pipeline (never deletes in Zoho).",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
        quick: bool = typer.Option(
            False,
            "--quick",
            help="Compare only what Zoho lists show (billing addresses are then not checked).",
        ),
    ) -> None:
        """Find records missing in Zoho, duplicates, field and status drift, and Zoho-only records."""
        from connectors.zoho.errors import AuthError, ZohoError
        from consumer.commands.cli import fail, settings_or_exit
        from consumer.jobs.reconcile.repair import ReconcileError
        from consumer.jobs.reconcile.run import reconcile
        from consumer.pipeline.wiring import ServiceUnavailable

        settings = settings_or_exit()
        try:
            report = asyncio.run(reconcile(settings, fix=fix, details=not quick))
        except ServiceUnavailable as exc:
            fail(str(exc))
        except AuthError as exc:
            fail(
                f"Zoho refused our credentials ({exc}); "
                "check ZOHO_CLIENT_ID, ZOHO_CLIENT_SECRET and ZOHO_REFRESH_TOKEN."
            )
        except ZohoError as exc:
            fail(f"Cannot read Zoho at ZOHO_API_BASE={settings.zoho_api_base} ({exc}).")
        except ReconcileError as exc:
            fail(str(exc))
        if as_json:
            typer.echo(json.dumps(report.as_dict(), indent=2, default=str))
            return
        print_report(report)


def print_report(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped or captured: wide enough that ids and operations are not cut
        console = Console(width=max(console.width, 200))
    summary = Table(title="reconcile", show_header=True)
    summary.add_column("check")
    summary.add_column("found", justify="right")
    summary.add_row(
        "source customers / invoices checked", f"{report.source_customers} / {report.source_invoices}"
    )
    summary.add_row("Zoho customers / invoices listed", f"{report.zoho_customers} / {report.zoho_invoices}")
    summary.add_row("missing in Zoho", str(len(report.missing)))
    summary.add_row("duplicates in Zoho", str(len(report.duplicates)))
    summary.add_row("field drift", str(len(report.drift)))
    summary.add_row("  of which status (paid, void, sent, active/inactive)", str(len(report.status_drift)))
    summary.add_row("Zoho records with no source row", str(len(report.orphans)))
    summary.add_row("Zoho calls made", str(report.zoho_calls))
    console.print(summary)

    if report.missing:
        table = Table(title="missing in Zoho")
        for col in ("entity", "source id", "natural key", "mapped Zoho id (gone)"):
            table.add_column(col)
        for m in report.missing:
            table.add_row(m.entity_type, m.entity_id, m.natural_key, m.mapped_zoho_id or "")
        console.print(table)
    if report.drift:
        table = Table(title="field drift (source -> mapped value; Zoho value)")
        for col in ("entity", "natural key", "Zoho id", "field", "expected", "in Zoho"):
            table.add_column(col)
        for d in report.drift:
            for name, (expected, actual) in d.fields.items():
                table.add_row(d.entity_type, d.natural_key, d.zoho_id, name, expected, actual)
        console.print(table)
    if report.duplicates:
        table = Table(title="duplicates in Zoho: resolve by hand (zoho-cdc never deletes)")
        for col in ("entity", "natural key", "Zoho ids", "synced to"):
            table.add_column(col)
        for d in report.duplicates:
            table.add_row(d.entity_type, d.natural_key, ", ".join(d.zoho_ids), d.mapped_zoho_id or "")
        console.print(table)
    if report.orphans:
        table = Table(title="Zoho records with no source row")
        for col in ("entity", "Zoho id", "natural key", "name", "status"):
            table.add_column(col)
        for o in report.orphans:
            table.add_row(o.entity_type, o.zoho_id, o.natural_key or "", o.name, o.status or "")
        console.print(table)
    if report.repair is not None:
        if not report.repair.submitted:
            console.print("[green]nothing to repair[/]")
        else:
            table = Table(title=f"repair (sync log group {report.repair.consumer_group})")
            for col in ("entity", "source id", "outcome", "operation", "Zoho id", "error"):
                table.add_column(col)
            for row in report.repair.rows:
                table.add_row(
                    row["entity_type"],
                    row["entity_id"] or "",
                    row["outcome"],
                    row["operation"] or "",
                    row["zoho_id"] or "",
                    row["error"] or "",
                )
            console.print(table)
            console.print("run `zoho-cdc reconcile` again to confirm; duplicates stay until resolved by hand")
    elif report.in_sync:
        console.print("[green]Zoho matches the source[/]")
