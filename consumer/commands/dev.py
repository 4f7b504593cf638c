"""`zoho-cdc dev up|down|status`: the single-machine stack (PostgreSQL, Tansu, relay, Zoho simulator)."""

from __future__ import annotations

import typer

dev_app = typer.Typer(help="Run the local stack: PostgreSQL, Tansu (Kafka), the relay, the Zoho simulator.")


@dev_app.command("up")
def up_command() -> None:
    """Start what is not running yet and write .zoho-cdc/stack.env (idempotent)."""
    from consumer.commands.cli import fail, settings_or_exit
    from consumer.local import stack
    from consumer.local.broker import BrokerError
    from consumer.local.postgres import LocalPostgresError

    settings = settings_or_exit()
    try:
        components = stack.up(settings)
    except (stack.StackError, BrokerError, LocalPostgresError) as exc:
        fail(str(exc))
        return
    for name, description in stack.status(settings):
        typer.echo(f"{name:<9} {description}")
    typer.echo(
        f"environment: {stack.state_dir(settings) / 'stack.env'} ({len(components)} process(es) owned)"
    )


@dev_app.command("down")
def down_command(
    keep_slot: bool = typer.Option(
        False, "--keep-slot", help="Keep Debezium's replication slot (it pins WAL while nothing reads it)."
    ),
) -> None:
    """Stop the processes 'dev up' started (never anything else), and drop the relay's slot."""
    from consumer.commands.cli import settings_or_exit
    from consumer.local import stack

    stopped = stack.down(settings_or_exit(), keep_slot=keep_slot)
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@dev_app.command("status")
def status_command() -> None:
    """Show what runs."""
    from consumer.commands.cli import settings_or_exit
    from consumer.local import stack

    for name, description in stack.status(settings_or_exit()):
        typer.echo(f"{name:<9} {description}")


def register(app: typer.Typer) -> None:
    app.add_typer(dev_app, name="dev")
