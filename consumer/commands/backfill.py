"""`zoho-cdc backfill`: replay the topics through the live pipeline, under a dedicated group."""

from __future__ import annotations

import json
from enum import StrEnum

import typer

from consumer.commands.options import json_flag
from consumer.model.outcomes import SyncOutcome


class Entity(StrEnum):
    customers = "customers"
    invoices = "invoices"
    all = "all"


def register(app: typer.Typer) -> None:
    @app.command("backfill")
    def backfill_command(
        from_beginning: bool = typer.Option(
            True, "--from-beginning", help="Replay from the earliest offsets."
        ),
        since: str = typer.Option(
            None, "--since", help="Replay from this ISO-8601 time (offsets_for_times)."
        ),
        entity: Entity = typer.Option(Entity.all, "--entity"),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Zero Zoho calls, zero sync-log rows: print the plan."
        ),
        resync: bool = typer.Option(
            False, "--resync", help="Ignore stored hashes; check every entity in Zoho."
        ),
        as_json: bool = json_flag("Print the summary as JSON."),
    ) -> None:
        """Replay the Debezium topics into Zoho (a new organisation, a lost week, a changed mapping)."""
        from consumer.commands.cli import parse_since, run_sync, settings_or_exit
        from consumer.logs import configure_logging

        settings = settings_or_exit()
        configure_logging("warning")
        since_dt = parse_since(since)
        from consumer.commands.cli import fail

        result = run_sync(_backfill(settings, entity.value, since_dt, dry_run, resync, as_json))
        _print_summary(result, as_json)
        not_applied = result.extra.get("not_applied") or []
        if not_applied and not dry_run:
            shown = ", ".join(not_applied[:20]) + (
                f" and {len(not_applied) - 20} more" if len(not_applied) > 20 else ""
            )
            fail(
                f"{len(not_applied)} entities were not applied: their newest records were removed from the"
                f" topics during the backfill and their source rows are gone ({shown}); check them with"
                " `zoho-cdc reconcile`"
            )


async def _backfill(settings, entity, since, dry_run, resync, quiet):  # type: ignore[no-untyped-def]
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from consumer.jobs.backfill import run_backfill
    from consumer.service.wiring import sync_session

    async with sync_session(settings) as session:
        if quiet:
            return await run_backfill(session, entity=entity, since=since, dry_run=dry_run, resync=resync)
        with Progress(
            TextColumn("[bold]backfill"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} events"),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            transient=False,
        ) as progress:
            task = progress.add_task("backfill", total=None, stats="")

            def on_progress(runner) -> None:  # type: ignore[no-untyped-def]
                total = sum(runner.end_offsets.values()) or None
                done = sum(runner.watermarks.committed().values())
                tally = session.metrics.tally
                rate = getattr(session.client, "current_rate_per_window", None)
                left = max((total or 0) - done, 0)
                window_min = settings.zoho_rate_window_seconds / 60
                eta = (
                    f" eta≈{left / max(rate, 1) * window_min:.0f} min (budget {rate}/window)" if rate else ""
                )
                stats = " ".join(f"{k}={v}" for k, v in sorted(tally.items()) if v)
                progress.update(
                    task,
                    total=total,
                    completed=runner.records,
                    stats=f"{stats} calls={session.metrics.attempts}{eta}",
                )

            return await run_backfill(
                session, entity=entity, since=since, dry_run=dry_run, resync=resync, on_progress=on_progress
            )


def _print_summary(result, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table

    data = {
        "group": result.group_id,
        "events": result.records,
        "outcomes": result.outcomes,
        "zoho_calls": result.zoho_attempts,
        "http_429": result.http_429,
        "elapsed_s": round(result.elapsed_s, 2),
        "already_applied": result.extra.get("already_applied", 0),
        "applied_from_source": result.extra.get("applied_from_source", 0),
        "not_applied": result.extra.get("not_applied", []),
    }
    if result.planned is not None:
        data["dry_run"] = True
        data["planned_calls"] = dict(result.planned.calls)
        data["samples"] = result.planned.samples
        data["dead_letters"] = result.planned.dead_letters
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    console = Console()
    table = Table(title="backfill (dry run: nothing was sent)" if result.planned else "backfill")
    table.add_column("what")
    table.add_column("count", justify="right")
    o = SyncOutcome
    for name in (o.SYNCED, o.UNCHANGED, o.SKIPPED, o.STALE, o.SUPERSEDED, o.FAILED, o.DEAD_LETTERED):
        table.add_row(name, str(result.outcomes.get(name, 0)))
    table.add_row("  of unchanged: known by replay memo", str(result.extra.get("already_applied", 0)))
    if data["applied_from_source"]:
        table.add_row("applied from source rows (records removed mid-run)", str(data["applied_from_source"]))
    table.add_row("events", str(result.records))
    table.add_row("zoho calls", str(result.zoho_attempts))
    table.add_row("429s seen", str(result.http_429))
    console.print(table)
    if result.planned is not None:
        plan = Table(title="planned Zoho calls")
        plan.add_column("operation")
        plan.add_column("count", justify="right")
        plan.add_column("sample")
        for op, n in sorted(result.planned.calls.items()):
            sample = result.planned.samples[op][0] if result.planned.samples[op] else {}
            plan.add_row(op, str(n), json.dumps(sample, default=str)[:160])
        console.print(plan)
