"""A change a job hands to the pipeline already decoded (reconcile's repair) is dead-lettered re-drivable.

The repair reads the source rows itself, so its records carry no Kafka key or value. When Zoho refuses
such a change, its dead letter must still hold the change (as Debezium would have sent it), or
`dlq reprocess` would have nothing to re-drive once the cause is fixed. Real PostgreSQL for the sync log.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from connectors.zoho.errors import PermanentError
from consumer.migrations import migrate
from consumer.pipeline.decode import decode_event
from consumer.pipeline.engine import EngineOptions, SyncEngine
from consumer.pipeline.events import EntityType, snapshot_read
from consumer.pipeline.scheduler import InboundRecord
from consumer.pipeline.store import SyncStore


class Refusing:
    async def apply(self, *args: Any, **kwargs: Any) -> Any:
        raise PermanentError("display_name is too long", code=4, http_status=400)


class Letters:
    def __init__(self) -> None:
        self.published: list[Any] = []

    async def publish(self, letter: Any) -> None:
        self.published.append(letter)


async def test_a_refused_change_handed_over_decoded_is_dead_lettered_with_its_content(
    database_url: str,
) -> None:
    migrate(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        customer = conn.execute(
            "INSERT INTO customers (account_number, email, first_name)"
            " VALUES ('CT-R1', 'r@example.com', 'Rea') RETURNING id::text"
        ).fetchone()[0]  # type: ignore[index]
        row = conn.execute("SELECT * FROM customers").fetchone()
        columns = [c.name for c in conn.execute("SELECT * FROM customers").description or []]
    source_row = {k: (str(v) if k == "id" else v) for k, v in zip(columns, row or (), strict=True)}
    letters = Letters()
    async with SyncStore(database_url) as store:
        engine = SyncEngine(
            options=EngineOptions(consumer_group="ho", topic_prefix="ho", dlq_topic="ho.dlq", resync=True),
            store=store,
            applier=Refusing(),  # type: ignore[arg-type]
            dead_letters=letters,  # type: ignore[arg-type]
            on_done=lambda _record: None,
        )
        topic = EntityType.CUSTOMER.topic("ho")
        engine.submit(
            InboundRecord(topic, -1, 0, None, None), snapshot_read(EntityType.CUSTOMER, customer, source_row)
        )
        await asyncio.wait_for(engine.wait_idle(), 15)
        await engine.close()

    assert len(letters.published) == 1
    letter = letters.published[0]
    assert letter.value is not None and letter.topic == topic
    redriven = decode_event(letter.topic, letter.key, letter.value, topic_prefix="ho")
    assert redriven.entity_id == customer and redriven.row is not None
    assert redriven.row["account_number"] == "CT-R1" and redriven.row["email"] == "r@example.com"
