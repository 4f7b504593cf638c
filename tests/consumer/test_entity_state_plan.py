"""The entity-state read finds each entity by the map's primary key, even on a map never analysed.

A fresh database (a first backfill) has no planner statistics for the entity map until autovacuum
analyses it, a minute or more later. Without them the planner took the by-Zoho-id index (then sharing
the key's first columns) or hashed the organisation's whole map for every read: a 15,000-entity no-op
replay read 8 million rows instead of 15,000. The plan is checked on real PostgreSQL.
"""

from __future__ import annotations

import json

import psycopg

from consumer.migrations import migrate
from consumer.pipeline.durability import store

ORG = "10234695"


def _scans(plan: dict) -> list[tuple[str, str, str]]:  # type: ignore[type-arg]
    """(table, node type, index) of every scan in the plan."""
    found = []
    if "Relation Name" in plan:
        found.append((plan["Relation Name"], plan["Node Type"], plan.get("Index Name", "")))
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


def test_entity_states_are_read_through_the_primary_key_on_a_map_never_analysed(database_url: str) -> None:
    migrate(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO zoho_entity_map (organization_id, entity_type, entity_id, zoho_id, payload_hash,"
            " source_row) SELECT %s, CASE WHEN g %% 3 = 0 THEN 'invoice' ELSE 'customer' END,"
            " md5(g::text)::uuid::text, (903000000000000 + g)::text, md5(g::text),"
            " jsonb_build_object('name', repeat('x', 300)) FROM generate_series(1, 6000) g",
            (ORG,),
        )
        keys = [("invoice" if g % 3 == 0 else "customer", f"k{g}") for g in range(300)]
        for sql in (store._STATE_SQL, store._STATES_SQL):
            row = conn.execute(
                "EXPLAIN (FORMAT JSON) " + sql, ([k for k, _ in keys], [i for _, i in keys], ORG)
            ).fetchone()
            assert row is not None
            plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
            scans = _scans(plan[0]["Plan"])
            map_scans = [scan[1:] for scan in scans if scan[0] == "zoho_entity_map"]
            assert map_scans == [("Index Scan", "zoho_entity_map_pkey")], scans
