"""`zoho-cdc seed`: load the sample customers and invoices (idempotent)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("seed")
    def seed_command() -> None:
        """Insert 13 sample customers and 20 ZAR invoices into DATABASE_URL (skips rows already there)."""
        import psycopg

        from consumer.commands.cli import fail, settings_or_exit
        from consumer.local.seed import seed
        from consumer.settings import mask_url_password

        settings = settings_or_exit()
        try:
            summary = seed(settings.database_url)
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            fail(
                f"Could not seed {mask_url_password(settings.database_url)} ({first}); "
                "run 'zoho-cdc dev up' first."
            )
            return
        typer.echo(
            f"seeded: {summary.customers_inserted} new customer(s), "
            f"{summary.invoices_inserted} new invoice(s) "
            f"({summary.customers_total} customers, {summary.invoices_total} invoices in total)"
        )
