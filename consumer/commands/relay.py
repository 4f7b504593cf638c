"""`zoho-cdc relay`: run the embedded Debezium relay (PostgreSQL -> Kafka) in the foreground."""

from __future__ import annotations

import typer

from consumer.commands.options import flag


def register(app: typer.Typer) -> None:
    @app.command("relay")
    def relay_command(
        reset_offsets: bool = flag(
            "--reset-offsets", "Forget stored Debezium offsets (next start snapshots again) and exit."
        ),
        check: bool = flag("--check", "Only run the pre-start checks (wal_level, broker)."),
    ) -> None:
        """Stream row changes of customers and customer_invoices into Kafka (embedded Debezium)."""
        from consumer.commands.cli import fail, settings_or_exit
        from consumer.logs import configure_logging
        from consumer.relay.errors import RelayError

        settings = settings_or_exit()
        configure_logging(settings.log_level)
        try:
            if reset_offsets:
                from consumer.relay.offsets import reset_offsets as do_reset

                typer.echo(f"relay offsets reset: {do_reset(settings)}")
                return
            if check:
                from consumer.relay.runner import preflight

                preflight(settings)
                typer.echo("relay checks passed: wal_level=logical, database and broker reachable")
                return
            from consumer.relay.runner import run_relay

            run_relay(settings)
        except RelayError as exc:
            fail(str(exc))
