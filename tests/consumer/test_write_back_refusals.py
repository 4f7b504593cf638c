"""A write-back the source table refuses is set apart with its error; it never blocks the others.

Issue 23 (e), against the real PostgreSQL: a production schema may refuse a write-back (a length limit,
a trigger, a CHECK). One refused row used to roll back its whole batch of up to 500 again every 2 s
forever; an error not from psycopg ended the write-back task; `FOR UPDATE` waited on (skipped) customer
rows whose invoices were being inserted.
"""

from __future__ import annotations

import asyncio

import psycopg

from consumer.jobs.status import collect_database_status
from consumer.migrations import migrate
from consumer.model.events import EntityType
from consumer.pipeline.durability.rows import OutcomeRow
from consumer.pipeline.durability.store import SyncStore, WriteBack
from consumer.pipeline.effects import write_back


def _row(offset: int) -> OutcomeRow:
    return OutcomeRow(
        consumer_group="g",
        topic="billing.public.customers",
        partition=0,
        offset=offset,
        entity_type="customer",
        entity_id=f"c{offset}",
        outcome="synced",
    )


def _customers(conn: psycopg.Connection, *accounts: str) -> list[str]:
    return [
        str(
            conn.execute("INSERT INTO customers (account_number) VALUES (%s) RETURNING id", (a,)).fetchone()[
                0
            ]
        )  # type: ignore[index]
        for a in accounts
    ]


def _production_schema(conn: psycopg.Connection) -> None:
    """Stricter than ours: Zoho ids of at most 8 characters, and one row a trigger keeps frozen."""
    conn.execute("ALTER TABLE customers ALTER COLUMN zoho_billing_customer_id TYPE varchar(8)")
    conn.execute(
        "CREATE FUNCTION frozen_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.account_number = 'CT-FROZEN' THEN RAISE EXCEPTION 'row % is frozen', NEW.account_number;"
        " END IF; RETURN NEW; END $$"
    )
    conn.execute(
        "CREATE TRIGGER frozen BEFORE UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION frozen_row()"
    )


def _source(conn: psycopg.Connection) -> dict[str, tuple[str | None, str | None]]:
    rows = conn.execute(
        "SELECT account_number, zoho_billing_customer_id, zoho_sync_status FROM customers"
    ).fetchall()
    return {account: (zoho_id, status) for account, zoho_id, status in rows}


async def test_a_refused_write_back_is_set_apart_and_the_rest_of_its_batch_is_written(
    database_url: str,
) -> None:
    migrate(database_url)
    accounts = ("CT-1", "CT-2", "CT-LONG", "CT-3", "CT-FROZEN", "CT-4", "CT-5")
    with psycopg.connect(database_url) as conn:
        ids = dict(zip(accounts, _customers(conn, *accounts), strict=True))
        _production_schema(conn)
    zoho_ids = {a: f"90{n}" for n, a in enumerate(accounts)} | {"CT-LONG": "9031234567890"}
    async with SyncStore(database_url) as store:
        store.write_backs.poke = lambda: None  # type: ignore[method-assign]  # passes are run below
        for offset, account in enumerate(accounts):
            wb = WriteBack(EntityType.CUSTOMER, ids[account], zoho_ids[account], "synced")
            await store.record([_row(offset)], write_back=wb)

        first = await store.write_backs.apply_pending()
        assert first == write_back.WriteBackPass(applied=5, held=0, refused=2)
        with psycopg.connect(database_url) as conn:
            assert _source(conn) == {
                a: ((None, None) if a in ("CT-LONG", "CT-FROZEN") else (zoho_ids[a], "synced"))
                for a in accounts
            }
            refused = dict(
                conn.execute(
                    "SELECT entity_id, refused FROM zoho_pending_write_back"
                    " WHERE refused IS NOT NULL AND retry_after > now() + interval '20 seconds'"
                ).fetchall()
            )
        assert set(refused) == {ids["CT-LONG"], ids["CT-FROZEN"]}
        assert "character varying(8)" in refused[ids["CT-LONG"]]
        assert "row CT-FROZEN is frozen" in refused[ids["CT-FROZEN"]]
        assert collect_database_status(database_url, "g").write_backs_refused == 2

        # Not tried again on every pass: the refused rows wait out their pause.
        assert await store.write_backs.apply_pending() == write_back.WriteBackPass(0, 0, 0)

        # The cause is fixed and a newer write-back of the row arrives: it is tried at once and lands.
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DROP TRIGGER frozen ON customers")
        await store.record(
            [_row(10)], write_back=WriteBack(EntityType.CUSTOMER, ids["CT-FROZEN"], "907", "synced")
        )
        assert await store.write_backs.apply_pending() == write_back.WriteBackPass(1, 0, 0)

        # The other one is tried again once its pause is over, and refused again, for longer.
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("UPDATE zoho_pending_write_back SET retry_after = now()")
        assert await store.write_backs.apply_pending() == write_back.WriteBackPass(0, 0, 1)
        with psycopg.connect(database_url) as conn:
            assert _source(conn)["CT-FROZEN"] == ("907", "synced")
            assert conn.execute(
                "SELECT entity_id, refusals, retry_after > now() + interval '50 seconds'"
                " FROM zoho_pending_write_back"
            ).fetchall() == [(ids["CT-LONG"], 2, True)]
        assert collect_database_status(database_url, "g").write_backs_refused == 1


async def test_the_write_back_task_outlives_an_error_that_is_not_from_the_database(
    database_url: str, monkeypatch
) -> None:
    migrate(database_url)
    with psycopg.connect(database_url) as conn:
        (customer,) = _customers(conn, "CT-1")
    real = write_back._apply_table
    calls = 0

    async def fails_once(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in one pass")
        return await real(*args, **kwargs)

    monkeypatch.setattr(write_back, "_apply_table", fails_once)
    monkeypatch.setattr(write_back, "RETRY_SECONDS", 0.2)
    async with SyncStore(database_url) as store:
        await store.record([_row(0)], write_back=WriteBack(EntityType.CUSTOMER, customer, "901", "synced"))
        for _ in range(100):  # the background task's own passes, no explicit apply
            await asyncio.sleep(0.05)
            with psycopg.connect(database_url) as conn:
                if _source(conn)["CT-1"] == ("901", "synced"):
                    break
        assert calls >= 2
        with psycopg.connect(database_url) as conn:
            assert _source(conn)["CT-1"] == ("901", "synced")
        task = store.write_backs._pokes.task  # the gathering of pokes: the background task
        assert task is not None and not task.done()


async def test_a_customer_whose_invoice_is_being_inserted_still_gets_its_write_back(
    database_url: str,
) -> None:
    migrate(database_url)
    with psycopg.connect(database_url) as conn:
        (customer,) = _customers(conn, "CT-1")
    app = psycopg.connect(
        database_url
    )  # inserting an invoice: its foreign key holds the customer FOR KEY SHARE
    app.execute(
        "INSERT INTO customer_invoices (customer_id, invoice_number, invoice_date, subtotal, total_amount)"
        " VALUES (%s, 'INV-1', '2026-11-01', 100, 115)",
        (customer,),
    )
    try:
        async with SyncStore(database_url) as store:
            store.write_backs.poke = lambda: None  # type: ignore[method-assign]
            await store.record(
                [_row(0)], write_back=WriteBack(EntityType.CUSTOMER, customer, "901", "synced")
            )
            assert await asyncio.wait_for(store.write_backs.apply_pending(), 10) == write_back.WriteBackPass(
                1, 0, 0
            )
        with psycopg.connect(database_url) as conn:
            assert _source(conn)["CT-1"] == ("901", "synced")
    finally:
        app.close()
