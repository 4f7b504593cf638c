"""The dead-letter topic: the original key and value, with Kafka Connect's error headers.

Header names follow Kafka Connect (`__connect.errors.*`) so Connect tooling reads our DLQ, plus
our own `x-sync-*` headers. The produce is awaited before the outcome is recorded, so an offset is
never committed for an event that is neither synced nor safely parked in the DLQ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from connectors import clock

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
H_TRUNCATED = "x-sync-truncated"  # "value": the record's value was cut to fit the broker's size limit
H_ORIGINAL_SIZE = "x-sync-original-size"  # bytes of key + value before truncation

#: A dead letter's key + value + headers stay below this, under the producer's default 1 MiB request.
MAX_DEAD_LETTER_BYTES = 900_000
#: Reasons are one sentence; a longer one (e.g. quoting a huge field) is cut here.
MAX_REASON_CHARS = 1000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why one record is dead-lettered, and where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    kind: str  # decode, mapping, permanent, exhausted, source or internal (`dead_lettering.Refusal`)
    exception_class: str
    attempts: int = 0
    http_status: int | None = None
    first_failed_at_ms: int | None = None
    reprocess_count: int = 0

    def headers(self) -> list[tuple[str, bytes]]:
        reason = _short(self.reason)
        pairs: list[tuple[str, str]] = [
            (H_TOPIC, self.topic),
            (H_PARTITION, str(self.partition)),
            (H_OFFSET, str(self.offset)),
            (H_EXC_CLASS, self.exception_class),
            (H_EXC_MESSAGE, reason),
            (H_REASON, reason),
            (H_KIND, self.kind),
            (H_ATTEMPTS, str(self.attempts)),
            (H_FIRST_FAILED_AT, str(self.first_failed_at_ms or clock.wall_ms())),
            (H_REPROCESS_COUNT, str(self.reprocess_count)),
        ]
        if self.http_status is not None:
            pairs.append((H_HTTP_STATUS, str(self.http_status)))
        return [(name, value.encode()) for name, value in pairs]

    def fitted(self, limit: int = MAX_DEAD_LETTER_BYTES) -> tuple[bytes | None, list[tuple[str, bytes]]]:
        """(value, headers) to produce: a value that would make the record too large for the broker is
        cut, and headers say so and give the original size, so the letter is still kept."""
        headers = self.headers()
        size = len(self.key or b"") + len(self.value or b"") + sum(len(k) + len(v) for k, v in headers)
        if size <= limit:
            return self.value, headers
        room = max(0, limit - (size - len(self.value or b"")) - 200)
        value = (self.value or b"")[:room]
        original = len(self.key or b"") + len(self.value or b"")
        headers += [(H_TRUNCATED, b"value"), (H_ORIGINAL_SIZE, str(original).encode())]
        return value, headers


def _short(text: str) -> str:
    text = text.replace("\x00", "")
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def letter_id(headers: Mapping[str, str]) -> str | None:
    """What a dead letter stands for: its source record and its reprocess round, from its headers.

    The headers are fixed by the record alone, so every copy of one letter has the same id: a letter
    produced again after a crash between its produce and its sync-log row, or by a replay under another
    group. A letter with no source record (a parent refused for a child: partition -1) has none."""
    topic = headers.get(H_TOPIC)
    partition, offset = header_int(headers, H_PARTITION, -1), header_int(headers, H_OFFSET, -1)
    if not topic or partition < 0 or offset < 0:
        return None
    return f"{topic}/{partition}/{offset}#{header_int(headers, H_REPROCESS_COUNT, 0)}"


def parse_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> Mapping[str, str]:
    """Header values as text; a null value (allowed by Kafka) reads as ""."""
    return {name: (value or b"").decode(errors="replace") for name, value in (headers or ())}


def header_int(headers: Mapping[str, str], name: str, default: int) -> int:
    """An integer header written by us, an older version or another tool: anything unreadable is `default`."""
    try:
        return int(headers.get(name, "") or default)
    except ValueError:
        return default


class DeadLetterPublisher:
    """Produces dead letters to the DLQ topic and waits for the broker's acknowledgement."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self.topic = topic

    async def publish(self, letter: DeadLetter) -> None:
        value, headers = letter.fitted()
        await self._producer.send_and_wait(self.topic, value, key=letter.key, headers=headers)
