"""`zoho-cdc adopt`: the switch-over plan, recording it, and links made or undone by hand.

Against real PostgreSQL and the Zoho simulator loaded with records "made by others" (the fixture of the
older integration, plus an ambiguous e-mail and two rows claiming one record). Zoho calls are counted on
the simulator; the plan must make no write anywhere, recording it no Zoho write.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

from tests.consumer.harness import LiveSync, settings_for, wait_for
from tests.ops import run_cli
from tests.support import Source

FIXTURE = Path(__file__).parent.parent / "fixtures" / "switchover"
EXTRA_ZOHO = [
    {"customer_id": "OLD-twice-1", "display_name": "Twice One", "email": "twice@old.example"},
    {"customer_id": "OLD-twice-2", "display_name": "Twice Two", "email": "twice@old.example"},
    {"customer_id": "OLD-shared", "display_name": "Shared", "email": "shared@old.example"},
]


def _writes(sim: Any) -> dict[str, int]:
    return {e: sum(by.values()) for e, by in sim.stats()["by_endpoint"].items() if not e.startswith("GET ")}


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        return int(conn.execute(sql).fetchone()[0])  # type: ignore[index]


def _load(database_url: str, sim: Any) -> None:
    sim.load_records_of_others(
        customers=json.loads((FIXTURE / "zoho-customers.json").read_text())["customers"] + EXTRA_ZOHO
    )
    with psycopg.connect(database_url) as conn:
        conn.execute((FIXTURE / "source-rows.sql").read_text())
        conn.execute(
            "INSERT INTO customers (account_number, email, first_name, last_name) VALUES"
            " ('CT-AMB', 'Twice@old.example', 'A', 'Mb'), ('CT-CLAIM-A', 'shared@old.example', 'C', 'A'),"
            " ('CT-CLAIM-B', 'shared@old.example', 'C', 'B')"
        )


def test_the_plan_lists_every_verdict_and_its_cost_and_writes_nothing_anywhere(
    zoho_settings, zoho_sim, database_url
):
    _load(database_url, zoho_sim)
    result = run_cli(zoho_settings, "adopt", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["counts"] == {
        "adopted by stored id": 10,
        "created": 3,
        "ambiguous": 1,
        "adopted by rule email": 1,
        "another entity's record": 1,
    }
    ambiguous = next(d for d in plan["decisions"] if d["verdict"] == "ambiguous")
    assert sorted(ambiguous["candidates"]) == ["OLD-twice-1", "OLD-twice-2"]
    claimed = {d["natural_key"]: d for d in plan["decisions"] if d["zoho_id"] == "OLD-shared"}
    assert {d["verdict"] for d in claimed.values()} == {"adopted by rule email", "another entity's record"}
    # The fixture's records carry no account number: each adopted one costs one PUT going live.
    assert plan["going_live"]["writes"] == 10 + 1 + 3
    assert plan["going_live"]["rate_per_minute"] == zoho_settings.zoho_rate_per_minute
    # 0 writes: not in Zoho (counted by the simulator), not in PostgreSQL.
    assert _writes(zoho_sim) == {}
    # one listing page of customers; the source has no invoices, so none of invoices
    assert zoho_sim.stats()["requests"] == plan["plan_calls"] == plan["listing_pages"] == 1
    for table in ("zoho_entity_map", "zoho_sync_log", "zoho_adoption_claim", "zoho_pending_write_back"):
        assert _count(database_url, f"SELECT count(*) FROM {table}") == 0, table  # noqa: S608
    assert _count(database_url, "SELECT count(*) FROM customers WHERE zoho_billing_customer_id IS NULL") == 6

    text = run_cli(zoho_settings, "adopt", "--dry-run")
    assert text.returncode == 0, text.stderr
    assert "adopted by stored id" in text.stdout and "OLD-twice-1, OLD-twice-2" in text.stdout
    assert "dry run: nothing recorded" in text.stdout


def test_recording_the_plan_maps_the_adoptions_and_logs_them_without_a_zoho_write(
    zoho_settings, zoho_sim, database_url
):
    _load(database_url, zoho_sim)
    result = run_cli(zoho_settings, "adopt", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["recorded"] == 11
    assert _writes(zoho_sim) == {}
    assert _count(database_url, "SELECT count(*) FROM zoho_entity_map WHERE zoho_id IS NOT NULL") == 11
    assert _count(database_url, "SELECT count(*) FROM zoho_sync_log WHERE operation = 'adopt'") == 11
    assert (
        _count(database_url, "SELECT count(*) FROM zoho_sync_log WHERE error LIKE 'adopted by stored id%'")
        == 10
    )
    # A second run finds them mapped: nothing recorded twice.
    again = json.loads(run_cli(zoho_settings, "adopt", "--json").stdout)
    assert again["recorded"] == 0 and again["counts"]["already mapped"] == 11


async def test_link_by_hand_then_unlink_is_logged_and_an_unlinked_record_is_never_matched_again(
    zoho_settings, zoho_sim, database_url, kafka_bootstrap, topic_prefix
):
    zoho_sim.load_records_of_others(customers=[EXTRA_ZOHO[2]])
    source = Source(database_url, kafka_bootstrap, topic_prefix)
    mine = source.insert_customer(1, email="shared@old.example")
    other = source.insert_customer(2, email="other@new.example")
    source.pending.clear()

    linked = run_cli(zoho_settings, "adopt", "link", "customer", mine, "OLD-shared")
    assert linked.returncode == 0, linked.stderr
    assert "linked by hand to Zoho customer OLD-shared" in linked.stdout
    refused = run_cli(zoho_settings, "adopt", "link", "customer", other, "OLD-shared")
    assert refused.returncode == 1
    assert f"belongs to source customer {mine}" in refused.stderr and "Traceback" not in refused.stderr
    missing = run_cli(zoho_settings, "adopt", "link", "customer", other, "no-such-id")
    assert missing.returncode == 1 and "Zoho has no customer no-such-id" in missing.stderr
    assert _count(database_url, "SELECT count(*) FROM zoho_sync_log WHERE operation = 'link'") == 1

    unlinked = run_cli(zoho_settings, "adopt", "unlink", "customer", mine)
    assert unlinked.returncode == 0, unlinked.stderr
    assert _count(database_url, "SELECT count(*) FROM zoho_entity_map") == 0
    assert _count(database_url, "SELECT count(*) FROM zoho_sync_log WHERE operation = 'unlink'") == 1
    assert (
        _count(database_url, "SELECT count(*) FROM customers WHERE zoho_billing_customer_id IS NOT NULL") == 0
    )

    # Its next change matches by e-mail again, but never the record it was unlinked from: it is created.
    source.emit("customers", "u", mine)
    await source.flush()
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    async with LiveSync(settings):
        created = await wait_for(
            lambda: source.query("SELECT zoho_billing_customer_id FROM customers WHERE id = %s", mine)[0][0]
        )
    assert created != "OLD-shared"
    assert _writes(zoho_sim) == {"POST /customers": 1}
