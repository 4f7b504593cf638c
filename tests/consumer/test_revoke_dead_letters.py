"""A dead letter is a send too: a revoke never withdraws a record whose dead letter is on its way.

The revoke of a partition cancels the work that has sent nothing yet, and the new owner does it again.
A dead letter published to the DLQ topic is something sent: had its work been cancelled between the
produce and the sync-log row, the new owner (finding no row) would publish a second copy. Real
PostgreSQL for the sync log; the DLQ publisher is held in the middle of its produce.
"""

from __future__ import annotations

import asyncio
from typing import Any

from consumer.migrations import migrate
from consumer.pipeline.durability.store import SyncStore
from consumer.pipeline.intake.engine import EngineOptions, SyncEngine
from consumer.pipeline.intake.scheduler import InboundRecord

TOPIC = "rv.public.customers"
POISON = InboundRecord(TOPIC, 0, 7, b'{"id": "poison-7"}', b"{this is not json")


class HeldPublisher:
    """Counts dead letters; each produce waits until `release` is set (as a slow broker would)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.published: list[Any] = []

    async def publish(self, letter: Any) -> None:
        self.started.set()
        await self.release.wait()
        self.published.append(letter)


class NoZoho:
    async def apply(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a poison record makes no Zoho call")


def _engine(store: SyncStore, publisher: HeldPublisher) -> SyncEngine:
    return SyncEngine(
        options=EngineOptions(consumer_group="rv", topic_prefix="rv", dlq_topic="rv.dlq"),
        store=store,
        applier=NoZoho(),  # type: ignore[arg-type]
        dead_letters=publisher,  # type: ignore[arg-type]
        on_done=lambda _record: None,
    )


async def _dead_lettered_rows(database_url: str) -> int:
    import psycopg

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM zoho_sync_log WHERE consumer_group = 'rv' AND outcome = 'dead_lettered'"
        )
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def test_a_revoke_during_the_dead_letter_produce_lets_it_finish_and_record_its_row(database_url):
    migrate(database_url)
    publisher = HeldPublisher()
    async with SyncStore(database_url) as store:
        engine = _engine(store, publisher)
        engine.submit(POISON)
        await asyncio.wait_for(publisher.started.wait(), 10)
        engine.revoke([(TOPIC, 0)])  # the partition moves while the dead letter is being produced
        publisher.release.set()
        await asyncio.wait_for(engine.wait_idle(), 10)
        await engine.close()
        assert len(publisher.published) == 1
        # The row is written: the new owner finds it and publishes no second copy.
        assert await _dead_lettered_rows(database_url) == 1
