"""`zoho-cdc status [--json]`: lag, outcomes, DLQ depth, last errors, budget and unsynced rows."""

from __future__ import annotations

import asyncio
import json

import typer


def register(app: typer.Typer) -> None:
    @app.command("status")
    def status_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """Show what the live sync has done and what is still waiting."""
        from rich.console import Console
        from rich.table import Table

        from consumer.cli import fail, settings_or_exit
        from consumer.migrations import migrate
        from consumer.service import ServiceUnavailable, check_database
        from consumer.status_server import gather_status

        settings = settings_or_exit()
        try:
            check_database(settings)
        except ServiceUnavailable as exc:
            fail(str(exc))
        migrate(settings.database_url)
        status = asyncio.run(gather_status(settings, settings.consumer_group))
        status.budget = asyncio.run(_budget_today(settings))
        if as_json:
            typer.echo(json.dumps(status.as_dict(), indent=2, default=str))
            return
        console = Console()
        health = status.health or {}
        colour = {"green": "green", "amber": "yellow", "red": "red"}.get(str(health.get("level")), "white")
        console.print(
            f"[bold {colour}]{str(health.get('level', '?')).upper()}[/] {health.get('summary', '')}"
        )
        slot = status.replication_slot
        if slot:
            state = {None: "missing", True: "streaming", False: "inactive"}[slot.get("active")]
            retained = slot.get("retained_wal_bytes")
            console.print(
                f"[bold]slot[/] {slot.get('name')} {state}"
                + (f", retains {retained / 2**20:.1f} MiB of WAL" if retained is not None else "")
            )
        console.print(
            f"[bold]group[/] {settings.consumer_group}   [bold]lag[/] {status.total_lag}   "
            f"[bold]DLQ depth[/] {status.dlq_depth}"
        )
        console.print(
            f"customers not synced {status.customers_unsynced} (failed {status.customers_failed}),"
            f" invoices not synced {status.invoices_unsynced} (failed {status.invoices_failed})"
        )
        table = Table(title="outcomes")
        table.add_column("outcome")
        table.add_column("last hour", justify="right")
        table.add_column("last day", justify="right")
        for name, n in status.outcomes_last_hour.items():
            table.add_row(name, str(n), str(status.outcomes_last_day.get(name, 0)))
        console.print(table)
        if status.budget:
            console.print("budget: " + ", ".join(f"{k}={v}" for k, v in status.budget.items()))
        for err in status.last_errors[:5]:
            console.print(f"[red]{err['outcome']}[/] {err['entity_type']} {err['entity_id']}: {err['error']}")


async def _budget_today(settings) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Today's Zoho call count from the budget table shared by every zoho-cdc process."""
    import datetime as dt

    from connectors.zoho.stores import PgDailyBudgetStore

    store = PgDailyBudgetStore(settings.database_url)
    try:
        spent, exhausted = await store.spent(settings.zoho_organization_id, dt.datetime.now(dt.UTC).date())
    finally:
        await store.aclose()
    return {
        "calls_today": spent,
        "daily_limit": settings.zoho_daily_limit,
        "daily_exhausted": exhausted,
        "rate_per_minute_limit": settings.zoho_rate_per_minute,
    }
