"""`zoho-cdc status --json`, `/status.json`, `/metrics` and the HTML page agree with the sync log.

A small live sync runs against real PostgreSQL, the real broker and the simulator; every number the
status shows is then compared with a SQL count over the sync log or the source tables (the user's
own verification queries), and nothing served or printed may contain a secret.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from consumer.entities.registry import source_topics
from tests.consumer.harness import (
    LiveSync,
    committed_offsets,
    end_offsets,
    read_topic,
    settings_for,
    wait_for,
)
from tests.fixtures_zoho import settings_for as sim_settings
from tests.ops import (
    CLIENT_SECRET,
    DB_PASSWORD,
    REFRESH_TOKEN,
    populate_world,
    run_cli,
    status_server,
    with_password,
)
from tests.support import Source

UNSYNCED_CUSTOMERS = (  # the user's verification query
    "SELECT count(*) FROM customers WHERE account_type <> 'internal_test'"
    " AND zoho_billing_customer_id IS NULL"
)
UNSYNCED_INVOICES = (
    "SELECT count(*) FROM customer_invoices i JOIN customers c ON c.id = i.customer_id"
    " WHERE c.account_type <> 'internal_test' AND i.zoho_billing_invoice_id IS NULL"
)


@pytest.fixture
def secret_sim(zoho_sim_factory):  # type: ignore[no-untyped-def]
    return zoho_sim_factory(client_secret=CLIENT_SECRET, refresh_tokens=(REFRESH_TOKEN,), require_email=True)


@pytest.fixture
def settings(secret_sim, database_url, kafka_bootstrap, topic_prefix):  # type: ignore[no-untyped-def]
    base = sim_settings(secret_sim, with_password(database_url, DB_PASSWORD))
    return settings_for(base, kafka_bootstrap, topic_prefix)


@pytest.fixture
def source(database_url, kafka_bootstrap, topic_prefix):  # type: ignore[no-untyped-def]
    return Source(database_url, kafka_bootstrap, topic_prefix)


def sql_outcomes(source: Source, group: str) -> dict[str, int]:
    rows = source.query(
        "SELECT outcome, count(*) FROM zoho_sync_log WHERE consumer_group = %s GROUP BY outcome", group
    )
    return {outcome: int(n) for outcome, n in rows}


async def caught_up(settings) -> bool:  # type: ignore[no-untyped-def]
    topics = source_topics(settings.topic_prefix)
    ends = await end_offsets(settings.kafka_bootstrap_servers, topics)
    done = await committed_offsets(settings.kafka_bootstrap_servers, settings.consumer_group, topics)
    return bool(ends) and done == ends


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_status_json_metrics_and_cli_agree_with_the_sync_log_and_show_no_secret(
    settings, source, secret_sim
):
    await populate_world(source)
    group = settings.consumer_group
    async with LiveSync(settings) as live:
        await wait_for(lambda: caught_up(settings), timeout=30)
        access_token = (await live.session.client.auth.token()).access_token
        async with status_server(live.session, live.runner) as base, httpx.AsyncClient(base_url=base) as http:
            status = (await http.get("/status.json")).json()
            metrics_text = (await http.get("/metrics")).text
            page = (await http.get("/")).text
            ready = await http.get("/readyz")
            health = await http.get("/healthz")

    expected = sql_outcomes(source, group)
    # the world ends in: synced customers and invoices, skipped internal-test rows, two dead letters
    assert expected["synced"] == 4 and expected["skipped"] == 2 and expected["dead_lettered"] == 2
    assert {k: v for k, v in status["outcomes_total"].items() if v} == expected
    assert {k: v for k, v in status["outcomes_last_hour"].items() if v} == expected
    assert {k: v for k, v in status["outcomes_last_day"].items() if v} == expected
    assert (
        status["customers_unsynced"] == source.query(UNSYNCED_CUSTOMERS)[0][0] == 2
    )  # no email + never sent
    assert status["invoices_unsynced"] == source.query(UNSYNCED_INVOICES)[0][0] == 0
    failed = "SELECT count(*) FROM customers WHERE zoho_sync_status = 'failed'"
    assert status["customers_failed"] == source.query(failed)[0][0] == 1
    dead = await read_topic(settings.kafka_bootstrap_servers, settings.dlq_topic)
    assert status["dlq_depth"] == len(dead) == 2
    assert len(status["dead_letters"]) == 2
    assert {e["entity_type"] for e in status["last_errors"]} == {"customer", "unknown"}
    assert status["total_lag"] == 0 and status["lag"]  # every partition listed, none behind
    assert ready.status_code == 200 and ready.json() == {"postgres": "ok", "kafka": "ok", "zoho_token": "ok"}
    assert health.status_code == 200

    samples = metric_samples(metrics_text)
    events = {
        dict(labels)["outcome"]: int(v)
        for (name, labels), v in samples.items()
        if name == "zoho_cdc_events_total"
    }
    assert events == expected
    calls = sum(v for (name, _), v in samples.items() if name == "zoho_cdc_zoho_calls_total")
    assert calls == secret_sim.stats()["requests"] > 0  # every API request the simulator saw, counted once
    assert samples[("zoho_cdc_zoho_http_429_total", ())] == secret_sim.stats()["http_429"]
    assert samples[("zoho_cdc_zoho_token_refreshes_total", ())] >= 1
    assert ("zoho_cdc_zoho_limiter_wait_seconds_total", ()) in samples
    lag = [v for (name, _), v in samples.items() if name == "zoho_cdc_lag_records"]
    assert lag and sum(lag) == 0
    latency_count = samples[("zoho_cdc_end_to_end_seconds_count", ())]
    assert latency_count == expected["synced"]  # one end-to-end latency per synced event

    cli = await asyncio.to_thread(run_cli, settings, "status", "--json")
    assert cli.returncode == 0, cli.stderr
    printed = json.loads(cli.stdout)
    assert {k: v for k, v in printed["outcomes_total"].items() if v} == expected
    assert printed["customers_unsynced"] == status["customers_unsynced"]
    assert printed["invoices_unsynced"] == status["invoices_unsynced"]
    assert printed["customers_failed"] == 1 and printed["dlq_depth"] == 2 and printed["total_lag"] == 0
    assert printed["budget"]["calls_today"] == secret_sim.stats()["calls_today"]

    human = await asyncio.to_thread(run_cli, settings, "status")
    assert human.returncode == 0, human.stderr
    for secret in (CLIENT_SECRET, REFRESH_TOKEN, DB_PASSWORD, access_token):
        for shown in (
            json.dumps(status),
            metrics_text,
            page,
            cli.stdout,
            cli.stderr,
            human.stdout,
            human.stderr,
        ):
            assert secret not in shown


async def test_with_a_status_token_only_the_probes_answer_without_it(
    zoho_settings, kafka_bootstrap, topic_prefix, database_url
):
    token = SecretStr("s3cret-status-token")
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix, status_token=token)
    async with LiveSync(settings) as live:
        async with status_server(live.session, live.runner) as base, httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code in (200, 503)  # open, whatever it answers
            for path in ("/", "/status.json", "/metrics"):
                refused = await http.get(path)
                assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
                wrong = await http.get(path, headers={"Authorization": "Bearer nope"})
                assert wrong.status_code == 401
                allowed = await http.get(path, headers={"Authorization": "Bearer s3cret-status-token"})
                assert allowed.status_code == 200
                assert "s3cret-status-token" not in allowed.text


def test_a_status_page_off_loopback_without_a_token_is_refused_in_one_sentence() -> None:
    from consumer.settings import ConfigError, load_settings

    with pytest.raises(ConfigError, match="STATUS_TOKEN must be set when STATUS_HOST"):
        load_settings(status_host="0.0.0.0")
    assert load_settings(status_host="0.0.0.0", status_token="t").status_host == "0.0.0.0"
