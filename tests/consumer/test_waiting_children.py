"""Children waiting for a parent are taken for many parents by one statement, each child handed out once.

On real PostgreSQL: the parents asked within one gathering pause share one DELETE ... RETURNING; every
asker gets exactly its parent's children (a parent asked twice at once hands them to one asker only, as
two statements in a row would), and another organisation's waiting children are left alone.
"""

from __future__ import annotations

import asyncio

import psycopg

from consumer.migrations import migrate
from consumer.model.events import EntityType
from consumer.pipeline.durability.store import SyncStore
from consumer.pipeline.durability.waiting_children import WaitingChildren

CUSTOMER, INVOICE = EntityType.CUSTOMER, EntityType.INVOICE


async def test_parents_asked_together_are_answered_by_one_statement_each_with_its_own_children(
    database_url: str, monkeypatch
) -> None:
    migrate(database_url)
    statements = 0
    delete = WaitingChildren._delete

    async def counted(self, parents):  # type: ignore[no-untyped-def]
        nonlocal statements
        statements += 1
        return await delete(self, parents)

    monkeypatch.setattr(WaitingChildren, "_delete", counted)
    async with (
        SyncStore(database_url, organization_id="A") as a,
        SyncStore(database_url, organization_id="B") as b,
    ):
        await a.await_parent(INVOICE, "i1", CUSTOMER, "c1")
        await a.await_parent(INVOICE, "i2", CUSTOMER, "c1")
        await a.await_parent(INVOICE, "i3", CUSTOMER, "c2")
        await b.await_parent(INVOICE, "i4", CUSTOMER, "c1")  # another organisation's child of c1

        taken = await asyncio.gather(
            a.take_waiting(CUSTOMER, "c1"), a.take_waiting(CUSTOMER, "c2"), a.take_waiting(CUSTOMER, "c3")
        )

        assert sorted(taken[0]) == [(INVOICE, "i1"), (INVOICE, "i2")]
        assert taken[1] == [(INVOICE, "i3")]
        assert taken[2] == []
        assert statements == 1
        assert await a.take_waiting(CUSTOMER, "c1") == []  # forgotten as they were handed out
        assert await b.take_waiting(CUSTOMER, "c1") == [(INVOICE, "i4")]


async def test_a_parent_asked_twice_at_once_hands_its_children_to_one_asker(database_url: str) -> None:
    migrate(database_url)
    async with SyncStore(database_url, organization_id="A") as store:
        await store.await_parent(INVOICE, "i1", CUSTOMER, "c1")

        first, second = await asyncio.gather(
            store.take_waiting(CUSTOMER, "c1"), store.take_waiting(CUSTOMER, "c1")
        )

        assert sorted([first, second]) == [[], [(INVOICE, "i1")]]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM zoho_waiting_for_parent").fetchone() == (0,)
