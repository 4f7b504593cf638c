"""Switching over from another integration, through the real relay: Zoho already holds records zoho-cdc
did not create, and the source already holds some of their ids.

PostgreSQL -> Debezium -> Kafka -> `zoho-cdc run` -> the Zoho simulator, loaded with records "made by
others" (the older integration's ids, no Account Number custom field). Calls are counted from the
simulator's own counters, then a quiet period checks that nothing more is sent (the write-backs of the
adoptions are streamed back by Debezium, and an echo loop would show there).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.consumer.harness import LiveSync, read_topic, settings_for, wait_for
from tests.support import sql_exec as _exec
from tests.support import sql_value as _one

pytestmark = pytest.mark.relay

FIXTURE = Path(__file__).parent.parent / "fixtures" / "switchover"
QUIET_SECONDS = 30.0  # many relay polls and consumer commits: any echo or retry loop would show


def _writes(sim: Any) -> dict[str, int]:
    """Every non-GET API request the simulator received, by endpoint."""
    return {e: sum(by.values()) for e, by in sim.stats()["by_endpoint"].items() if not e.startswith("GET ")}


def _account_number(customer: dict[str, Any]) -> str | None:
    return next(
        (f["value"] for f in customer.get("custom_fields", []) if f["label"] == "Account Number"), None
    )


def _source(url: str) -> dict[str, tuple[str | None, str | None, str]]:
    """account number -> (stored Zoho id, sync status, source id)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT account_number, zoho_billing_customer_id, zoho_sync_status, id::text FROM customers"
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _log(url: str) -> list[tuple[str, str, str | None, str | None]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT entity_id, outcome, zoho_id, error FROM zoho_sync_log WHERE entity_type = 'customer'"
            " ORDER BY id"
        ).fetchall()
    return [(str(r[0]), r[1], r[2], r[3]) for r in rows]


async def _quiet(sim: Any) -> None:
    """No Zoho call at all during the quiet period (reads included)."""
    before = sim.stats()["requests"]
    await asyncio.sleep(QUIET_SECONDS)
    assert sim.stats()["requests"] == before, "Zoho calls kept coming after the switch-over was done"


async def test_switch_over_from_the_fixture_adopts_10_creates_3_and_duplicates_none(
    database_url, kafka_bootstrap, topic_prefix, zoho_settings, zoho_sim, relay_process
):
    others = json.loads((FIXTURE / "zoho-customers.json").read_text())["customers"]
    zoho_sim.load_records_of_others(customers=others)
    _exec(database_url, (FIXTURE / "source-rows.sql").read_text())
    held_before = {a: z for a, (z, _, _) in _source(database_url).items()}
    assert sum(1 for z in held_before.values() if z) == 10

    relay_process(database_url, topic_prefix, kafka_bootstrap)
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    async with LiveSync(settings):
        await wait_for(
            lambda: all(s == "synced" and z for z, s, _ in _source(database_url).values()), timeout=120
        )
        await wait_for(lambda: len(_log(database_url)) >= 13, timeout=30)
        await _quiet(zoho_sim)

    customers = zoho_sim.state()["customers"]
    assert len(customers) == 13
    foreign_ids = {c["customer_id"] for c in others}
    assert len([c for c in customers if c["customer_id"] not in foreign_ids]) == 3  # the 3 'failed' rows
    source = _source(database_url)
    for account, stored in held_before.items():
        if stored:
            assert source[account][0] == stored, f"{account}: the stored id was replaced"
    # 0 duplicates: one Zoho record per account number, and every one carries its account number now
    assert Counter(_account_number(c) for c in customers) == Counter({a: 1 for a in source})
    assert {_account_number(c): c["customer_id"] for c in customers} == {
        a: z for a, (z, _, _) in source.items()
    }
    writes = _writes(zoho_sim)
    assert writes == {"POST /customers": 3, "PUT /customers/{id}": 10}  # at most 13 writes: exactly 13
    reads = zoho_sim.stats()["by_endpoint"]
    assert sum(reads.get("GET /customers/{id}", {}).values()) == 10  # one read per stored id
    # The sync log says how each entity was matched.
    notes = Counter((n or "").split(" ")[0] for _, outcome, _, n in _log(database_url) if outcome == "synced")
    assert notes == Counter({"adopted": 10, "created:": 3})
    by_id = [
        n for _, o, _, n in _log(database_url) if o == "synced" and n and "by the id the source held" in n
    ]
    assert len(by_id) == 10


async def test_ambiguous_email_two_claimants_and_an_unknown_stored_id_through_the_relay(
    database_url, kafka_bootstrap, topic_prefix, zoho_settings, zoho_sim, relay_process
):
    zoho_sim.load_records_of_others(
        customers=[
            {"customer_id": "OLD-twice-1", "display_name": "Twice One", "email": "twice@old.example"},
            {"customer_id": "OLD-twice-2", "display_name": "Twice Two", "email": "TWICE@old.example"},
            {"customer_id": "OLD-shared", "display_name": "Shared", "email": "shared@old.example"},
            {"customer_id": "OLD-moved", "display_name": "Moved", "email": "moved@old.example"},
        ]
    )
    insert = (
        "INSERT INTO customers (account_number, email, first_name, last_name, zoho_billing_customer_id,"
        " zoho_sync_status) VALUES (%s, %s, 'Customer', %s, %s, %s) RETURNING id::text"
    )
    ambiguous = _one(database_url, insert, "CT-AMB", "twice@old.example", "Amb", None, "failed")
    claimant_a = _one(database_url, insert, "CT-CLAIM-A", "shared@old.example", "A", None, "failed")
    claimant_b = _one(database_url, insert, "CT-CLAIM-B", "Shared@old.example", "B", None, "failed")
    # Ids Zoho does not know (deleted, or of another organisation): matched again, by e-mail or not at all.
    gone_matched = _one(
        database_url, insert, "CT-GONE-1", "moved@old.example", "G1", "6179546000000000001", "synced"
    )
    gone_created = _one(
        database_url, insert, "CT-GONE-2", "new@new.example", "G2", "6179546000000000002", "synced"
    )

    replaced = (
        "SELECT zoho_sync_status = 'synced' AND zoho_billing_customer_id NOT LIKE '6179546%%'"
        " FROM customers WHERE id = %s"
    )
    relay_process(database_url, topic_prefix, kafka_bootstrap)
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    async with LiveSync(settings):
        await wait_for(
            lambda: all(
                _one(database_url, replaced, source_id) for source_id in (gone_matched, gone_created)
            ),
            timeout=120,
        )

        async def two_dead_letters() -> bool:
            return len(await read_topic(kafka_bootstrap, settings.dlq_topic)) >= 2

        await wait_for(two_dead_letters, timeout=60)
        await wait_for(lambda: len(_log(database_url)) >= 5, timeout=60)
        await _quiet(zoho_sim)
        letters = await read_topic(kafka_bootstrap, settings.dlq_topic)

    ids = {c["customer_id"] for c in zoho_sim.state()["customers"]}
    assert _writes(zoho_sim).get("POST /customers") == 1  # only CT-GONE-2: nothing matched it
    assert len(ids) == 5
    # The unknown stored ids: one adopted by e-mail, one created; each replacement has its reason logged.
    rows = {source_id: zoho_id for zoho_id, _, source_id in _source(database_url).values()}
    assert rows[gone_matched] == "OLD-moved"
    assert rows[gone_created] in ids and rows[gone_created].isdigit()
    log = {e: (o, n or "") for e, o, _, n in _log(database_url) if o == "synced"}
    assert "6179546000000000001 is not in Zoho" in log[gone_matched][1]
    assert "adopted Zoho customer OLD-moved by email" in log[gone_matched][1]
    assert "6179546000000000002 is not in Zoho" in log[gone_created][1] and "created:" in log[gone_created][1]
    # Ambiguous: one dead letter listing both candidates, nothing created, the row not mapped.
    messages = [dict(m.headers)["__connect.errors.exception.message"].decode() for m in letters]
    assert len(letters) == 2, messages
    amb = [m for m in messages if f"customer {ambiguous} matches 2 Zoho records" in m]
    assert len(amb) == 1 and "OLD-twice-1" in amb[0] and "OLD-twice-2" in amb[0]
    assert rows[ambiguous] is None
    # Two claimants of one record: one adopted it, the other is one dead letter naming both.
    winner, loser = (claimant_a, claimant_b) if rows[claimant_a] == "OLD-shared" else (claimant_b, claimant_a)
    assert rows[winner] == "OLD-shared" and rows[loser] is None
    lost = [m for m in messages if f"customer {loser} matches Zoho customer OLD-shared" in m]
    assert len(lost) == 1 and winner in lost[0]
