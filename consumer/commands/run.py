"""`zoho-cdc run`: the always-on, near-real-time sync."""

from __future__ import annotations

import asyncio

import typer

from consumer.entities.registry import source_topics


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

        overrides = {"status_port": status_port} if status_port is not None else {}
        settings = settings_or_exit(**overrides)
        configure_logging(settings.log_level)
        run_sync(run_live(settings, serve_status=not no_status))


async def run_live(settings, *, serve_status: bool = True) -> None:  # type: ignore[no-untyped-def]
    import structlog

    from consumer.pipeline.wiring import sync_session

    log = structlog.get_logger("zoho_cdc.run")
    async with sync_session(settings) as session:
        runner = session.runner(session.run_options(settings.consumer_group))
        runner.install_signal_handlers()
        status_task = None
        if serve_status:
            from consumer.web.status_server import serve_status_page

            status_task = asyncio.create_task(serve_status_page(session, runner))
        from consumer.pipeline.members import instance_name, report_membership

        def assignment():  # type: ignore[no-untyped-def]
            return runner._consumer.assignment() if runner._consumer is not None else ()  # noqa: SLF001

        instance = instance_name(settings.kafka_group_instance_id)
        members_task = asyncio.create_task(
            report_membership(settings.database_url, settings.consumer_group, instance, assignment)
        )
        log.info(
            "sync started",
            topics=list(source_topics(settings.topic_prefix)),
            group=settings.consumer_group,
            instance=instance,
        )
        try:
            summary = await session.consume(runner)
        finally:
            members_task.cancel()
            await asyncio.gather(members_task, return_exceptions=True)
            if status_task is not None:
                status_task.cancel()
        log.info(
            "sync stopped", records=summary.records, reason=summary.stopped_by, committed=summary.committed
        )
