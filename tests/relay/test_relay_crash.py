"""SIGKILL in the middle of a stream loses no committed change and does not re-snapshot."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.fixtures_relay import read_records, wait_for_records

pytestmark = pytest.mark.relay

ROWS = [str(uuid.UUID(int=0xA000 + i)) for i in range(5)]
UPDATES = 30


def _snapshot_offsets_committed(kafka_bootstrap: str, topic_prefix: str) -> bool:
    offsets = read_records(kafka_bootstrap, [f"{topic_prefix}.relay-offsets"])
    return any(r.value and r.value.get("snapshot_completed") for r in offsets)


def test_sigkill_then_restart_delivers_every_committed_change_without_a_new_snapshot(
    database_url, topic_prefix, kafka_bootstrap, relay_process
):
    topic = f"{topic_prefix}.public.customers"
    with psycopg.connect(database_url, autocommit=True) as conn:
        for i, row in enumerate(ROWS):
            conn.execute(
                "INSERT INTO customers (id, account_number, first_name) VALUES (%s, %s, 'Crash')",
                (row, f"CT-2025-{9000 + i:05d}"),
            )
    relay = relay_process(database_url, topic_prefix, kafka_bootstrap)
    wait_for_records(
        kafka_bootstrap, [topic], lambda rs: sum(r.op == "r" for r in rs) == len(ROWS), relay=relay
    )
    # Kill only once the snapshot's completion is stored: before that a restart must snapshot again.
    wait_for_records(
        kafka_bootstrap,
        [topic],
        lambda _: _snapshot_offsets_committed(kafka_bootstrap, topic_prefix),
        relay=relay,
    )

    def notes(records):
        return {r.value["after"]["notes"] for r in records if r.op == "u"}

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE customers SET notes = 'n0' WHERE id = %s", (ROWS[0],))
        wait_for_records(kafka_bootstrap, [topic], lambda rs: "n0" in notes(rs), relay=relay)
        for i in range(1, UPDATES):
            conn.execute("UPDATE customers SET notes = %s WHERE id = %s", (f"n{i}", ROWS[i % len(ROWS)]))
            if i == 10:
                relay.kill()  # mid-stream: some of the updates so far are in flight, none after are seen
    relay.start()
    expected = {f"n{i}" for i in range(UPDATES)}
    records = wait_for_records(kafka_bootstrap, [topic], lambda rs: expected <= notes(rs), relay=relay)
    reads_per_row = {row: sum(1 for r in records if r.op == "r" and r.key == {"id": row}) for row in ROWS}
    assert reads_per_row == dict.fromkeys(ROWS, 1)
    assert relay.terminate() == 0
