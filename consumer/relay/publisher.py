"""Publish relay records to Kafka and block until the broker acknowledged every one of them.

The Debezium engine calls its handler from a Java thread and commits a batch's offsets as soon as
the handler returns, so `KafkaPublisher.publish` returns only after acks=all for the whole batch and
raises `PublishError` otherwise. aiokafka runs on a private event loop in a daemon thread; the
handler thread hands it work with `run_coroutine_threadsafe`. Idempotence stays off because Tansu
does not implement it; records of one row share a key, so the default murmur2 partitioner keeps
them on one partition, in order.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from consumer.relay.errors import BrokerUnreachable, PublishError


@dataclass(frozen=True)
class OutgoingRecord:
    """One Kafka record exactly as Kafka Connect would write it (value None = tombstone)."""

    topic: str
    key: bytes | None
    value: bytes | None


class KafkaPublisher:
    """A synchronous facade over one aiokafka producer living on its own event loop thread."""

    def __init__(self, bootstrap_servers: str, *, client_id: str = "zoho-cdc-relay", timeout_ms: int = 30000):
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._timeout_ms = timeout_ms
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relay-kafka", daemon=True)
        self._producer: AIOKafkaProducer | None = None

    def start(self) -> None:
        """Connect to the broker; raise BrokerUnreachable if it does not answer."""
        self._thread.start()
        try:
            self._call(self._start(), self._timeout_ms / 1000 + 5)
        except (KafkaError, OSError, TimeoutError) as exc:
            self.close()
            raise BrokerUnreachable(
                f"The Kafka broker at {self._bootstrap} did not accept the relay's producer "
                f"({type(exc).__name__}); "
                "check KAFKA_BOOTSTRAP_SERVERS."
            ) from None

    async def _start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=False,
            linger_ms=5,
            request_timeout_ms=self._timeout_ms,
            max_request_size=8 * 1024 * 1024,
        )
        await self._producer.start()

    def publish(self, records: Sequence[OutgoingRecord]) -> None:
        """Send every record and wait for all acks; raise PublishError if any is not acknowledged."""
        if not records:
            return
        try:
            self._call(self._publish(records), self._timeout_ms / 1000 * 2 + 5)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise PublishError(
                f"Kafka at {self._bootstrap} did not acknowledge {len(records)} record(s) "
                f"({type(exc).__name__}: "
                f"{exc}); the batch was not committed and will be sent again on restart."
            ) from exc

    async def _publish(self, records: Sequence[OutgoingRecord]) -> None:
        assert self._producer is not None, "start() first"
        # send() only enqueues; the futures resolve on acks. Enqueue all, then await all, so one
        # batch travels in as few produce requests as possible.
        acks = [await self._producer.send(r.topic, value=r.value, key=r.key) for r in records]
        await asyncio.gather(*acks)

    def close(self) -> None:
        """Flush what is pending and stop the producer and its loop (safe to call twice)."""
        if self._thread.is_alive():
            if self._producer is not None:
                try:
                    self._call(self._producer.stop(), 15)
                except Exception:  # noqa: BLE001 - closing after a failure must not mask it
                    pass
                self._producer = None
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def _call(self, coro, timeout: float):  # type: ignore[no-untyped-def]
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise
