"""`zoho-cdc demo`: the local stack, sample data and the live sync into the simulator, then a summary."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_command(
        keep: bool = typer.Option(False, "--keep", help="Leave the stack running afterwards."),
        timeout: float = typer.Option(300, help="Seconds to wait for the sync to catch up."),
        switchover: bool = typer.Option(
            False, "--switchover", help="Go live where an older integration left Zoho and the source."
        ),
    ) -> None:
        """Run the main job end to end on the embedded default (what `make demo` runs)."""
        from consumer.commands.cli import fail, settings_or_exit
        from consumer.local.demo import run_demo
        from consumer.local.stack import StackError
        from consumer.logs import configure_logging

        settings = settings_or_exit()
        configure_logging("warning")
        if switchover:
            from consumer.local.switchover_demo import run_switchover_demo

            try:
                done = run_switchover_demo(settings, keep=keep, timeout=timeout)
            except (StackError, TimeoutError) as exc:
                fail(str(exc))
            if done["zoho_customers"] != 13 or done["duplicates"]:
                raise typer.Exit(1)
            return
        try:
            result = run_demo(settings, keep=keep, timeout=timeout)
        except (StackError, TimeoutError) as exc:
            fail(str(exc))
        if result.unsynced_customers or result.unsynced_invoices:
            raise typer.Exit(1)
