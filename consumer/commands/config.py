"""`zoho-cdc config`: print the effective settings with secrets masked."""

from __future__ import annotations

import json

import typer

from consumer.commands.options import json_flag


def register(app: typer.Typer) -> None:
    @app.command("config")
    def config_command(as_json: bool = json_flag()) -> None:
        """Print the effective settings (secrets masked)."""
        from consumer.commands.cli import settings_or_exit

        settings = settings_or_exit()
        masked = settings.masked()
        if as_json:
            typer.echo(json.dumps(masked, indent=2, default=str))
            return
        width = max(len(k) for k in masked)
        for key, value in masked.items():
            typer.echo(f"{key.upper():<{width}}  {value}")
