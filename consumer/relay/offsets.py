"""Where the relay's Debezium offsets live, and how they are reset.

Default (RELAY_OFFSET_STORAGE=kafka): in the topic `<prefix>.relay-offsets` on the broker, exactly as
Kafka Connect stores them. A new Tansu broker starts empty, so offsets and topics vanish together and
Debezium simply snapshots again. With RELAY_OFFSET_STORAGE=file they live under STATE_DIR; a file that
outlives its broker (no source topic exists any more) would make Debezium resume past empty topics,
so `discard_stale_offsets_file` removes it before the engine starts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consumer.entities.registry import source_topics
from consumer.relay.properties import offsets_file, offsets_topic
from consumer.settings import Settings

log = structlog.get_logger(__name__)


async def _existing_topics(bootstrap: str) -> set[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await consumer.start()
    try:
        return set(await consumer.topics())
    finally:
        await consumer.stop()


def discard_stale_offsets_file(settings: Settings) -> bool:
    """Delete the file offsets if the broker holds none of the source topics. True if deleted."""
    path = offsets_file(settings)
    if not path.exists():
        return False
    topics = asyncio.run(_existing_topics(settings.kafka_bootstrap_servers))
    if topics.intersection(source_topics(settings.topic_prefix)):
        return False
    path.unlink()
    log.warning(
        "relay.offsets_reset",
        reason="the broker has none of the source topics, so it is new; Debezium will snapshot again",
        file=str(path),
    )
    return True


async def _tombstone_all_keys(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=10000
    )
    await consumer.start()
    keys: set[bytes] = set()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer.topics()  # refresh metadata once
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return 0
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            batch = await consumer.getmany(timeout_ms=1000)
            for messages in batch.values():
                keys.update(m.key for m in messages if m.key is not None)
    finally:
        await consumer.stop()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        for key in keys:
            await producer.send_and_wait(topic, value=None, key=key)
    finally:
        await producer.stop()
    return len(keys)


def reset_offsets(settings: Settings) -> str:
    """Forget the relay's stored offsets so the next start snapshots again; returns what was done."""
    if settings.relay_offset_storage == "file":
        path: Path = offsets_file(settings)
        if path.exists():
            path.unlink()
            return f"deleted {path}"
        return f"no offsets file at {path}"
    topic = offsets_topic(settings.topic_prefix)
    count = asyncio.run(_tombstone_all_keys(settings.kafka_bootstrap_servers, topic))
    return f"wrote {count} tombstone(s) to {topic}"
