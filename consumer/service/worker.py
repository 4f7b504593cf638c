"""One run of the pipeline in its consumer group, from start to close (arq's `Worker`, for Kafka).

`Worker.run` is the whole life: join the group (or assign a replay's range), then poll -> work -> record
-> commit the durable prefix, turn by turn, until a signal, a fatal error or the range's end; then drain
(bounded by SHUTDOWN_TIMEOUT_SECONDS), commit, close the engine and leave the group.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from consumer.pipeline.intake.reading import LiveReading, Reading
from consumer.pipeline.intake.runner import RunOptions, RunSummary, SyncRunner
from consumer.pipeline.intake.watermark import PartitionWatermarks
from consumer.service.group_join import GroupJoin
from consumer.service.wiring import EngineParts, SyncSession


class Worker:
    """One run: its engine, its partitions and its group membership.

    The commit path: the engine calls `PartitionWatermarks.completed` once a record's row is durable; the
    runner commits what the watermarks allow. `zoho-cdc run`, `backfill` and `dlq reprocess` each run one
    worker."""

    def __init__(
        self,
        session: SyncSession,
        options: RunOptions,
        *,
        reading: Reading | None = None,
        engine: EngineParts | None = None,
        on_progress: Callable[[SyncRunner], None] | None = None,
    ) -> None:
        self.options = options
        reading = reading or LiveReading()
        self.watermarks = PartitionWatermarks()
        self.engine = session.engine(options.group_id, on_done=self.watermarks.completed, parts=engine)
        self.runner = SyncRunner(options, self.engine, self.watermarks, reading, on_progress=on_progress)
        self.group = GroupJoin(session.settings, options, static=not reading.bounded)
        self._stopping = asyncio.Event()
        self._stopped_by = "end"

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the worker as `stop` does: drained, committed, closed."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, sig.name)

    def stop(self, reason: str = "signal") -> None:
        """Ask the run to end after the current turn."""
        self._stopped_by = reason
        self._stopping.set()

    async def run(self) -> RunSummary:
        """start -> (poll -> process -> record -> commit) until stopped -> drain -> close."""
        await self.start()
        try:
            while not self._stopping.is_set():
                self.runner.raise_if_fatal()
                await self.group.keep_joined(self.runner)
                if await self.runner.turn():
                    break
        finally:
            await self.close()
        return self.runner.summary(self._stopped_by)

    async def start(self) -> None:
        """Join the group (or assign a replay's range); on failure the consumer is stopped again."""
        consumer = await self.group.join()
        try:
            await self.runner.start(consumer)
        except BaseException:
            await self.group.leave()
            raise

    async def close(self) -> None:
        """Drain what is in flight, commit its durable prefix, close the engine, leave the group."""
        try:
            await self.runner.drain()
            await self.engine.close()
        finally:
            await self.group.leave()
