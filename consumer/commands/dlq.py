"""`zoho-cdc dlq list|reprocess`: inspect and re-drive the dead-letter topic."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer

from consumer import event_loop

dlq_app = typer.Typer(help="Inspect and reprocess the dead-letter topic.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def list_command(
    limit: int = typer.Option(50, "--limit"), as_json: bool = typer.Option(False, "--json")
) -> None:
    """Show dead-lettered events: partition:offset, entity, reason, attempts, age, and copies."""
    from rich.console import Console
    from rich.table import Table

    from consumer.commands.cli import fail, settings_or_exit
    from consumer.jobs.reprocess import list_dead_letters
    from consumer.service.wiring import ServiceUnavailable, check_broker

    settings = settings_or_exit()
    try:
        check_broker(settings)
    except ServiceUnavailable as exc:
        fail(str(exc))
    entries = event_loop.run(list_dead_letters(settings.kafka_bootstrap_servers, settings.dlq_topic, limit))
    if as_json:
        typer.echo(json.dumps([asdict(e) for e in entries], indent=2))
        return
    table = Table(title=f"{settings.dlq_topic}: {len(entries)} shown")
    for col in (
        "partition:offset",
        "source",
        "entity",
        "reason",
        "attempts",
        "reprocessed",
        "age",
        "copy of",
    ):
        table.add_column(col)
    for e in entries:
        age = f"{e.age_s / 60:.0f} min" if e.age_s is not None else ""
        table.add_row(
            e.position,
            e.source,
            e.entity_id or "",
            e.reason[:80],
            str(e.attempts),
            str(e.reprocess_count),
            age,
            e.copy_of or "",
        )
    Console().print(table)


@dlq_app.command("reprocess")
def reprocess_command(
    all_: bool = typer.Option(False, "--all", help="Every dead letter not yet reprocessed (the default)."),
    offset: list[str] = typer.Option(
        None,
        "--offset",
        help="Only this dead letter, as PARTITION:OFFSET from `dlq list` (repeatable); a plain OFFSET"
        " only when one partition holds it.",
    ),
    since: str = typer.Option(None, "--since", help="Only dead letters written since this ISO-8601 time."),
    dry_run: bool = typer.Option(False, "--dry-run"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Re-drive dead-lettered events through the current pipeline and configuration."""
    from consumer.commands.backfill import _print_summary
    from consumer.commands.cli import fail, parse_since, run_sync, settings_or_exit
    from consumer.jobs.reprocess import DeadLetterNotFound, parse_position, reprocess
    from consumer.logs import configure_logging
    from consumer.service.wiring import sync_session

    settings = settings_or_exit()
    configure_logging("warning")
    since_dt = parse_since(since)
    try:
        positions = {parse_position(text) for text in offset or ()}
    except DeadLetterNotFound as exc:
        fail(str(exc))

    async def go():  # type: ignore[no-untyped-def]
        async with sync_session(settings) as session:
            return await reprocess(session, offsets=positions, since=since_dt, dry_run=dry_run)

    try:
        result = run_sync(go())
    except DeadLetterNotFound as exc:
        fail(str(exc))
    _print_summary(result, as_json)
