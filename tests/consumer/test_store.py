"""The sync log always records: versioned migrations, correct check constraints, idempotent rows."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from consumer.migrations import migrate
from consumer.model.events import EntityType
from consumer.pipeline.durability.rows import OUTCOMES, EntityUpdate, OutcomeRow
from consumer.pipeline.durability.store import SyncStore, WriteBack


def row(offset: int, outcome: str = "synced", **kw: object) -> OutcomeRow:
    return OutcomeRow(
        consumer_group="g",
        topic="billing.public.customers",
        partition=0,
        offset=offset,
        entity_type="customer",
        entity_id="c1",
        outcome=outcome,
        **kw,  # type: ignore[arg-type]
    )


def test_migrations_apply_once_and_are_recorded(database_url: str) -> None:
    first = migrate(database_url)
    assert first[0].startswith("0001_")
    assert migrate(database_url) == []
    with psycopg.connect(database_url) as conn:
        versions = [
            r[0] for r in conn.execute("SELECT version FROM zoho_cdc_schema_version ORDER BY version")
        ]
    assert versions == sorted(versions) and versions[0] == 1


async def test_every_outcome_the_engine_writes_is_accepted_by_the_check_constraint(database_url: str) -> None:
    migrate(database_url)
    async with SyncStore(database_url) as store:
        await store.record([row(i, outcome) for i, outcome in enumerate(OUTCOMES)])
    with psycopg.connect(database_url) as conn:
        stored = {r[0] for r in conn.execute("SELECT outcome FROM zoho_sync_log")}
    assert stored == set(OUTCOMES)


async def test_an_outcome_outside_the_vocabulary_is_rejected_not_silently_stored(database_url: str) -> None:
    migrate(database_url)
    async with SyncStore(database_url) as store:
        with pytest.raises(psycopg.errors.CheckViolation):
            await store.record([row(1, "success")])  # the value that broke the user's hand-written log


async def test_a_redelivered_record_never_adds_a_second_row(database_url: str) -> None:
    migrate(database_url)
    async with SyncStore(database_url) as store:
        await store.record([row(7)])
        await store.record([row(7, "unchanged")])
        assert await store.has_outcome("g", "billing.public.customers", 0, 7)
        assert not await store.has_outcome("g", "billing.public.customers", 0, 8)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT outcome FROM zoho_sync_log").fetchall() == [("synced",)]


async def test_outcome_entity_map_intent_and_write_back_commit_together(database_url: str) -> None:
    migrate(database_url)
    with psycopg.connect(database_url) as conn:
        customer = str(
            conn.execute("INSERT INTO customers (account_number) VALUES ('CT-1') RETURNING id").fetchone()[0]
        )  # type: ignore[index]
    async with SyncStore(database_url) as store:
        await store.write_intent(EntityType.CUSTOMER, customer, "create", "CT-1")
        assert await store.intent(EntityType.CUSTOMER, customer) is not None
        await store.record(
            [row(1)],
            entity=EntityUpdate(EntityType.CUSTOMER, customer, "903001", "hash", 100, "active", "CT-1"),
            write_back=WriteBack(EntityType.CUSTOMER, customer, "903001", "synced"),
            clear_intent=(EntityType.CUSTOMER, customer),
        )
        assert await store.intent(EntityType.CUSTOMER, customer) is None
        state = await store.entity_state(EntityType.CUSTOMER, customer)
        assert state is not None and state.zoho_id == "903001" and state.last_lsn == 100
        # A failing write leaves nothing behind: the outcome row and the entity map move together.
        with pytest.raises(psycopg.errors.CheckViolation):
            await store.record(
                [row(2, "bogus")],
                entity=EntityUpdate(EntityType.CUSTOMER, customer, "903999", "other", 200, "active", "CT-1"),
            )
        state = await store.entity_state(EntityType.CUSTOMER, customer)
        assert state is not None and state.zoho_id == "903001" and state.last_lsn == 100
    with psycopg.connect(database_url) as conn:
        assert conn.execute(
            "SELECT zoho_billing_customer_id, zoho_sync_status FROM customers WHERE id = %s", (customer,)
        ).fetchone() == ("903001", "synced")


async def test_a_source_row_locked_by_the_application_blocks_neither_outcomes_nor_other_write_backs(
    database_url: str,
) -> None:
    migrate(database_url)
    with psycopg.connect(database_url) as conn:
        held, other = (
            str(
                conn.execute(
                    "INSERT INTO customers (account_number) VALUES (%s) RETURNING id", (n,)
                ).fetchone()[0]
            )  # type: ignore[index]
            for n in ("CT-HELD", "CT-FREE")
        )
    app = psycopg.connect(database_url)  # an application transaction holding one customer row
    app.execute("SELECT 1 FROM customers WHERE id = %s FOR UPDATE", (held,))
    try:
        async with SyncStore(database_url) as store:
            for offset, customer in enumerate((held, other)):
                await asyncio.wait_for(
                    store.record(
                        [row(offset)],
                        write_back=WriteBack(EntityType.CUSTOMER, customer, f"90{offset}", "synced"),
                    ),
                    timeout=10,
                )
            locked = (await store.write_backs.apply_pending()).held
            assert locked == 1  # the held row waits; the other one went through
            with psycopg.connect(database_url) as conn:
                status = dict(
                    conn.execute("SELECT account_number, zoho_sync_status FROM customers").fetchall()
                )
                assert status == {"CT-HELD": None, "CT-FREE": "synced"}
                assert conn.execute("SELECT count(*) FROM zoho_sync_log").fetchone()[0] == 2  # type: ignore[index]
            app.rollback()  # the application lets go: the queued write-back lands
            await store.write_backs.apply_pending()
    finally:
        app.close()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT zoho_sync_status FROM customers WHERE id = %s", (held,)).fetchone() == (
            "synced",
        )
        assert conn.execute("SELECT count(*) FROM zoho_pending_write_back").fetchone() == (0,)


async def test_one_batch_of_write_backs_applies_free_rows_keeps_held_ones_and_drops_rows_that_are_gone(
    database_url: str,
) -> None:
    migrate(database_url)
    with psycopg.connect(database_url) as conn:
        ids = [
            str(
                conn.execute(
                    "INSERT INTO customers (account_number) VALUES (%s) RETURNING id", (n,)
                ).fetchone()[0]
            )  # type: ignore[index]
            for n in ("CT-1", "CT-2", "CT-HELD", "CT-GONE")
        ]
        invoice = str(
            conn.execute(
                "INSERT INTO customer_invoices"
                " (customer_id, invoice_number, invoice_date, subtotal, total_amount)"
                " VALUES (%s, 'INV-1', '2026-11-01', 100, 115) RETURNING id",
                (ids[0],),
            ).fetchone()[0]  # type: ignore[index]
        )
    queued = [
        WriteBack(EntityType.CUSTOMER, ids[0], "901", "synced"),
        WriteBack(EntityType.CUSTOMER, ids[1], None, "failed", called=False),
        WriteBack(EntityType.CUSTOMER, ids[2], "903", "synced"),
        WriteBack(EntityType.CUSTOMER, ids[3], "904", "synced"),
        WriteBack(EntityType.CUSTOMER, "not-a-uuid", "905", "synced"),
        WriteBack(EntityType.INVOICE, invoice, "906", "synced"),
    ]
    app = psycopg.connect(database_url)
    app.execute("SELECT 1 FROM customers WHERE id = %s FOR UPDATE", (ids[2],))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM customers WHERE id = %s", (ids[3],))
    try:
        async with SyncStore(database_url) as store:
            store.write_backs.poke = lambda: None  # type: ignore[method-assign]  # no background pass: applied below
            for offset, write_back in enumerate(queued):
                await store.record([row(offset)], write_back=write_back)
            assert await store.write_backs.apply_pending() == (5, 1, 0)  # applied, held, refused
            with psycopg.connect(database_url) as conn:
                customers = dict(
                    conn.execute(
                        "SELECT account_number, (zoho_billing_customer_id, zoho_sync_status) FROM customers"
                    ).fetchall()
                )
                assert customers == {
                    "CT-1": ("901", "synced"),
                    "CT-2": (None, "failed"),
                    "CT-HELD": (None, None),
                }
                assert conn.execute(
                    "SELECT zoho_billing_invoice_id, zoho_sync_status FROM customer_invoices"
                ).fetchone() == ("906", "synced")
                assert conn.execute("SELECT entity_id, attempts FROM zoho_pending_write_back").fetchall() == [
                    (ids[2], 1)
                ]
    finally:
        app.close()


async def test_a_bulk_of_outcomes_is_copied_once_each_even_when_some_were_logged_before(
    database_url: str,
) -> None:
    migrate(database_url)
    async with SyncStore(database_url) as store:
        await store.record([row(3), row(7, "unchanged")])  # logged before: a redelivery must not add rows
        bulk = [row(n, "superseded", error=f"newer event at offset {n + 1}") for n in range(200)]
        await store.record([*bulk, row(150, "superseded")])  # the same offset twice in one bulk too
        await store.record([row(n, "superseded") for n in range(190, 260)])  # a second bulk, overlapping
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT kafka_offset, outcome, error FROM zoho_sync_log ORDER BY kafka_offset"
        ).fetchall()
    assert [r[0] for r in rows] == list(range(260))
    assert rows[3] == (3, "synced", None) and rows[7] == (
        7,
        "unchanged",
        None,
    )  # the first row of an offset stays
    assert rows[100] == (100, "superseded", "newer event at offset 101")


@pytest.mark.parametrize("bulk", [0, 80], ids=["pipelined group", "group with a COPY bulk"])
async def test_a_bad_row_in_a_group_commit_fails_alone(database_url: str, bulk: int) -> None:
    migrate(database_url)
    async with SyncStore(database_url) as store:
        results = await asyncio.gather(
            store.record([row(1)]),
            store.record([row(2, "not-an-outcome")]),  # refused by the check constraint
            store.record([row(n, "superseded") for n in range(10, 10 + bulk)]),
            return_exceptions=True,
        )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], psycopg.errors.CheckViolation)
    with psycopg.connect(database_url) as conn:
        offsets = [r[0] for r in conn.execute("SELECT kafka_offset FROM zoho_sync_log ORDER BY 1").fetchall()]
    assert offsets == [1, *range(10, 10 + bulk)]


async def test_the_map_row_a_write_leaves_is_the_one_the_replay_memo_predicts(database_url: str) -> None:
    """`replay_memo.row_after` mirrors the store's upsert (kept fields, later position, cleared intent,
    an older write filling only what the row lacks), and every write not older than the row sets the memo:
    one without a memo clears the one before."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from consumer.pipeline.replay.memo import row_after

    migrate(database_url)
    maybe = lambda values: st.none() | st.sampled_from(values)  # noqa: E731
    updates = st.builds(
        EntityUpdate,
        st.just(EntityType.CUSTOMER),
        st.just("c-memo"),
        maybe(["z1", "z2"]),
        maybe(["h1", "h2"]),
        maybe([100, 200, 300]),
        maybe(["active", "inactive"]),
        st.none(),
        currency_code=maybe(["ZAR", "USD"]),
        rejected_digest=maybe(["r1"]),
        replay_memo=maybe(["m1", "m2"]),
    )

    async def check(writes: list[EntityUpdate]) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM zoho_entity_map WHERE entity_id = 'c-memo'")
            conn.execute("DELETE FROM zoho_sync_log WHERE consumer_group = 'g'")
        async with SyncStore(database_url) as store:
            predicted = None
            for n, update in enumerate(writes):
                await store.record([row(1000 + n, "unchanged")], entity=update)
                predicted = row_after(predicted, update, intent_cleared=False)
                stored = (await store.entity_states([("customer", "c-memo")]))[("customer", "c-memo")]
                assert stored == predicted

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(updates, min_size=1, max_size=4))
    def examples(writes: list[EntityUpdate]) -> None:
        asyncio.run(check(writes))

    await asyncio.to_thread(examples)


async def test_an_entity_map_write_from_an_older_source_position_never_puts_back_an_older_state(
    database_url: str,
) -> None:
    """Issue 23 (d): a bulk check or reconcile writing beside the live sync, with an older position than
    the live sync's, keeps the newer hash, status, refusal and memo, and only fills what the row lacks."""
    migrate(database_url)
    key = ("invoice", "i-order")
    live = EntityUpdate(
        EntityType.INVOICE,
        "i-order",
        None,
        "h-paid",
        500,
        "paid",
        "INV-1",
        rejected_digest=None,
        replay_memo="m5",
    )
    older = EntityUpdate(
        EntityType.INVOICE,
        "i-order",
        "z-1",
        "h-sent",
        400,
        "sent",
        "INV-1",
        rejected_digest="r4",
        replay_memo="m4",
    )
    newer = EntityUpdate(EntityType.INVOICE, "i-order", None, "h-void", 600, "void", None, replay_memo="m6")
    async with SyncStore(database_url) as store:
        await store.record([row(1, "synced")], entity=live)
        await store.record([row(2, "synced")], entity=older)
        kept = (await store.entity_states([key]))[key]
        assert (kept.zoho_id, kept.payload_hash, kept.status, kept.last_lsn) == ("z-1", "h-paid", "paid", 500)
        assert (kept.rejected, kept.replay_memo) == (None, "m5")
        await store.record([row(3, "synced")], entity=newer)
        moved = (await store.entity_states([key]))[key]
        assert (moved.zoho_id, moved.payload_hash, moved.status, moved.last_lsn) == (
            "z-1",
            "h-void",
            "void",
            600,
        )
        assert moved.replay_memo == "m6"


async def test_a_map_write_decided_from_a_row_another_process_wrote_since_forgets_the_payload_hash(
    database_url: str,
) -> None:
    """Simulation seed 456: a backfill found a newer event `unchanged` against the row while the live
    sync's write of an older event was in flight; the older content landed in Zoho, and the row kept the
    newer hash, so nothing ever sent the newer state. Whichever of the two is written second was decided
    from a version the row no longer has: what Zoho holds is unknown, and the hash is cleared."""
    migrate(database_url)
    c = EntityType.CUSTOMER

    def update(payload_hash: str, lsn: int, planned: int | None) -> EntityUpdate:
        return EntityUpdate(c, "c-race", "z1", payload_hash, lsn, "active", "CT-1", planned_version=planned)

    async with SyncStore(database_url) as store:
        for first, second in (
            (update("h-old", 10, 0), update("h-new", 20, 0)),
            (update("h-new", 20, 0), update("h-old", 10, 0)),
        ):
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute("DELETE FROM zoho_entity_map WHERE entity_id = 'c-race'")
            await store.record([], entity=update("h-0", 5, None))  # version 0
            await store.record([], entity=first)
            assert (await store.entity_state(c, "c-race")).payload_hash == first.payload_hash  # type: ignore[union-attr]
            await store.record([], entity=second)
            state = await store.entity_state(c, "c-race")
            assert state is not None and (state.payload_hash, state.last_lsn, state.version) == (None, 20, 2)
            await store.record([], entity=update("h-next", 30, 2))  # decided from the row as it is now
            assert (await store.entity_state(c, "c-race")).payload_hash == "h-next"  # type: ignore[union-attr]
