"""The Kafka clients every run makes: one place that builds consumers and producers from an address.

An address registered with `serve_in_process` (the simulation registers its in-memory broker,
`simulation.kafka`, under a name no network resolves) is answered by that broker's own consumers; any
other is a broker on the network, reached with aiokafka. So a backfill's first pass, end-offset reads and
`dlq` commands reach the same broker as the live sync, whichever it is, without a client handed down.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

#: Consumer factories of brokers in this process, by bootstrap address.
_IN_PROCESS: Final[dict[str, Callable[..., Any]]] = {}


def serve_in_process(address: str, consumers: Callable[..., Any] | None) -> None:
    """Answer `address` with `consumers(bootstrap_servers, group_id, **extra)`; None forgets it."""
    if consumers is None:
        _IN_PROCESS.pop(address, None)
    else:
        _IN_PROCESS[address] = consumers


def kafka_consumer(bootstrap_servers: str, group_id: str | None, **extra: object) -> AIOKafkaConsumer:
    in_process = _IN_PROCESS.get(bootstrap_servers)
    if in_process is not None:
        return in_process(bootstrap_servers, group_id, **extra)  # type: ignore[no-any-return]
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_interval_ms=600_000,  # a paused partition still polls, but rate-limit waits can be long
        **extra,
    )


def kafka_producer(bootstrap_servers: str) -> AIOKafkaProducer:
    # Idempotence stays off: the local Tansu broker does not implement it; acks=all still waits for the log.
    return AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=False)
