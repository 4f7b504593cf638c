"""Run the real sync pipeline in-process against the real broker, PostgreSQL and the Zoho simulator."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from consumer.pipeline.intake.end_offsets import topic_partitions
from consumer.service.wiring import SyncSession, sync_session
from consumer.service.worker import Worker
from consumer.settings import Settings


def settings_for(zoho_settings: Settings, kafka_bootstrap: str, topic_prefix: str, **extra: Any) -> Settings:
    return zoho_settings.model_copy(
        update={
            "kafka_bootstrap_servers": kafka_bootstrap,
            "topic_prefix": topic_prefix,
            "consumer_group": f"g-{topic_prefix}",
            "dlq_topic": f"{topic_prefix}.dlq",
            "commit_interval_seconds": 0.2,
            "shutdown_timeout_seconds": 10.0,
            **extra,
        }
    )


async def wait_for(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Poll `check` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if isinstance(last, Awaitable):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last value: {last!r})")


class LiveSync:
    """`zoho-cdc run` in a background task, stoppable like SIGTERM would stop it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.session: SyncSession | None = None
        self.worker: Worker | None = None
        self.runner: Any = None
        self._task: asyncio.Task[Any] | None = None
        self._cm: Any = None

    async def __aenter__(self) -> LiveSync:
        self._cm = sync_session(self.settings, live_sync=True)  # as `zoho-cdc run`
        self.session = await self._cm.__aenter__()
        self.worker = Worker(self.session, self.session.run_options(self.settings.consumer_group))
        self.runner = self.worker.runner
        self._task = asyncio.create_task(self.worker.run())
        return self

    async def stop(self) -> Any:
        if self._task is None:
            return None
        assert self.worker is not None
        self.worker.stop("test")
        result = await asyncio.wait_for(self._task, 30)
        self._task = None
        return result

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.stop()
        finally:
            await self._cm.__aexit__(None, None, None)


async def committed_offsets(bootstrap: str, group: str, topics: tuple[str, ...]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {tp: (await consumer.committed(tp)) or 0 for tp in await topic_partitions(consumer, topics)}
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topics: tuple[str, ...]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"probe-{uuid.uuid4().hex[:6]}")
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, topics)
        return await consumer.end_offsets(tps) if tps else {}
    finally:
        await consumer.stop()


async def read_topic(bootstrap: str, topic: str) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, [topic])
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[Any] = []
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(messages)
        return out
    finally:
        await consumer.stop()


class SimView:
    """Read-only questions about the simulator's state, in the words the sync tests ask them."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def customers(self) -> list[dict[str, Any]]:
        return list(self.handle.state()["customers"])

    def invoices(self) -> list[dict[str, Any]]:
        return list(self.handle.state()["invoices"])

    def customer(self, zoho_id: str) -> dict[str, Any]:
        return next(c for c in self.customers() if c["customer_id"] == zoho_id)

    def invoice(self, zoho_id: str) -> dict[str, Any]:
        return next(i for i in self.invoices() if i["invoice_id"] == zoho_id)

    def api_calls(self) -> int:
        return int(self.handle.stats()["requests"])

    def duplicates(self) -> dict[str, Any]:
        d = self.handle.duplicates()
        return {k: v for k, v in d.items() if k != "field" and v}
