"""Doctor's source-table lines against real PostgreSQL schemas: write-back columns judged by casting and
by evaluating the table's own CHECK constraints over what zoho-cdc writes, in a read-only transaction."""

from __future__ import annotations

import pytest

from consumer.jobs.doctor.postgres import postgres_checks
from consumer.settings import Settings
from tests.support import sql_exec, sql_value


def line(database_url: str, name: str):  # type: ignore[no-untyped-def]
    checks = postgres_checks(Settings(_env_file=None, database_url=database_url))  # type: ignore[call-arg]
    return next(c for c in checks if c.name == name)


@pytest.mark.parametrize(
    ("ddl", "verdict", "words"),
    [
        ("", "ok", "accept synced, failed and a Zoho id"),
        (
            "ALTER TABLE customers ADD CONSTRAINT known"
            " CHECK (zoho_sync_status IN ('synced', 'failed', 'pending'))",
            "ok",
            "accept synced",
        ),
        (
            "ALTER TABLE customers ADD CONSTRAINT id_when_synced"
            " CHECK (zoho_sync_status <> 'synced' OR zoho_billing_customer_id IS NOT NULL)",
            "ok",
            "accept synced",
        ),
        (
            "ALTER TABLE customers ADD CONSTRAINT old_words CHECK (zoho_sync_status IN ('ok', 'error'))",
            "fail",
            "CHECK constraint old_words on customers rejects zoho_sync_status='synced'",
        ),
        (
            "ALTER TABLE customers ADD CONSTRAINT no_failures CHECK (zoho_sync_status <> 'failed')",
            "fail",
            "rejects zoho_sync_status='failed'",
        ),
        ("ALTER TABLE customers ALTER COLUMN zoho_sync_status TYPE varchar(5)", "fail", "value too long"),
        (
            "CREATE DOMAIN sync_word AS text CHECK (VALUE IN ('done')); "
            "ALTER TABLE customers ALTER COLUMN zoho_sync_status TYPE sync_word USING NULL",
            "fail",
            "which does not take 'synced'",
        ),
        (
            "ALTER TABLE customers ALTER COLUMN zoho_billing_customer_id TYPE int USING NULL",
            "fail",
            "zoho-cdc's write-back cannot set zoho_billing_customer_id integer",
        ),
        (
            "ALTER TABLE customers ALTER COLUMN zoho_billing_customer_id TYPE varchar(12)",
            "fail",
            "does not take '4815000000044895321'",
        ),
        (
            "CREATE TYPE sync_state AS ENUM ('synced', 'failed'); "
            "ALTER TABLE customers ALTER COLUMN zoho_sync_status TYPE sync_state USING NULL",
            "fail",
            "zoho_sync_status sync_state, zoho_last_synced_at timestamp with time zone (operator",
        ),
        ("ALTER TABLE customers DROP COLUMN zoho_last_synced_at", "fail", "lacks zoho_last_synced_at"),
    ],
)
def test_write_back_columns_are_judged_by_what_zoho_cdc_writes(database_url, ddl, verdict, words):
    if ddl:
        sql_exec(database_url, ddl)
    sql_exec(database_url, "INSERT INTO customers (account_number, zoho_sync_status) VALUES ('CT-1', NULL)")
    before = sql_value(database_url, "SELECT md5(string_agg(c::text, ',')) FROM customers c")
    check = line(database_url, "customers write-back columns")
    assert check.state == verdict, check.detail
    assert words in check.detail
    assert sql_value(database_url, "SELECT md5(string_agg(c::text, ',')) FROM customers c") == before


def test_a_table_without_replica_identity_and_a_publication_without_it_are_named(database_url):
    sql_exec(database_url, "ALTER TABLE customer_invoices REPLICA IDENTITY NOTHING")
    sql_exec(database_url, "CREATE PUBLICATION zoho_cdc FOR TABLE customers")
    identity = line(database_url, "customer_invoices replica identity")
    assert identity.state == "fail" and "REPLICA IDENTITY FULL" in identity.detail
    publication = line(database_url, "publication zoho_cdc")
    assert publication.state == "fail"
    assert publication.detail.endswith("ALTER PUBLICATION zoho_cdc ADD TABLE customer_invoices.")
