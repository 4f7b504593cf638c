"""The `zoho-cdc` command line.

Each module in `consumer/commands/` registers its own commands on the app, so the CLI stays one
small file and every command lives next to the concern it drives.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import typer

from consumer import commands, event_loop
from consumer.settings import ConfigError, Settings, load_settings

T = TypeVar("T")

app = typer.Typer(
    name="zoho-cdc",
    help="Keep Zoho Billing in step with PostgreSQL through Debezium change events.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Keep Zoho Billing in step with PostgreSQL through Debezium change events."""
    from consumer.logs import configure_logging

    # Every command logs through the scrubbing configuration (commands may raise the level later);
    # unconfigured structlog would print rich tracebacks with local variables, tokens included.
    configure_logging("warning", json=False)


def settings_or_exit(**overrides: object) -> Settings:
    """Load settings, or print the one-sentence-per-value error and exit 2."""
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        fail(f"Invalid configuration: {exc}", code=2)
        raise  # unreachable, keeps type checkers happy


def fail(message: str, code: int = 1) -> None:
    """Print an operator-facing error (never a traceback) and exit."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def parse_since(value: str | None) -> datetime | None:
    """An ISO-8601 `--since` value (UTC when no offset is given), or exit 2 with one sentence."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"--since {value!r} is not an ISO-8601 time such as 2026-11-01T00:00:00+00:00.", code=2)
        raise  # unreachable
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; services that are down and fatal sync errors end in one sentence."""
    from consumer.pipeline.intake.scheduler import FatalSyncError
    from consumer.service.wiring import ServiceUnavailable

    try:
        return event_loop.run(coroutine)
    except ServiceUnavailable as exc:
        fail(str(exc))
    except FatalSyncError as exc:
        fail(str(exc), code=3)
    raise AssertionError("unreachable")


def _register_commands() -> None:
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_commands()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
