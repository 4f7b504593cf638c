"""No record content stops the sync: every malformed record is dead-lettered once and its partition moves on.

Real broker, PostgreSQL and simulator. All records go to ONE partition, between two good customers,
so a record that stalls or kills the process shows as a good customer missing and an offset not
committed to the end.
"""

from __future__ import annotations

import json

from aiokafka import AIOKafkaProducer, TopicPartition

from consumer.jobs.reprocess import list_dead_letters, reprocess
from consumer.pipeline.effects.dead_letter_topic import (
    H_EXC_MESSAGE,
    H_ORIGINAL_SIZE,
    H_TRUNCATED,
    parse_headers,
)
from consumer.service.wiring import sync_session
from tests.consumer.harness import LiveSync, SimView, committed_offsets, read_topic, settings_for, wait_for
from tests.support import Source, envelope


def _value(row_id: str, **after: object) -> bytes:
    return json.dumps({"op": "c", "after": {"id": row_id, **after}, "source": {"lsn": 10}}).encode()


def _poison(topic: str) -> list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes | None]]]]:
    nul_id, long_id = "abc\u0000def", "x" * 3000
    return [
        ("NUL in the id", json.dumps({"id": nul_id}).encode(), _value(nul_id), []),
        ("an id of 3000 characters", json.dumps({"id": long_id}).encode(), _value(long_id), []),
        ("a value that is a JSON array", b'{"id": "v1"}', b"[1, 2, 3]", []),
        ("a key that is a JSON string", b'"just-a-string"', _value("k1"), []),
        (
            "an unknown op of 600 kB",
            b'{"id": "op1"}',
            json.dumps({"op": "z" * 600_000, "after": {"id": "op1"}}).encode(),
            [],
        ),
        (  # its dead letter would exceed the producer's 1 MiB request limit unless cut
            "a 950 kB record",
            b'{"id": "big1"}',
            json.dumps({"op": "c", "after": {"id": "big1", "notes": "n" * 950_000}, "source": {}}).encode(),
            [],
        ),
        ("NUL in a column value", b'{"id": "n1"}', _value("n1", account_number="CT-1", email="a\u0000b"), []),
        ("a header with a null value", b'{"id": "h1"}', b"{not json", [("x-trace", None)]),
    ]


async def _produce_one_partition(
    bootstrap: str, records: list[tuple[str, bytes | None, bytes | None, list]]
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, max_request_size=4_000_000
    )
    await producer.start()
    try:
        for topic, key, value, headers in records:
            await producer.send_and_wait(topic, value, key=key, partition=0, headers=headers)
    finally:
        await producer.stop()


async def test_malformed_records_are_dead_lettered_once_and_the_partition_reaches_its_end(
    zoho_settings, zoho_sim, database_url, kafka_bootstrap, topic_prefix
):
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    source = Source(database_url, kafka_bootstrap, topic_prefix)
    topic = f"{topic_prefix}.public.customers"
    good = [source.insert_customer(1), source.insert_customer(2)]
    first, last = [envelope(topic_prefix, "customers", "c", source._row("customers", g), g) for g in good]
    poison = _poison(topic)
    records = [(topic, first[1], first[2], [])]
    records += [(topic, key, value, headers) for _, key, value, headers in poison]
    records += [(topic, last[1], last[2], [])]
    await _produce_one_partition(kafka_bootstrap, records)

    zoho = SimView(zoho_sim)
    async with LiveSync(settings) as live:
        await wait_for(lambda: len(zoho.customers()) == 2, timeout=60)
        ends = {TopicPartition(topic, 0): len(records)}
        await wait_for(
            lambda: _committed_equals(kafka_bootstrap, settings.consumer_group, topic, ends), timeout=30
        )
        assert live._task is not None and not live._task.done(), "the sync stopped on record content"

    letters = await read_topic(kafka_bootstrap, settings.dlq_topic)
    assert len(letters) == len(poison)  # each malformed record exactly once
    for letter in letters:
        headers = parse_headers(letter.headers)
        assert headers[H_EXC_MESSAGE] and len(headers[H_EXC_MESSAGE]) <= 1000
        assert len(letter.value or b"") + len(letter.key or b"") < 1_000_000
    big = [parse_headers(m.headers) for m in letters if parse_headers(m.headers).get(H_TRUNCATED)]
    assert len(big) == 1 and int(big[0][H_ORIGINAL_SIZE]) > 950_000
    outcomes = source.query("SELECT outcome, count(*) FROM zoho_sync_log GROUP BY outcome ORDER BY 1")
    assert dict(outcomes) == {"dead_lettered": len(poison), "synced": 2}


async def _committed_equals(bootstrap: str, group: str, topic: str, ends: dict[TopicPartition, int]) -> bool:
    committed = await committed_offsets(bootstrap, group, (topic,))
    return all(committed.get(tp) == end for tp, end in ends.items())


async def test_dead_letters_with_malformed_headers_are_reprocessed_without_stopping(
    zoho_settings, zoho_sim, database_url, kafka_bootstrap, topic_prefix
):
    """Headers written by older versions or other tools: null values, non-numeric partition/offset/count."""
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    source = Source(database_url, kafka_bootstrap, topic_prefix)
    customer = source.insert_customer(3)
    topic, key, value = envelope(topic_prefix, "customers", "c", source._row("customers", customer), customer)
    bad_headers: list[tuple[str, bytes | None]] = [
        ("__connect.errors.topic", topic.encode()),
        ("__connect.errors.partition", b"not-a-number"),
        ("__connect.errors.offset", None),
        ("x-sync-reprocess-count", b"many"),
        ("x-sync-reason", None),
    ]
    await _produce_one_partition(
        kafka_bootstrap,
        [
            (settings.dlq_topic, key, value, bad_headers),
            (settings.dlq_topic, b'{"id": "zz"}', b"{broken", bad_headers),
        ],
    )
    listed = await list_dead_letters(kafka_bootstrap, settings.dlq_topic)
    assert len(listed) == 2
    async with sync_session(settings) as session:
        result = await reprocess(session)
    assert result.outcomes == {"synced": 1, "dead_lettered": 1}
    assert len(SimView(zoho_sim).customers()) == 1
