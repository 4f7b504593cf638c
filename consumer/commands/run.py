"""`zoho-cdc run`: the always-on, near-real-time sync."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_command(
        status_port: int = typer.Option(
            None, help="Port of /healthz, /readyz, /metrics and the status page."
        ),
        no_status: bool = typer.Option(False, "--no-status", help="Do not serve the status page."),
    ) -> None:
        """Consume the Debezium topics and keep Zoho Billing in step, until SIGTERM/SIGINT."""
        from consumer.commands.cli import run_sync, settings_or_exit
        from consumer.logs import configure_logging
        from consumer.service.live_sync import LiveSync

        overrides = {"status_port": status_port} if status_port is not None else {}
        settings = settings_or_exit(**overrides)
        configure_logging(settings.log_level)
        run_sync(LiveSync(settings, serve_status=not no_status).main())
