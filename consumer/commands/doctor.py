"""`zoho-cdc doctor [--json]`: one line per dependency, ✓ / ✗ with the fix, exit 1 on any ✗."""

from __future__ import annotations

import json

import typer

from consumer.commands.options import json_flag


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    def doctor_command(as_json: bool = json_flag()) -> None:
        """Check PostgreSQL, Kafka, Kafka Connect and Zoho before (or while) running; it never writes."""
        from consumer import event_loop
        from consumer.commands.cli import settings_or_exit
        from consumer.jobs.doctor import diagnose

        settings = settings_or_exit()
        checks = event_loop.run(diagnose(settings))
        failed = [c for c in checks if c.failed]
        if as_json:
            report = {"ok": not failed, "checks": [c.as_dict() for c in checks]}
            typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
        else:
            for check in checks:
                colour = {"ok": "green", "fail": "red", "unknown": "yellow"}[check.state]
                typer.secho(check.line(), fg=colour)
            unknown = sum(1 for c in checks if c.state == "unknown")
            typer.echo(
                f"{len(checks) - len(failed) - unknown} ok, {len(failed)} to fix, {unknown} cannot check."
            )
        if failed:
            raise typer.Exit(1)
