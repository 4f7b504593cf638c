"""Per-organisation memory (migration 0009) and the live sync's organisation, on real PostgreSQL.

The entity map, intents and item map of one organisation are invisible to another; rows from before
the migration are claimed by the live sync alone; only the live organisation writes back to the
source; a live sync moved to another organisation makes the source's ids follow that one's map.
"""

from __future__ import annotations

import psycopg
import pytest

from consumer.migrations import migrate, migration_files
from consumer.model.events import EntityType
from consumer.pipeline.durability.organisations import OrganisationUnsettled, live_organisation, settle
from consumer.pipeline.durability.rows import EntityUpdate, OutcomeRow
from consumer.pipeline.durability.store import SyncStore
from consumer.pipeline.effects.write_back import WriteBack
from tests.support import sql_exec, sql_value

A, B = "10234695", "20468013"


def _outcome(offset: int, entity_id: str) -> OutcomeRow:
    return OutcomeRow("g", "billing.public.customers", 0, offset, "customer", entity_id, "synced")


def _mapped(entity_id: str, zoho_id: str) -> EntityUpdate:
    return EntityUpdate(EntityType.CUSTOMER, entity_id, zoho_id, "hash", 10, "active", "CT-1")


def _customer(url: str, account: str, zoho_id: str | None = None) -> str:
    return str(
        sql_value(
            url,
            "INSERT INTO customers (account_number, email, zoho_billing_customer_id, zoho_sync_status)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            account,
            f"{account.lower()}@example.com",
            zoho_id,
            "synced" if zoho_id else None,
        )
    )


def _migrate_until(url: str, last: int) -> None:
    """The schema as a version before `last + 1` left it (what an upgrade starts from)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE zoho_cdc_schema_version ("
            " version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, name, body in migration_files():
            if version <= last:
                conn.execute(body)  # type: ignore[arg-type]
                conn.execute("INSERT INTO zoho_cdc_schema_version VALUES (%s, %s)", (version, name))


async def test_one_organisations_map_intents_and_items_are_invisible_to_another(database_url: str) -> None:
    migrate(database_url)
    async with (
        SyncStore(database_url, organization_id=A) as a,
        SyncStore(database_url, organization_id=B) as b,
    ):
        await a.record([_outcome(1, "c1")], entity=_mapped("c1", "903000000000001"))
        await a.write_intent(EntityType.CUSTOMER, "c2", "create", "CT-2")
        await a.remember_item("default", "Invoice line", "903000000000009")

        assert (await a.entity_state(EntityType.CUSTOMER, "c1")).zoho_id == "903000000000001"  # type: ignore[union-attr]
        assert await b.entity_state(EntityType.CUSTOMER, "c1") is None
        assert await b.entity_states([("customer", "c1"), ("customer", "c2")]) == {}
        assert await b.intent(EntityType.CUSTOMER, "c2") is None
        assert (await a.intent(EntityType.CUSTOMER, "c2")) is not None
        assert await b.item_id("default", "Invoice line") is None

        # B's own rows for the same entities live beside A's, each organisation's ids its own.
        await b.record(
            [_outcome(2, "c1")],
            entity=_mapped("c1", "904000000000001"),
            clear_intent=(EntityType.CUSTOMER, "c2"),
        )
        await b.remember_item("default", "Invoice line", "904000000000009")
        await b.forget_item("default", "Invoice line")
        assert (await a.entity_state(EntityType.CUSTOMER, "c1")).zoho_id == "903000000000001"  # type: ignore[union-attr]
        assert (await b.entity_state(EntityType.CUSTOMER, "c1")).zoho_id == "904000000000001"  # type: ignore[union-attr]
        assert await a.intent(EntityType.CUSTOMER, "c2") is not None  # B's outcome cleared B's intent only
        assert await a.item_id("default", "Invoice line") == "903000000000009"


async def test_only_the_live_organisation_writes_back_to_the_source(database_url: str) -> None:
    migrate(database_url)
    row = _customer(database_url, "CT-1", "903000000000001")
    assert settle(database_url, A, live_sync=False).live  # a new install: the first sync's is the live one
    other = settle(database_url, B, live_sync=False)
    assert not other.live and live_organisation_of(database_url) == A

    async with SyncStore(database_url, organization_id=B, writes_back=other.live) as b:
        await b.record(
            [_outcome(1, row)],
            entity=_mapped(row, "904000000000001"),
            write_back=WriteBack(EntityType.CUSTOMER, row, "904000000000001", "synced"),
        )
    assert sql_value(database_url, "SELECT count(*) FROM zoho_pending_write_back") == 0
    assert sql_value(database_url, "SELECT zoho_billing_customer_id FROM customers") == "903000000000001"


async def test_rows_from_before_the_migration_are_claimed_by_the_live_sync_alone(database_url: str) -> None:
    _migrate_until(database_url, 8)
    sql_exec(
        database_url,
        "INSERT INTO zoho_entity_map (entity_type, entity_id, zoho_id, payload_hash)"
        " VALUES ('customer', 'c1', 'z1', 'h')",
    )
    sql_exec(
        database_url,
        "INSERT INTO zoho_item_map (kind, key, zoho_item_id) VALUES ('default', 'Invoice line', 'i1')",
    )
    migrate(database_url)
    assert sql_value(database_url, "SELECT organization_id FROM zoho_entity_map") == ""

    with pytest.raises(OrganisationUnsettled, match="zoho-cdc run"):
        settle(database_url, B, live_sync=False)  # a backfill into a new organisation right after the upgrade
    assert sql_value(database_url, "SELECT organization_id FROM zoho_entity_map") == ""

    assert settle(database_url, A, live_sync=True).live
    assert sql_value(database_url, "SELECT organization_id FROM zoho_entity_map") == A
    assert sql_value(database_url, "SELECT organization_id FROM zoho_item_map") == A
    assert not settle(database_url, B, live_sync=False).live  # now it may run, in its own map


async def test_a_live_sync_moved_to_another_organisation_makes_the_source_ids_follow_its_map(
    database_url: str,
) -> None:
    migrate(database_url)
    in_both = _customer(database_url, "CT-1", "903000000000001")
    only_in_a = _customer(database_url, "CT-2", "903000000000002")
    settle(database_url, A, live_sync=True)
    async with SyncStore(database_url, organization_id=B, writes_back=False) as b:
        await b.record([_outcome(1, in_both)], entity=_mapped(in_both, "904000000000001"))

    moved = settle(database_url, B, live_sync=True)

    assert moved.live and moved.followed == 1 and live_organisation_of(database_url) == B
    async with SyncStore(database_url, organization_id=B) as store:
        assert await store.write_backs.apply_pending() == (1, 0, 0)  # applied, held, refused
    ids = dict(
        (str(k), v) for k, v in rows(database_url, "SELECT id, zoho_billing_customer_id FROM customers")
    )
    assert ids == {in_both: "904000000000001", only_in_a: "903000000000002"}
    assert settle(database_url, B, live_sync=True).followed == 0  # once: the source now says so


def live_organisation_of(url: str) -> str | None:
    with psycopg.connect(url) as conn:
        return live_organisation(conn)


def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


async def test_reconcile_in_another_organisation_does_not_take_the_source_ids_for_its_own(
    database_url: str,
) -> None:
    from consumer.jobs.reconcile.sides import read_source

    migrate(database_url)
    row = _customer(database_url, "CT-1", "903000000000001")
    settle(database_url, A, live_sync=True)
    async with SyncStore(database_url, organization_id=B, writes_back=False) as b:
        await b.record([_outcome(1, row)], entity=_mapped(row, "904000000000001"))

    in_a, in_b = await read_source(database_url, A), await read_source(database_url, B)

    customer = in_a.customers[0]
    assert in_a.mapped(EntityType.CUSTOMER, customer) == ["903000000000001"]  # the source's id, A's
    assert in_b.mapped(EntityType.CUSTOMER, customer) == ["904000000000001"]  # B's map alone


def test_status_names_the_live_sync_organisation(database_url: str) -> None:
    from consumer.jobs.status import collect_database_status

    migrate(database_url)
    assert collect_database_status(database_url, "g").live_organization is None
    settle(database_url, A, live_sync=True)
    assert collect_database_status(database_url, "g").as_dict()["live_organization"] == A
