"""`zoho-cdc status [--json]`: lag, outcomes, DLQ depth, last errors, budget and unsynced rows."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

from consumer import event_loop
from consumer.commands.options import json_flag

if TYPE_CHECKING:  # rich and the status facts load only when the command runs
    from rich.console import Console

    from consumer.jobs.status import Status
    from consumer.settings import Settings


def register(app: typer.Typer) -> None:
    @app.command("status")
    def status_command(as_json: bool = json_flag()) -> None:
        """Show what the live sync has done and what is still waiting."""
        from consumer.commands.cli import fail, settings_or_exit
        from consumer.migrations import migrate
        from consumer.service.wiring import ServiceUnavailable, check_database
        from consumer.web.status_facts import gather_status

        settings = settings_or_exit()
        try:
            check_database(settings)
        except ServiceUnavailable as exc:
            fail(str(exc))
        migrate(settings.database_url)
        status = event_loop.run(gather_status(settings, settings.consumer_group))
        status.budget = event_loop.run(_budget_today(settings))
        if as_json:
            typer.echo(json.dumps(status.as_dict(), indent=2, default=str))
            return
        _show(status, settings)


def _show(status: Status, settings: Settings) -> None:
    """The status as the terminal shows it, section by section."""
    from rich.console import Console

    console = Console()
    for section in (_health, _slot, _lag_and_organisation, _zoho_ahead, _outcomes, _budget, _members):
        section(console, status, settings)
    for err in status.last_errors[:5]:
        console.print(f"[red]{err['outcome']}[/] {err['entity_type']} {err['entity_id']}: {err['error']}")


def _health(console: Console, status: Status, settings: Settings) -> None:
    health = status.health or {}
    colour = {"green": "green", "amber": "yellow", "red": "red"}.get(str(health.get("level")), "white")
    console.print(f"[bold {colour}]{str(health.get('level', '?')).upper()}[/] {health.get('summary', '')}")


def _slot(console: Console, status: Status, settings: Settings) -> None:
    slot = status.replication_slot
    if not slot:
        return
    state = {None: "missing", True: "streaming", False: "inactive"}[slot.get("active")]
    retained = slot.get("retained_wal_bytes")
    console.print(
        f"[bold]slot[/] {slot.get('name')} {state}"
        + (f", retains {retained / 2**20:.1f} MiB of WAL" if retained is not None else "")
    )


def _lag_and_organisation(console: Console, status: Status, settings: Settings) -> None:
    console.print(
        f"[bold]group[/] {settings.consumer_group}   [bold]lag[/] {status.total_lag}   "
        f"[bold]DLQ depth[/] {status.dlq_depth}"
    )
    live = status.live_organization
    console.print(
        f"[bold]Zoho organisation[/] {settings.zoho_organization_id or '(not set)'}"
        + ("" if live in (None, settings.zoho_organization_id) else f"; the live sync's is {live}")
    )
    console.print(
        f"customers not synced {status.customers_unsynced} (failed {status.customers_failed}),"
        f" invoices not synced {status.invoices_unsynced} (failed {status.invoices_failed}),"
        f" write-backs refused by the source tables {status.write_backs_refused}"
    )


def _zoho_ahead(console: Console, status: Status, settings: Settings) -> None:
    if not status.zoho_ahead_total:
        return
    console.print(
        f"[yellow]Zoho ahead[/] {status.zoho_ahead_total} (changed in Zoho on its own; their source"
        " changes are not sent until the source agrees with Zoho):"
    )
    for e in status.zoho_ahead:
        console.print(f"  {e['entity_type']} {e['entity_id']}: {e['zoho_status']} in Zoho ({e['zoho_id']})")


def _outcomes(console: Console, status: Status, settings: Settings) -> None:
    from rich.table import Table

    table = Table(title="outcomes")
    table.add_column("outcome")
    table.add_column("last hour", justify="right")
    table.add_column("last day", justify="right")
    for name, n in status.outcomes_last_hour.items():
        table.add_row(name, str(n), str(status.outcomes_last_day.get(name, 0)))
    console.print(table)


def _budget(console: Console, status: Status, settings: Settings) -> None:
    if not status.budget:
        return
    shown = {k: v for k, v in status.budget.items() if k != "org_members"}
    console.print("budget: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    window = ", ".join(
        f"{m['label'] or m['member']} ({m['permits']} permits, {m['in_flight']} in flight)"
        for m in status.budget.get("org_members", [])
    )
    console.print(
        f"organisation's window: {status.budget.get('org_calls_this_window')} of "
        f"{status.budget.get('org_rate_per_window')} calls used; processes: {window or 'none active'}"
    )


def _members(console: Console, status: Status, settings: Settings) -> None:
    from rich.table import Table

    members = Table(title=f"group members ({len(status.members)})")
    members.add_column("instance")
    members.add_column("host:pid")
    members.add_column("partitions")
    for m in status.members:
        members.add_row(m["instance"], f"{m['host']}:{m['pid']}", " ".join(m["partitions"]) or "-")
    console.print(members)


async def _budget_today(settings) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Today's Zoho call count from the budget table shared by every zoho-cdc process."""

    from connectors.zoho.stores import PgDailyBudgetStore, PgRateWindowStore

    store = PgDailyBudgetStore(settings.database_url)
    window = PgRateWindowStore(settings.database_url)
    try:
        _, spent, exhausted = await store.today(settings.zoho_organization_id)  # the database's day
        shared = await window.snapshot(
            settings.zoho_organization_id,
            settings.zoho_rate_window_seconds,
            settings.zoho_rate_guard_seconds,
            settings.zoho_rate_per_minute,
        )
    finally:
        await store.aclose()
        await window.aclose()
    return {
        "calls_today": spent,
        "daily_limit": settings.zoho_daily_limit,
        "daily_exhausted": exhausted,
        "rate_per_minute_limit": settings.zoho_rate_per_minute,
        **shared,
    }
