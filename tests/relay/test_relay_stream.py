"""The relay against real PostgreSQL, a real Tansu broker and real Debezium.

One scenario (module fixture) runs the relay three times and the tests below assert on what it
left in Kafka, so the JVM starts as few times as possible:

1. snapshot of two customers and one invoice; then insert, update, deletes; SIGTERM.
2. a change made while the relay was down; restart; `zoho-cdc snapshot --table customers`; SIGTERM.
3. the replication slot is dropped (the "stale offsets" trap) and a row inserted; restart.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass, field

import psycopg
import pytest

from consumer.local import postgres as local_pg
from consumer.model.events import EntityType
from tests.fixtures_relay import KafkaRecord, RelayProcess, read_records, relay_env, wait_for_records

pytestmark = pytest.mark.relay

C1, C2, C3, C4 = (str(uuid.UUID(int=i)) for i in (0xC1, 0xC2, 0xC3, 0xC4))
I1 = str(uuid.UUID(int=0x11))


@dataclass
class Scenario:
    prefix: str
    customers_topic: str
    invoices_topic: str
    first_run: list[KafkaRecord] = field(default_factory=list)
    second_run: list[KafkaRecord] = field(default_factory=list)
    third_run: list[KafkaRecord] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)
    relay_log: str = ""


def _new_since(before: list[KafkaRecord], now: list[KafkaRecord]) -> list[KafkaRecord]:
    seen = {(r.topic, r.partition, r.offset) for r in before}
    return [r for r in now if (r.topic, r.partition, r.offset) not in seen]


def _has(records: list[KafkaRecord], key_id: str, op: str | None, **source: str) -> bool:
    return any(
        r.key == {"id": key_id}
        and r.op == op
        and all(r.value is not None and r.value["source"].get(k) == v for k, v in source.items())
        for r in records
    )


@pytest.fixture(scope="module")
def scenario(postgres_server: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory):
    prefix = f"t{uuid.uuid4().hex[:10]}"
    url = postgres_server.rsplit("/", 1)[0] + f"/zcdc_t_{uuid.uuid4().hex[:12]}"
    local_pg.ensure_database(url)
    workdir = tmp_path_factory.mktemp("relay-scenario")
    relay = RelayProcess(
        env=relay_env(url, prefix, kafka_bootstrap, workdir / "state"),
        log_path=workdir / "relay.log",
        cwd=workdir,
    )
    s = Scenario(prefix, EntityType.CUSTOMER.topic(prefix), EntityType.INVOICE.topic(prefix))
    topics = [s.customers_topic, s.invoices_topic]

    def sql(statement: str, *params: object) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(statement, params)

    try:
        sql(
            "INSERT INTO customers (id, account_number, email, first_name, last_name, company_name,"
            " account_type, billing_address) VALUES"
            " (%s, 'CT-2025-00001', 'thandi@example.co.za', 'Thandi', 'Nkosi',"
            " 'Nkosi Trading', 'business', '{\"city\": \"Durban\"}'), (%s, 'CT-2025-00002', NULL, 'Pieter',"
            " 'Botha', NULL, 'personal', NULL)",
            C1,
            C2,
        )
        sql(
            "INSERT INTO customer_invoices (id, customer_id, invoice_number, invoice_date, subtotal,"
            " vat_amount, total_amount, line_items)"
            " VALUES (%s, %s, 'INV-2025-0001', '2025-03-01', 100.00, 15.00, 115.00,"
            ' \'[{"description": "Fibre", "quantity": 1, "unit_price": "100.00"}]\')',
            I1,
            C1,
        )
        # --- run 1: snapshot, then live changes ---------------------------------------------
        relay.start()
        wait_for_records(
            kafka_bootstrap,
            topics,
            lambda rs: _has(rs, C1, "r") and _has(rs, C2, "r") and _has(rs, I1, "r"),
            relay=relay,
        )
        sql(
            "INSERT INTO customers (id, account_number, email, first_name) VALUES (%s, 'CT-2025-00003',"
            " 'sipho@example.co.za', 'Sipho')",
            C3,
        )
        sql("UPDATE customers SET phone = '+27 82 555 0101' WHERE id = %s", C1)
        sql("DELETE FROM customer_invoices WHERE id = %s", I1)
        sql("DELETE FROM customers WHERE id = %s", C2)
        s.first_run = wait_for_records(
            kafka_bootstrap,
            topics,
            lambda rs: _has(rs, C3, "c") and _has(rs, C1, "u") and _has(rs, I1, None) and _has(rs, C2, None),
            relay=relay,
        )
        s.exit_codes.append(relay.terminate())

        # --- run 2: a change made while stopped, then an incremental snapshot -----------------
        sql("UPDATE customers SET email = 'sipho.dlamini@example.co.za' WHERE id = %s", C3)
        relay.start()
        now = wait_for_records(kafka_bootstrap, topics, lambda rs: _has(rs, C3, "u"), relay=relay)
        subprocess.run(
            [sys.executable, "-m", "consumer", "snapshot", "--table", "customers"],
            env=relay.env,
            cwd=workdir,
            check=True,
            capture_output=True,
        )
        now = wait_for_records(
            kafka_bootstrap,
            topics,
            lambda rs: (
                _has(rs, C1, "r", snapshot="incremental") and _has(rs, C3, "r", snapshot="incremental")
            ),
            relay=relay,
        )
        s.second_run = _new_since(s.first_run, now)
        s.exit_codes.append(relay.terminate())

        # --- run 3: the slot is gone but offsets remain (database/slot recreated) ------------
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (relay.env["DEBEZIUM_SLOT_NAME"],))
        sql(
            "INSERT INTO customers (id, account_number, first_name) VALUES (%s, 'CT-2025-00004', 'Lerato')",
            C4,
        )
        before = read_records(kafka_bootstrap, topics)
        relay.start()
        now = wait_for_records(
            kafka_bootstrap, topics, lambda rs: _has(_new_since(before, rs), C4, "r"), relay=relay
        )
        s.third_run = _new_since(before, now)
        s.exit_codes.append(relay.terminate())
        s.relay_log = relay.log_text()  # before the tests read it
        yield s
    finally:
        s.relay_log = relay.log_text()
        if relay.running:
            relay.kill()
        local_pg.drop_database(url)


def _fixture_events(fixture_lines: dict[str, list[str]]) -> list[dict]:
    return [json.loads(line) for line in fixture_lines["events-plain"] + fixture_lines["events-plain-toast"]]


def _example(events: list[dict], table: str, op: str | None) -> dict:
    for e in events:
        if e["topic"].endswith(f".public.{table}") and (e["value"] or {}).get("op") == op:
            return e
    raise LookupError(f"no fixture event for {table} op={op}")


def test_snapshot_insert_update_delete_records_have_the_fixture_shape(scenario, fixture_lines):
    events = _fixture_events(fixture_lines)
    customer_after_fields = set(_example(events, "customers", "r")["value"]["after"])
    invoice_after_fields = set(_example(events, "customer_invoices", "r")["value"]["after"])
    checked = set()
    for record in scenario.first_run:
        table = record.topic.rsplit(".", 1)[1]
        if record.value is None:
            continue
        example = _example(events, table, record.op if (table, record.op) != ("customers", "c") else "r")
        assert set(record.key) == set(example["key"]), record
        assert set(record.value) == set(example["value"]), record
        assert set(record.value["source"]) == set(example["value"]["source"]), record
        after_fields = customer_after_fields if table == "customers" else invoice_after_fields
        if record.op == "d":
            assert record.value["after"] is None and record.value["before"]["id"] == record.key["id"]
        else:
            assert set(record.value["after"]) == after_fields, record
        assert record.value["source"]["connector"] == "postgresql"
        assert record.value["source"]["name"] == scenario.prefix
        checked.add((table, record.op))
    assert checked >= {("customers", "r"), ("customer_invoices", "r"), ("customers", "c"), ("customers", "u")}
    assert {("customers", "d"), ("customer_invoices", "d")} <= checked


def test_numeric_columns_are_strings_and_jsonb_is_json_text(scenario):
    invoice = next(r for r in scenario.first_run if r.key == {"id": I1} and r.op == "r")
    assert invoice.value["after"]["total_amount"] == "115.00"
    assert json.loads(invoice.value["after"]["line_items"])[0]["description"] == "Fibre"


def test_every_delete_is_followed_by_a_tombstone_with_the_same_key(scenario):
    for deleted in (C2, I1):
        for_key = [r for r in scenario.first_run if r.key == {"id": deleted}]
        ops = [r.op for r in for_key]
        assert ops[-2:] == ["d", None], ops
        assert for_key[-1].value is None


def test_all_records_of_one_row_land_in_one_partition(scenario):
    partitions: dict[tuple[str, str], set[int]] = {}
    for r in scenario.first_run + scenario.second_run:
        partitions.setdefault((r.topic, r.key["id"]), set()).add(r.partition)
    assert all(len(p) == 1 for p in partitions.values()), partitions


def test_sigterm_stops_the_relay_with_exit_code_0(scenario):
    assert scenario.exit_codes == [0, 0, 0], scenario.relay_log[-3000:]
    assert "Traceback" not in scenario.relay_log


def test_restart_resumes_from_stored_offsets_without_a_new_snapshot(scenario):
    assert _has(scenario.second_run, C3, "u")
    update = next(r for r in scenario.second_run if r.key == {"id": C3} and r.op == "u")
    assert update.value["after"]["email"] == "sipho.dlamini@example.co.za"
    initial_reads = [
        r for r in scenario.second_run if r.op == "r" and r.value["source"]["snapshot"] != "incremental"
    ]
    assert initial_reads == []


def test_snapshot_command_re_emits_every_row_of_the_table_as_incremental_reads(scenario):
    reads = {r.key["id"] for r in scenario.second_run if r.op == "r"}
    assert reads == {C1, C3}  # C2 was deleted; invoices were not asked for
    assert all(r.topic == scenario.customers_topic for r in scenario.second_run if r.op == "r")


def test_dropped_slot_with_stored_offsets_leads_to_a_new_snapshot_not_a_crash(scenario):
    reads = {r.key["id"] for r in scenario.third_run if r.op == "r"}
    assert reads == {C1, C3, C4}
    assert scenario.exit_codes[2] == 0
