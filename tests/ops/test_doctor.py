"""`zoho-cdc doctor`: all green on a healthy stack, then each broken dependency in turn gives its own ✗,
its sentence and a non-zero exit, while every other line stays green; it never writes.

The healthy stack is the real one: PostgreSQL, the Debezium relay (publication, slot, topics), the
broker, the live sync (migrations, a synced customer) and the Zoho simulator.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from consumer.jobs.doctor import diagnose
from consumer.local.broker import ensure_topic
from consumer.settings import Settings
from tests.consumer.harness import LiveSync, settings_for, wait_for
from tests.support import sql_exec, sql_value

pytestmark = pytest.mark.relay
REPO = Path(__file__).resolve().parents[2]


def failed(checks: list[Any]) -> dict[str, str]:
    return {c.name: c.detail for c in checks if c.state == "fail"}


def cannot(checks: list[Any]) -> set[str]:
    return {c.name for c in checks if c.state == "unknown"}


async def doctor_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`zoho-cdc doctor` as a person runs it: a process reading the settings from its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOHO_", "DEBEZIUM_", "KAFKA_"))}
    for name, value in settings.model_dump().items():
        plain = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        env[name.upper()] = str(plain).lower() if isinstance(plain, bool) else str(plain)
    env["PYTHONPATH"] = str(REPO)
    command = [sys.executable, "-m", "consumer", "doctor", *args]
    return await asyncio.to_thread(
        subprocess.run, command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )


def database_rows(database_url: str) -> tuple[Any, ...]:
    """What doctor must leave as it found it: source rows, sync log and map, queued write-backs."""
    return tuple(
        sql_value(database_url, q)
        for q in (
            "SELECT md5(string_agg(c::text, ',' ORDER BY id)) FROM customers c",
            "SELECT count(*) FROM zoho_sync_log",
            "SELECT md5(string_agg(m::text, ',' ORDER BY entity_id)) FROM zoho_entity_map m",
            "SELECT count(*) FROM zoho_pending_write_back",
        )
    )


async def test_doctor_is_green_on_the_healthy_stack_and_names_each_broken_dependency(
    database_url, kafka_bootstrap, topic_prefix, zoho_sim, zoho_settings, relay_process
):
    sql_exec(
        database_url,
        "INSERT INTO customers (account_number, email, first_name, last_name) VALUES"
        " ('CT-2025-00701', 'ops@example.co.za', 'Ama', 'Doctor')",
    )
    relay = relay_process(database_url, topic_prefix, kafka_bootstrap)
    settings = settings_for(
        zoho_settings, kafka_bootstrap, topic_prefix, debezium_slot_name=f"zcdc_{topic_prefix}".lower()
    )
    await asyncio.to_thread(ensure_topic, kafka_bootstrap, settings.dlq_topic)  # as `zoho-cdc dev up` does
    async with LiveSync(settings):
        await wait_for(lambda: sql_value(database_url, "SELECT zoho_billing_customer_id FROM customers"), 60)

    # Healthy: no ✗; the only line Zoho cannot answer is its plan's call limits.
    calls_before = zoho_sim.stats()["calls"]
    rows_before = database_rows(database_url)
    checks = await diagnose(settings)
    assert failed(checks) == {}, [c.line() for c in checks]
    assert cannot(checks) == {"call limits"}
    names = {c.name for c in checks}
    for expected in ("wal_level", "customers write-back columns", "migrations", "account-number field"):
        assert expected in names
    slot = next(c for c in checks if c.name.startswith("slot "))
    assert slot.detail.startswith("active")
    # it wrote nothing: not to the source, not to zoho-cdc's tables, and asked Zoho with GETs only
    assert database_rows(database_url) == rows_before
    calls_after = zoho_sim.stats()["calls"]
    made = {k for k, n in calls_after.items() if n != calls_before.get(k, 0)}
    assert made and all(k.startswith("GET ") for k in made), made

    result = await doctor_cli(settings, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for secret in (settings.zoho_refresh_token, settings.zoho_client_secret):
        assert secret.get_secret_value() not in result.stdout + result.stderr
    assert report["ok"] is True and all(c["state"] != "fail" for c in report["checks"])

    # Each broken dependency in turn: its own ✗ and sentence, every other line unchanged.
    wrong_org = failed(await diagnose(settings.model_copy(update={"zoho_organization_id": "999999"})))
    assert set(wrong_org) == {"organisation"}
    assert (
        "ZOHO_ORGANIZATION_ID=999999 is not an organisation this token can see" in wrong_org["organisation"]
    )

    zoho_sim.set_config(api_domain="https://www.zohoapis.eu")
    zoho_sim.expire_access_tokens()  # the next token says it belongs to the EU data centre
    sql_exec(database_url, "DELETE FROM zoho_oauth_token")
    wrong_dc = await diagnose(settings)
    assert set(failed(wrong_dc)) == {"data centre"}
    assert "ZOHO_API_BASE=https://www.zohoapis.eu/billing/v1" in failed(wrong_dc)["data centre"]
    zoho_sim.set_config(api_domain=None)
    zoho_sim.expire_access_tokens()
    sql_exec(database_url, "DELETE FROM zoho_oauth_token")

    other_label = settings.model_copy(update={"zoho_account_number_field": "Acct No"})
    label_checks = await diagnose(other_label)
    assert set(failed(label_checks)) == {"account-number field"}
    assert (
        "Zoho has no customer custom field labelled 'Acct No'" in failed(label_checks)["account-number field"]
    )

    no_topics = settings.model_copy(update={"topic_prefix": f"{topic_prefix}x", "dlq_topic": "absent.dlq"})
    topic_checks = failed(await diagnose(no_topics))
    assert set(topic_checks) == {
        f"topic {topic_prefix}x.public.customers",
        f"topic {topic_prefix}x.public.customer_invoices",
        "dead-letter topic absent.dlq",
    }
    assert "does not exist" in topic_checks[f"topic {topic_prefix}x.public.customers"]

    sql_exec(
        database_url,
        "ALTER TABLE customers ADD CONSTRAINT sync_status_known"
        " CHECK (zoho_sync_status IN ('pending', 'ok', 'failed')) NOT VALID",
    )
    check_checks = failed(await diagnose(settings))
    assert set(check_checks) == {"customers write-back columns"}
    assert "sync_status_known" in check_checks["customers write-back columns"]
    assert "rejects zoho_sync_status='synced'" in check_checks["customers write-back columns"]
    sql_exec(database_url, "ALTER TABLE customers DROP CONSTRAINT sync_status_known")

    relay.terminate()
    await wait_for(
        lambda: sql_value(
            database_url,
            "SELECT NOT active FROM pg_replication_slots WHERE slot_name = %s",
            settings.debezium_slot_name,
        ),
        30,
    )
    sql_exec(database_url, "UPDATE customers SET notes = repeat('x', 10000)")  # WAL the slot now holds
    slot_checks = failed(await diagnose(settings))
    assert set(slot_checks) == {f"slot {settings.debezium_slot_name}"}
    assert "is inactive and holds" in slot_checks[f"slot {settings.debezium_slot_name}"]
    result = await doctor_cli(settings)
    assert result.returncode == 1
    assert f"✗ postgres slot {settings.debezium_slot_name}: replication slot" in result.stdout
