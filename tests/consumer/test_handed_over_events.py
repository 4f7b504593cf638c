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
from consumer.entities.zoho_boundary import as_call_errors
from consumer.migrations import migrate
from consumer.model.events import EntityType, snapshot_read
from consumer.pipeline.codec.decode import decode_event
from consumer.pipeline.durability.store import SyncStore
from consumer.pipeline.intake.engine import EngineOptions, SyncEngine
from consumer.pipeline.intake.scheduler import InboundRecord
from tests.support import Source


class Refusing:
    async def apply(self, *args: Any, **kwargs: Any) -> Any:
        with as_call_errors():  # an applier's errors leave it mapped, as `ZohoApplier`'s do
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


class RefusingCustomers:
    """Refuses every customer call (an email Zoho rejects); never reached for the invoice."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def apply(self, entity_type: EntityType, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(str(entity_type))
        with as_call_errors():  # an applier's errors leave it mapped, as `ZohoApplier`'s do
            raise PermanentError("Invalid value passed for email", code=2, http_status=400, attempts=1)


async def test_a_parent_refused_for_its_child_is_dead_lettered_once_as_its_own_redrivable_record(
    database_url: str,
) -> None:
    """An invoice whose customer is not in Zoho makes the customer's sync; Zoho refuses it. The customer's
    state is dead-lettered as a customer record (re-drivable, no source offset), the invoice as itself, and
    both refusals are remembered: the invoice's redelivery makes no call and no second dead letter."""
    migrate(database_url)
    source = Source(database_url, "unused", "pr")
    customer = source.insert_customer(1, email="not-an-email")
    source.insert_invoice(customer, "INV-PR-1")
    (topic, key, value) = source.pending[-1]
    applier, letters = RefusingCustomers(), Letters()
    async with SyncStore(database_url) as store:
        for offset in (0, 1):  # the invoice, then its redelivery after a crash (a new offset of the same row)
            engine = SyncEngine(
                options=EngineOptions(consumer_group="pr", topic_prefix="pr", dlq_topic="pr.dlq"),
                store=store,
                applier=applier,  # type: ignore[arg-type]
                dead_letters=letters,  # type: ignore[arg-type]
                on_done=lambda _record: None,
            )
            engine.submit(InboundRecord(topic, 0, offset, key, value))
            await asyncio.wait_for(engine.wait_idle(), 15)
            await engine.close()
        state = await store.entity_state(EntityType.CUSTOMER, customer)

    assert applier.calls == ["customer"]  # one attempt at the customer; the remembered refusal stops a second
    parent, *children = letters.published
    assert (parent.topic, parent.partition, parent.offset) == (EntityType.CUSTOMER.topic("pr"), -1, -1)
    assert parent.kind == "permanent" and parent.exception_class == "PermanentError"
    redriven = decode_event(parent.topic, parent.key, parent.value, topic_prefix="pr")
    assert redriven.entity_id == customer and redriven.row is not None
    assert redriven.row["email"] == "not-an-email"
    assert [(c.topic, c.offset) for c in children] == [(topic, 0)]
    assert "its customer could not be synced to Zoho" in children[0].reason
    assert state is not None and state.rejected is not None and state.zoho_id is None
    with psycopg.connect(database_url) as conn:
        outcomes = conn.execute(
            "SELECT kafka_offset, outcome FROM zoho_sync_log ORDER BY kafka_offset"
        ).fetchall()
    assert outcomes == [(0, "dead_lettered"), (1, "skipped")]
