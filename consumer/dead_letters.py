"""The dead-letter topic: the original key and value, with Kafka Connect's error headers.

Header names follow Kafka Connect (`__connect.errors.*`) so Connect tooling reads our DLQ, plus
our own `x-sync-*` headers. The produce is awaited before the outcome is recorded, so an offset is
never committed for an event that is neither synced nor safely parked in the DLQ.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

H_TOPIC = "__connect.errors.topic"
H_PARTITION = "__connect.errors.partition"
H_OFFSET = "__connect.errors.offset"
H_EXC_CLASS = "__connect.errors.exception.class.name"
H_EXC_MESSAGE = "__connect.errors.exception.message"
H_REASON = "x-sync-reason"
H_KIND = "x-sync-error-kind"
H_ATTEMPTS = "x-sync-attempts"
H_HTTP_STATUS = "x-sync-http-status"
H_FIRST_FAILED_AT = "x-first-failed-at"
H_REPROCESS_COUNT = "x-sync-reprocess-count"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why one record is dead-lettered, and where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    kind: str  # 'decode' | 'permanent' | 'exhausted' | 'source'
    exception_class: str
    attempts: int = 0
    http_status: int | None = None
    first_failed_at_ms: int | None = None
    reprocess_count: int = 0

    def headers(self) -> list[tuple[str, bytes]]:
        pairs: list[tuple[str, str]] = [
            (H_TOPIC, self.topic),
            (H_PARTITION, str(self.partition)),
            (H_OFFSET, str(self.offset)),
            (H_EXC_CLASS, self.exception_class),
            (H_EXC_MESSAGE, self.reason),
            (H_REASON, self.reason),
            (H_KIND, self.kind),
            (H_ATTEMPTS, str(self.attempts)),
            (H_FIRST_FAILED_AT, str(self.first_failed_at_ms or int(time.time() * 1000))),
            (H_REPROCESS_COUNT, str(self.reprocess_count)),
        ]
        if self.http_status is not None:
            pairs.append((H_HTTP_STATUS, str(self.http_status)))
        return [(name, value.encode()) for name, value in pairs]


def parse_headers(headers: Sequence[tuple[str, bytes]] | None) -> Mapping[str, str]:
    return {name: (value or b"").decode(errors="replace") for name, value in (headers or ())}


class DeadLetterPublisher:
    """Produces dead letters to the DLQ topic and waits for the broker's acknowledgement."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self.topic = topic

    async def publish(self, letter: DeadLetter) -> None:
        await self._producer.send_and_wait(self.topic, letter.value, key=letter.key, headers=letter.headers())
