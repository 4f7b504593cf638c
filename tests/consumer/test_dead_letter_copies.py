"""Dead letters: one letter per refused record, re-driven once, named by partition and offset.

Issue 23 (h, j), on the real broker, PostgreSQL and simulator: a process killed between a dead letter's
produce and its sync-log row publishes it again on restart; a replay re-read every undecodable record
and published it again; `dlq reprocess --offset N` matched offset N on every partition; letters a run
did not select held the group's position, so the letters re-driven past them were driven again.
"""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from benchmarks.infra import create_topics
from consumer.jobs.backfill import run_backfill
from consumer.jobs.reprocess import DeadLetterNotFound, list_dead_letters, parse_position, reprocess
from consumer.pipeline.effects.dead_letter_topic import H_OFFSET, H_PARTITION, H_REPROCESS_COUNT, H_TOPIC
from consumer.service.wiring import sync_session
from tests.consumer.harness import SimView, settings_for
from tests.fixtures_zoho import settings_for as zoho_settings_for
from tests.support import Source, envelope


async def _produce(bootstrap: str, records: list[tuple[str, int, bytes | None, bytes | None, list]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        for topic, partition, key, value, headers in records:
            await producer.send_and_wait(topic, value, key=key, partition=partition, headers=headers)
    finally:
        await producer.stop()


async def _backfill(settings, **kw):  # type: ignore[no-untyped-def]
    async with sync_session(settings) as session:
        return await run_backfill(session, **kw)


async def _reprocess(settings, **kw):  # type: ignore[no-untyped-def]
    async with sync_session(settings) as session:
        return await reprocess(session, **kw)


def _posts(handle) -> int:  # type: ignore[no-untyped-def]
    return sum(handle.stats()["by_endpoint"].get("POST /customers", {}).values())


async def test_a_replay_publishes_no_second_dead_letter_for_an_undecodable_record(
    zoho_settings, zoho_sim, database_url, kafka_bootstrap, topic_prefix
):
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    source = Source(database_url, kafka_bootstrap, topic_prefix)
    topic = f"{topic_prefix}.public.customers"
    good = source.insert_customer(1)
    _, key, value = envelope(topic_prefix, "customers", "c", source._row("customers", good), good)
    await _produce(
        kafka_bootstrap,
        [
            (topic, 0, key, value, []),
            (topic, 0, b'{"id": "p1"}', b"{not json", []),
            (topic, 0, b"[]", b"[]", []),
        ],
    )
    first = await _backfill(settings)
    assert first.outcomes == {"synced": 1, "dead_lettered": 2}
    replay = await _backfill(settings)  # `backfill --from-beginning`, under a new group
    assert replay.outcomes == {"unchanged": 1, "skipped": 2} or replay.outcomes == {"skipped": 2}
    assert len(await list_dead_letters(kafka_bootstrap, settings.dlq_topic)) == 2  # still one letter each
    reasons = source.query("SELECT error FROM zoho_sync_log WHERE outcome = 'skipped'")
    assert all("already in the dead-letter topic" in r for (r,) in reasons) and len(reasons) == 2


async def test_a_letter_published_again_after_a_crash_is_listed_as_a_copy_and_re_driven_once(
    zoho_sim_factory, database_url, kafka_bootstrap, topic_prefix
):
    handle = zoho_sim_factory(require_email=True)  # Zoho refuses the customer without an email
    settings = settings_for(zoho_settings_for(handle, database_url), kafka_bootstrap, topic_prefix)
    source = Source(database_url, kafka_bootstrap, topic_prefix)
    no_email = source.insert_customer(2, email=None)
    await source.flush()
    assert (await _backfill(settings, group_id="crashing")).outcomes == {"dead_lettered": 1}
    # Killed after the produce, before the outcome's transaction: neither its sync-log row nor its
    # entity-map row is there, and the group's position never moved. The restart re-reads the record.
    source.query("DELETE FROM zoho_sync_log RETURNING 1")
    source.query("DELETE FROM zoho_entity_map RETURNING 1")
    assert (await _backfill(settings, group_id="crashing")).outcomes == {"dead_lettered": 1}

    letters = await list_dead_letters(kafka_bootstrap, settings.dlq_topic)
    assert [(e.entity_id, e.copy_of) for e in letters] == [(no_email, None), (no_email, letters[0].position)]

    handle.set_config(require_email=False)  # the cause is fixed
    posts = _posts(handle)
    again = await _reprocess(settings)
    assert again.outcomes == {"synced": 1}  # the copy is passed: no second outcome, no second call
    assert _posts(handle) == posts + 1
    assert len(SimView(handle).customers()) == 1


def test_a_dead_letter_position_is_partition_and_offset_or_a_plain_offset() -> None:
    assert parse_position("1:42") == (1, 42)
    assert parse_position("42") == (None, 42)
    with pytest.raises(DeadLetterNotFound, match="PARTITION:OFFSET"):
        parse_position("one:two")


async def test_reprocess_by_offset_is_partition_aware_and_letters_not_selected_are_kept_and_cost_nothing(
    zoho_sim, database_url, kafka_bootstrap, topic_prefix
):
    settings = settings_for(zoho_settings_for(zoho_sim, database_url), kafka_bootstrap, topic_prefix)
    source = Source(database_url, kafka_bootstrap, topic_prefix)
    customers = [source.insert_customer(n) for n in (1, 2, 3)]
    await create_topics(kafka_bootstrap, [settings.dlq_topic], partitions=2)
    letters = []
    for (dlq_partition, source_offset), customer in zip(((0, 10), (0, 11), (1, 12)), customers, strict=True):
        topic, key, value = envelope(
            topic_prefix, "customers", "c", source._row("customers", customer), customer
        )
        headers = [
            (H_TOPIC, topic.encode()),
            (H_PARTITION, b"0"),
            (H_OFFSET, str(source_offset).encode()),
            (H_REPROCESS_COUNT, b"0"),
        ]
        letters.append((settings.dlq_topic, dlq_partition, key, value, headers))
    await _produce(kafka_bootstrap, letters)  # DLQ 0:0 -> customer 1, 0:1 -> customer 2, 1:0 -> customer 3
    listed = await list_dead_letters(kafka_bootstrap, settings.dlq_topic)
    assert sorted(e.position for e in listed) == ["0:0", "0:1", "1:0"]

    with pytest.raises(DeadLetterNotFound, match="partitions 0, 1"):
        await _reprocess(settings, offsets={0})  # offset 0 is in both partitions: ambiguous
    assert _posts(zoho_sim) == 0

    one = await _reprocess(settings, offsets={1})  # only partition 0 holds offset 1: unambiguous
    assert one.outcomes == {"synced": 1}
    before_one = zoho_sim.stats()["requests"]
    three = await _reprocess(settings, offsets={(1, 0)})
    one_create = zoho_sim.stats()["requests"] - before_one  # what re-driving one new customer costs
    assert three.outcomes == {"synced": 1}
    zoho = SimView(zoho_sim)
    emails = {email: customer for customer, email in source.query("SELECT id::text, email FROM customers")}
    assert sorted(emails[c["email"]] for c in zoho.customers()) == sorted(customers[1:])

    # `--all`: the letter not selected (0:0) was kept; the one re-driven past it (0:1) costs nothing now.
    requests = zoho_sim.stats()["requests"]
    rest = await _reprocess(settings)
    assert rest.outcomes == {"synced": 1}
    assert len(zoho.customers()) == 3
    assert zoho_sim.stats()["requests"] - requests == one_create  # one customer's create, nothing for 0:1
    requests = zoho_sim.stats()["requests"]
    assert (await _reprocess(settings)).records == 0  # the group's position is past every letter now
    assert zoho_sim.stats()["requests"] == requests
