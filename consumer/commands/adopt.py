"""`zoho-cdc adopt [--dry-run] [--json]`, `adopt link|unlink`: switching over from another integration.

The plan is `consumer.jobs.adoption_plan` (reads only); recording it and the links made or undone by hand
are `consumer.jobs.adoption_links`. This module prints the plan as tables (or JSON), with a progress bar.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from consumer import event_loop
from consumer.commands.options import flag, json_flag

adopt_app = typer.Typer(
    help="Switch over from another integration: plan the adoption of what Zoho already holds, link by hand.",
    invoke_without_command=True,
)

_ENTITIES = {"customer": "customer", "customers": "customer", "invoice": "invoice", "invoices": "invoice"}


def register(app: typer.Typer) -> None:
    app.add_typer(adopt_app, name="adopt")


@adopt_app.callback(invoke_without_command=True)
def plan_command(
    ctx: typer.Context,
    dry_run: bool = flag("--dry-run", "Only print the plan: write nothing, to Zoho or to PostgreSQL."),
    as_json: bool = json_flag(),
) -> None:
    """Print what going live does with every source entity (adopted by stored id or by which rule,
    created, ambiguous, another entity's) and what it costs; without --dry-run, record the adoptions."""
    if ctx.invoked_subcommand is not None:
        return
    from consumer.commands.cli import settings_or_exit
    from consumer.jobs.adoption_links import record_plan
    from consumer.jobs.adoption_plan import STEPS, read_plan

    settings = settings_or_exit()

    async def job() -> tuple[Any, list[Any]]:
        client = _client(settings)
        try:
            plan = await _with_progress(lambda step: read_plan(settings, client, step), len(STEPS), as_json)
        finally:
            await client.aclose()
        return plan, ([] if dry_run else await record_plan(settings, plan))

    plan, recorded = _run(settings, job())
    if as_json:
        typer.echo(json.dumps({**plan.as_dict(), "recorded": len(recorded), "dry_run": dry_run}, indent=2))
        return
    _print_plan(plan, recorded, dry_run)


@adopt_app.command("link")
def link_command(entity: str, source_id: str, zoho_id: str) -> None:
    """Map a source entity to a Zoho record by hand (logged in the sync log)."""
    from consumer.commands.cli import settings_or_exit
    from consumer.jobs.adoption_links import link

    settings = settings_or_exit()

    async def job() -> str:
        client = _client(settings)
        try:
            return await link(settings, client, _entity(entity), source_id, zoho_id)
        finally:
            await client.aclose()

    typer.echo(_run(settings, job()))


@adopt_app.command("unlink")
def unlink_command(entity: str, source_id: str) -> None:
    """Undo an adoption: the entity forgets its Zoho record and never matches it again (logged)."""
    from consumer.commands.cli import settings_or_exit
    from consumer.jobs.adoption_links import unlink

    settings = settings_or_exit()
    typer.echo(_run(settings, unlink(settings, _entity(entity), source_id)))


def _entity(name: str) -> Any:
    from consumer.commands.cli import fail
    from consumer.model.events import EntityType

    if name.lower() not in _ENTITIES:
        fail(f"entity {name!r} is not customer or invoice.", code=2)
    return EntityType(_ENTITIES[name.lower()])


def _client(settings: Any) -> Any:
    from consumer.migrations import migrate
    from consumer.service.wiring import check_database, zoho_client

    check_database(settings)
    migrate(settings.database_url)
    return zoho_client(settings)


def _run(settings: Any, coroutine: Any) -> Any:
    """Run the job; what a user can cause ends in one sentence."""
    from connectors.zoho.errors import AuthError, ZohoError
    from consumer.commands.cli import fail
    from consumer.jobs.adoption_links import LinkRefused
    from consumer.pipeline.durability.organisations import OrganisationUnsettled
    from consumer.service.wiring import ServiceUnavailable

    try:
        return event_loop.run(coroutine)
    except (ServiceUnavailable, LinkRefused, OrganisationUnsettled) as exc:
        fail(str(exc))
    except AuthError as exc:
        fail(
            f"Zoho refused our credentials ({exc}); check ZOHO_CLIENT_ID, ZOHO_CLIENT_SECRET and"
            " ZOHO_REFRESH_TOKEN."
        )
    except ZohoError as exc:
        fail(f"Cannot read Zoho at ZOHO_API_BASE={settings.zoho_api_base} ({exc}).")
    raise AssertionError("unreachable")


async def _with_progress(read: Any, steps: int, quiet: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    if quiet:
        return await read(lambda step: None)
    columns = (TextColumn("[bold]adopt plan[/] {task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("reading", total=steps)
        return await read(lambda step: progress.update(task, advance=1, description=step))


def _print_plan(plan: Any, recorded: list[Any], dry_run: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 200))
    summary = Table(title="going live would", show_header=True)
    summary.add_column("verdict")
    summary.add_column("entities", justify="right")
    for verdict, count in sorted(plan.counts().items()):
        summary.add_row(verdict, str(count))
    console.print(summary)
    table = Table(title="per entity")
    for column in ("entity", "source id", "key", "verdict", "Zoho id", "candidates", "note"):
        table.add_column(column)
    for d in plan.decisions:
        if d.verdict == "already mapped":
            continue
        table.add_row(
            d.entity_type,
            d.entity_id,
            d.natural_key,
            d.verdict,
            d.zoho_id or "",
            ", ".join(d.candidates),
            d.note,
        )
    console.print(table)
    console.print(
        f"this plan read Zoho with {plan.plan_calls} calls ({plan.listing_pages} listing pages);"
        f" going live makes about {plan.going_live_calls} calls ({plan.going_live_writes} writes):"
        f" {plan.minutes} min at {plan.rate_per_minute}/min, {plan.days} day(s) of the daily limit of"
        f" {plan.daily_limit}"
    )
    if dry_run:
        console.print("dry run: nothing recorded; run `zoho-cdc adopt` to record the adoptions")
    else:
        console.print(f"recorded {len(recorded)} adoption(s) in the entity map and the sync log")
