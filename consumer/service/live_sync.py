"""The process of `zoho-cdc run`: a session, the live worker, and the tasks beside it.

`LiveSync.main` opens the session (database, broker and Zoho checked first, each failure one sentence:
refused credentials, the wrong data centre or organisation stop it before any event is read), lets the
worker own SIGTERM/SIGINT and runs it, the status page and membership report beside it until it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any

import structlog

from consumer.entities.registry import source_topics
from consumer.pipeline.intake.runner import RunSummary
from consumer.pipeline.intake.scheduler import FatalSyncError
from consumer.service.members import instance_name, report_membership
from consumer.service.wiring import SyncSession, sync_session
from consumer.service.worker import Worker
from consumer.settings import Settings

log = structlog.get_logger(__name__)


async def refuse_fatal_zoho_setup(settings: Settings, client: Any) -> None:
    """Stop before the first event on what `zoho-cdc doctor` calls fatal (refused credentials, the wrong
    data centre, an organisation the token cannot see), with doctor's sentence; the check shares the
    client's cached token, so it costs no refresh of its own. It runs before the session records the
    organisation as the live one, so a wrong ZOHO_ORGANIZATION_ID leaves no trace."""
    from consumer.jobs.doctor import fatal_zoho_problem

    problem = await fatal_zoho_problem(settings, client.auth)
    if problem:
        raise FatalSyncError(problem)


class LiveSync:
    """The always-on sync of one process."""

    def __init__(self, settings: Settings, *, serve_status: bool = True) -> None:
        self.settings = settings
        self.serve_status = serve_status
        self.instance = instance_name(settings.kafka_group_instance_id)

    async def main(self) -> RunSummary:
        settings = self.settings
        vet = functools.partial(refuse_fatal_zoho_setup, settings)
        async with sync_session(settings, live_sync=True, vet_zoho=vet) as session:
            worker = Worker(session, session.run_options(settings.consumer_group))
            worker.install_signal_handlers()
            async with self._beside(session, worker):
                log.info(
                    "sync started",
                    topics=list(source_topics(settings.topic_prefix)),
                    group=settings.consumer_group,
                    instance=self.instance,
                )
                summary: RunSummary = await worker.run()
        log.info(
            "sync stopped", records=summary.records, reason=summary.stopped_by, committed=summary.committed
        )
        return summary

    @contextlib.asynccontextmanager
    async def _beside(self, session: SyncSession, worker: Worker) -> AsyncIterator[None]:
        """The tasks that live as long as the sync: the status page and the group-membership report."""
        settings = self.settings
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(
                report_membership(
                    settings.database_url, settings.consumer_group, self.instance, worker.runner.assignment
                )
            )
        ]
        if self.serve_status:
            from consumer.web.status_server import serve_status_page  # the web stack only when it is served

            tasks.append(asyncio.create_task(serve_status_page(session, worker.runner)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
