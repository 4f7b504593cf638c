"""A new table is one spec: an entity registered from outside syncs through the unchanged pipeline.

The `support_tickets` table exists only in this test's database, and its spec is registered here. Its
events are Debezium-shaped records made by the project's encoder (driven by the spec's columns), and a
stub applier stands in for Zoho. Nothing in the engine, scheduler, policy, apply or store modules names
it: the ticket's parent (its customer) is resolved first through the customer's own spec, the sync log,
the entity map and the write-back take it as they take any entity.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from consumer.entities.registry import register, source_topics, unregister
from consumer.entities.spec import EntitySpec, ParentLink, PlanInput, Row
from consumer.migrations import migrate
from consumer.model.events import ColumnKind, EntityType, Op
from consumer.model.plan import Action, Plan, is_synced, payload_hash, row_of, skip
from consumer.pipeline.codec.encode import encode_event
from consumer.pipeline.durability.store import SyncStore
from consumer.pipeline.effects.apply import Applied
from consumer.pipeline.intake.engine import EngineOptions, SyncEngine
from consumer.pipeline.intake.scheduler import InboundRecord

PREFIX = "xt"

TICKETS_SQL = """
CREATE TABLE support_tickets (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  customer_id uuid NOT NULL REFERENCES customers(id),
  ticket_number text UNIQUE NOT NULL,
  subject text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  zoho_ticket_id text,
  zoho_sync_status text,
  zoho_last_synced_at timestamptz
)"""

_T, _TS = ColumnKind.TEXT, ColumnKind.TIMESTAMPTZ
MAPPED = frozenset({"customer_id", "ticket_number", "subject"})


def plan_ticket(given: PlanInput) -> Plan:
    """A ticket is created once under its customer's Zoho id, updated when its subject changes."""
    if given.event.op is Op.DELETE:
        return skip("deleted in the source")
    row = row_of(given.event)
    action = "update_ticket" if is_synced(given.state) else "create_ticket"
    if given.parent is None:
        return Plan(action, None, None, "customer not yet in Zoho", needs_parent=str(row["customer_id"]))
    payload = {
        "customer_id": given.parent.zoho_id,
        "ticket_number": row["ticket_number"],
        "subject": row["subject"],
    }
    digest = payload_hash(payload)
    if given.state is not None and given.state.payload_hash == digest:
        return Plan(Action.NOOP, None, digest, "unchanged")
    return Plan(action, payload, digest, "changed")


def tickets_spec(entity: EntityType) -> EntitySpec:
    """The spec a team adding `support_tickets` would write (here: in the test, nowhere else)."""
    return EntitySpec(
        entity=entity,
        columns={
            "id": _T,
            "customer_id": _T,
            "ticket_number": _T,
            "subject": _T,
            "created_at": _TS,
            "zoho_ticket_id": _T,
            "zoho_sync_status": _T,
            "zoho_last_synced_at": _TS,
        },
        natural_key="ticket_number",
        zoho_id_field="ticket_id",
        write_back_id_column="zoho_ticket_id",
        mapped_columns=MAPPED,
        remembered_columns=MAPPED,
        required_fields=("subject",),
        plan=plan_ticket,
        calls=None,  # the stub applier below makes the calls
        parent=ParentLink(EntityType.CUSTOMER, "customer_id"),
    )


class StubApplier:
    """Stands in for Zoho: records each planned call and answers with a stable id."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    async def apply(
        self, entity_type: EntityType, entity_id: str, plan: Plan, row: Row, zoho_id: str | None, **_: bool
    ) -> Applied:
        self.calls.append((str(entity_type), entity_id, str(plan.action)))
        zoho_id = zoho_id or f"Z-{entity_type}-{entity_id[:8]}"
        return Applied(zoho_id, "active", 200, 1, 1)


class Letters:
    def __init__(self) -> None:
        self.published: list[Any] = []

    async def publish(self, letter: Any) -> None:
        self.published.append(letter)


@pytest.fixture
def ticket() -> Iterator[EntityType]:
    """The `ticket` entity, named and registered for one test only (other tests never see it)."""
    entity = EntityType.define("ticket", table="support_tickets")
    register(tickets_spec(entity))
    yield entity
    unregister(entity)


def _source(database_url: str) -> tuple[str, str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(TICKETS_SQL)
        customer = conn.execute(
            "INSERT INTO customers (account_number, email, first_name)"
            " VALUES ('CT-T1', 't@example.com', 'Thandi') RETURNING id::text"
        ).fetchone()[0]  # type: ignore[index]
        ticket = conn.execute(
            "INSERT INTO support_tickets (customer_id, ticket_number, subject) VALUES (%s, 'TK-1', 'Printer')"
            " RETURNING id::text",
            (customer,),
        ).fetchone()[0]  # type: ignore[index]
    return customer, ticket


def _record(
    entity: EntityType, offset: int, ticket: str, customer: str, subject: str, lsn: int
) -> InboundRecord:
    row = {"id": ticket, "customer_id": customer, "ticket_number": "TK-1", "subject": subject}
    op = "u" if offset else "c"
    key, value = encode_event(entity, op, row, key_id=ticket, topic_prefix=PREFIX, lsn=lsn)
    return InboundRecord(entity.topic(PREFIX), 0, offset, key, value)


async def _until(check: Any, timeout: float = 15.0) -> Any:
    for _ in range(int(timeout / 0.1)):
        found = check()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met")


async def test_an_entity_registered_from_outside_syncs_through_the_same_engine(
    database_url: str, ticket: EntityType
) -> None:
    entity, topic = ticket, ticket.topic(PREFIX)
    migrate(database_url)
    customer, ticket_id = _source(database_url)
    applier, letters, done = StubApplier(), Letters(), []
    assert topic in source_topics(PREFIX)  # the live run subscribes to it

    async with SyncStore(database_url) as store:
        engine = SyncEngine(
            options=EngineOptions(consumer_group="xg", topic_prefix=PREFIX, dlq_topic="xt.dlq"),
            store=store,
            applier=applier,  # type: ignore[arg-type]
            dead_letters=letters,  # type: ignore[arg-type]
            on_done=lambda record: done.append(record.offset),
        )
        try:
            engine.submit(_record(entity, 0, ticket_id, customer, "Printer", lsn=100))
            await asyncio.wait_for(engine.wait_idle(), 15)
            engine.submit(_record(entity, 1, ticket_id, customer, "Printer jams", lsn=200))
            await asyncio.wait_for(engine.wait_idle(), 15)
            engine.submit(
                _record(entity, 2, ticket_id, customer, "Printer jams", lsn=300)
            )  # an echo: same content
            engine.submit(InboundRecord(topic, 0, 3, str(uuid.uuid4()).encode(), b"{not json"))
            await asyncio.wait_for(engine.wait_idle(), 15)
        finally:
            await engine.close()
        await _until(lambda: _ticket_row(database_url)[1] == "synced")

    # The parent first (through the customer's own spec), then the ticket, then one update; the echo
    # makes no call, the malformed record is dead-lettered once.
    assert applier.calls == [
        ("customer", customer, "create_customer"),
        ("ticket", ticket_id, "create_ticket"),
        ("ticket", ticket_id, "update_ticket"),
    ]
    assert len(letters.published) == 1 and letters.published[0].offset == 3
    assert sorted(done) == [0, 1, 2, 3]
    with psycopg.connect(database_url) as conn:
        outcomes = conn.execute(
            "SELECT kafka_offset, entity_type, outcome FROM zoho_sync_log WHERE consumer_group = 'xg'"
            " ORDER BY kafka_offset"
        ).fetchall()
        mapped = conn.execute(
            "SELECT entity_type, zoho_id FROM zoho_entity_map ORDER BY entity_type"
        ).fetchall()
    assert outcomes == [
        (0, "ticket", "synced"),
        (1, "ticket", "synced"),
        (2, "ticket", "unchanged"),
        (3, "unknown", "dead_lettered"),
    ]
    assert mapped == [("customer", f"Z-customer-{customer[:8]}"), ("ticket", f"Z-ticket-{ticket_id[:8]}")]
    assert _ticket_row(database_url) == (f"Z-ticket-{ticket_id[:8]}", "synced")


def _ticket_row(database_url: str) -> tuple[str | None, str | None]:
    with psycopg.connect(database_url) as conn:
        found = conn.execute("SELECT zoho_ticket_id, zoho_sync_status FROM support_tickets").fetchone()
    assert found is not None
    return found[0], found[1]
