"""`zoho-cdc migrate`: create or upgrade zoho-cdc's own tables (also run by every sync command)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("migrate")
    def migrate_command() -> None:
        """Apply pending schema migrations to DATABASE_URL."""
        from consumer.commands.cli import fail, settings_or_exit
        from consumer.migrations import migrate
        from consumer.service.wiring import ServiceUnavailable, check_database

        settings = settings_or_exit()
        try:
            check_database(settings)
        except ServiceUnavailable as exc:
            fail(str(exc))
        applied = migrate(settings.database_url)
        typer.echo("applied: " + ", ".join(applied) if applied else "schema is up to date")
