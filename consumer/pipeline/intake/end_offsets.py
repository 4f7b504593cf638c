"""Partitions and end offsets that hold on every Kafka-protocol broker.

Tansu (the local broker) answers ListOffsets(latest) with the start of a partition's last record batch,
plus one; the high watermark in a fetch response is right on every broker. Bounded runs (backfill, DLQ
reprocess, `dlq list`) and lag figures use it, so they never stop short of records already in the topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors import clock
from consumer.pipeline.intake.kafka_clients import kafka_consumer


async def topic_partitions(
    consumer: AIOKafkaConsumer, topics: Iterable[str], *, wait_seconds: float = 0.0
) -> list[TopicPartition]:
    """Every partition of `topics` from refreshed metadata, waiting up to `wait_seconds` for topics
    that do not exist yet (a broker that auto-creates them may need a moment)."""
    wanted = list(topics)
    deadline = clock.monotonic() + wait_seconds
    while True:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
        known = {t: sorted(consumer.partitions_for_topic(t) or ()) for t in wanted}
        if all(known.values()) or clock.monotonic() >= deadline:
            return [TopicPartition(t, p) for t in wanted for p in known[t]]
        await asyncio.sleep(0.2)


async def end_offsets(
    bootstrap_servers: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    tps = list(partitions)
    if not tps:
        return {}
    consumer = kafka_consumer(bootstrap_servers, None)
    await consumer.start()
    try:
        listed: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        result = dict(listed)
        pending = {tp for tp in tps if listed[tp] > 0}
        if not pending:
            return result
        consumer.assign(list(pending))
        for tp in pending:
            consumer.seek(tp, listed[tp] - 1)  # fetch the last batch: its response carries the high watermark
        deadline = clock.monotonic() + 10
        while pending and clock.monotonic() < deadline:
            await consumer.getmany(timeout_ms=200, max_records=1)
            for tp in list(pending):
                high = consumer.highwater(tp)
                if high is not None:
                    result[tp] = max(result[tp], high)
                    pending.discard(tp)
        return result
    finally:
        await consumer.stop()
