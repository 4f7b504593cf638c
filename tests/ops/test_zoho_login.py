"""`zoho-cdc zoho login` against the simulator, and `zoho-cdc run` refusing what doctor calls fatal.

Login goes from a grant code to settings that a real `zoho-cdc run` process syncs with; a reused or
expired code gets its sentence; login, doctor and run together spend the one token request login says.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from connectors.zoho.errors import REFRESH_TOKEN_REVOKED_SENTENCE
from connectors.zoho.oauth.data_centres import SCOPE_STRING
from consumer.jobs.doctor.zoho import zoho_checks
from consumer.migrations import migrate
from consumer.pipeline.intake.scheduler import FatalSyncError
from consumer.service.live_sync import LiveSync
from consumer.settings import Settings
from tests.consumer.harness import committed_offsets, settings_for, wait_for
from tests.support import Source, sql_value

REPO = Path(__file__).resolve().parents[2]


def cli_env(**values: Any) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ZOHO_", "DATABASE_", "KAFKA_", "TOPIC_"))
    }
    env.update({k.upper(): str(v) for k, v in values.items()})
    env["PYTHONPATH"] = str(REPO)
    return env


async def zoho_cdc(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "consumer", *args]
    return await asyncio.to_thread(
        subprocess.run, command, env=env, cwd=REPO, input=stdin, capture_output=True, text=True, timeout=120
    )


def login_args(sim: Any, code: str, *extra: str) -> list[str]:
    return [
        "zoho", "login", "--accounts-url", sim.accounts_url, "--api-base", sim.base_url,
        "--client-id", sim.client_id, "--client-secret", sim.client_secret, "--code", code, *extra,
    ]  # fmt: skip


def read_settings_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


async def test_login_turns_a_grant_code_into_settings_a_real_run_syncs_with(
    database_url, kafka_bootstrap, topic_prefix, zoho_sim, tmp_path
):
    migrate(database_url)
    code = zoho_sim.generate_grant_code(SCOPE_STRING)["code"]
    written = tmp_path / "zoho.env"
    result = await zoho_cdc(
        *login_args(zoho_sim, code, "--write", str(written)), env=cli_env(database_url=database_url)
    )
    assert result.returncode == 0, result.stderr
    assert SCOPE_STRING in result.stdout  # the exact scope string to tick
    values = read_settings_file(written)
    # secrets are masked on the terminal, whole in the 0600 file
    assert (
        values["ZOHO_REFRESH_TOKEN"].startswith("1000.") and values["ZOHO_REFRESH_TOKEN"] not in result.stdout
    )
    assert zoho_sim.client_secret not in result.stdout and "ZOHO_CLIENT_SECRET=********" in result.stdout
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert values["ZOHO_ORGANIZATION_ID"] == zoho_sim.org_id
    assert (
        values["ZOHO_API_BASE"] == zoho_sim.base_url and values["ZOHO_ACCOUNTS_URL"] == zoho_sim.accounts_url
    )
    assert zoho_sim.stats()["token_requests"] == 1  # the exchange

    # doctor with those settings: the token login cached, no refresh
    settings = Settings(
        _env_file=None, database_url=database_url, **{k.lower(): v for k, v in values.items()}
    )  # type: ignore[call-arg]
    checks = await zoho_checks(settings)
    assert [c.name for c in checks if c.state == "fail"] == []
    assert "the cached token, no refresh" in next(c.detail for c in checks if c.name == "token")

    # a real `zoho-cdc run` process with them syncs a customer
    source = Source(database_url, kafka_bootstrap, topic_prefix)
    source.insert_customer(1)
    await source.flush()
    env = cli_env(
        database_url=database_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        consumer_group=f"g-{topic_prefix}",
        dlq_topic=f"{topic_prefix}.dlq",
        **{k.lower(): v for k, v in values.items()},
    )
    run = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "consumer", "run", "--no-status",
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        await wait_for(lambda: sql_value(database_url, "SELECT zoho_billing_customer_id FROM customers"), 60)
    finally:
        run.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(run.communicate(), 60)
    assert run.returncode == 0, err.decode()[-2000:]
    assert len(zoho_sim.state()["customers"]) == 1
    # login, doctor and run together: the one token request login said it spent, and no more later
    assert zoho_sim.stats()["token_requests"] == 1
    await asyncio.sleep(2)
    assert zoho_sim.stats()["token_requests"] == 1


async def test_a_reused_or_expired_code_gets_one_sentence_naming_the_three_causes(database_url, zoho_sim):
    env = cli_env(database_url=database_url)
    used = zoho_sim.generate_grant_code(SCOPE_STRING)["code"]
    assert (await zoho_cdc(*login_args(zoho_sim, used), env=env)).returncode == 0
    again = await zoho_cdc(*login_args(zoho_sim, used), env=env)
    expired = zoho_sim.generate_grant_code(SCOPE_STRING)["code"]
    zoho_sim.expire_grant_codes()
    late = await zoho_cdc(*login_args(zoho_sim, expired), env=env)
    for result in (again, late):
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        sentence = result.stderr.strip()
        assert sentence.startswith("error: Zoho refused the grant code (invalid_code)")
        for cause in ("already used", "older than its 3 minutes", "another data centre", "make a new one"):
            assert cause in sentence


async def test_login_lists_several_organisations_and_takes_the_one_chosen(database_url, zoho_sim_factory):
    sim = zoho_sim_factory(other_organization_ids=("20099001",))
    env = cli_env(database_url=database_url)
    code = sim.generate_grant_code(SCOPE_STRING)["code"]
    result = await zoho_cdc(*login_args(sim, code), env=env, stdin="2\n")
    assert result.returncode == 0, result.stderr
    assert f"1. {sim.org_id}" in result.stdout and "2. 20099001  Organisation 20099001" in result.stdout
    assert "ZOHO_ORGANIZATION_ID=20099001" in result.stdout
    code = sim.generate_grant_code(SCOPE_STRING)["code"]
    refused = await zoho_cdc(*login_args(sim, code, "--organization", "31337"), env=env)
    assert refused.returncode == 1 and "organisation 31337 is not one this token can see" in refused.stderr


@pytest.mark.parametrize("broken", ["organisation", "data centre", "credentials"])
async def test_run_refuses_what_doctor_calls_fatal_with_the_same_sentence_before_reading_an_event(
    broken, database_url, kafka_bootstrap, topic_prefix, zoho_sim, zoho_settings
):
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    if broken == "organisation":
        settings = settings.model_copy(update={"zoho_organization_id": "999999"})
    elif broken == "data centre":
        zoho_sim.set_config(api_domain="https://www.zohoapis.eu")
    else:
        zoho_sim.revoke_refresh_token()
    source = Source(database_url, kafka_bootstrap, topic_prefix)
    source.insert_customer(1)
    await source.flush()
    migrate(database_url)

    doctor = [c for c in await zoho_checks(settings) if c.state == "fail"]
    assert len(doctor) == 1 and doctor[0].fatal
    with pytest.raises(FatalSyncError) as refused:
        await asyncio.wait_for(LiveSync(settings, serve_status=False).main(), 60)
    assert str(refused.value) == doctor[0].detail
    if broken == "credentials":
        assert str(refused.value) == REFRESH_TOKEN_REVOKED_SENTENCE
    # nothing was read: no offset committed, no Zoho record, no sync-log row
    committed = await committed_offsets(
        kafka_bootstrap, settings.consumer_group, (f"{topic_prefix}.public.customers",)
    )
    assert committed and all(offset == 0 for offset in committed.values())
    assert zoho_sim.state()["customers"] == []
    assert sql_value(database_url, "SELECT count(*) FROM zoho_sync_log") == 0
    # and nothing was recorded: not even the organisation as the live sync's
    assert sql_value(database_url, "SELECT count(*) FROM zoho_live_organization") == 0


async def test_doctor_spends_at_most_one_refresh_and_then_reuses_the_cached_token(
    database_url, zoho_sim, zoho_settings
):
    migrate(database_url)
    first = {c.name: c for c in await zoho_checks(zoho_settings)}
    assert first["token"].state == "ok" and "one refresh" in first["token"].detail
    second = {c.name: c for c in await zoho_checks(zoho_settings)}
    assert "the cached token, no refresh" in second["token"].detail
    assert zoho_sim.stats()["token_requests"] == 1
    await asyncio.sleep(2)  # a quiet period: nothing keeps asking
    assert zoho_sim.stats()["token_requests"] == 1
    # a refresh token Zoho refuses: one request, one sentence, marked fatal, never a loop
    zoho_sim.revoke_refresh_token()
    zoho_sim.expire_access_tokens()
    await asyncio.to_thread(sql_value, database_url, "DELETE FROM zoho_oauth_token RETURNING 1")
    refused = [c for c in await zoho_checks(zoho_settings) if c.state == "fail"]
    assert [(c.name, c.detail, c.fatal) for c in refused] == [("token", REFRESH_TOKEN_REVOKED_SENTENCE, True)]
    await asyncio.sleep(1)
    assert zoho_sim.stats()["token_requests"] == 2


async def test_the_run_and_doctor_commands_print_the_same_sentence_and_fail(
    database_url, kafka_bootstrap, topic_prefix, zoho_sim, zoho_settings
):
    settings = settings_for(zoho_settings, kafka_bootstrap, topic_prefix)
    env = cli_env(
        **{
            name: (value.get_secret_value() if hasattr(value, "get_secret_value") else value)
            for name, value in settings.model_dump().items()
            if name.startswith(("zoho_", "database_", "kafka_", "topic_", "consumer_", "dlq_"))
        }
    )
    env["ZOHO_ORGANIZATION_ID"] = "999999"
    doctor = await zoho_cdc("doctor", env=env)
    run = await zoho_cdc("run", "--no-status", env=env)
    sentence = "ZOHO_ORGANIZATION_ID=999999 is not an organisation this token can see"
    line = next((line for line in doctor.stdout.splitlines() if sentence in line), doctor.stdout)
    assert doctor.returncode == 1 and line.startswith("✗ zoho     organisation: ")
    # no migrations yet: the token is still checked, with one refresh instead of the cache
    assert "✓ zoho     token: works (one refresh at" in doctor.stdout
    assert run.returncode == 3
    assert run.stderr.strip() == "error: " + line.removeprefix("✗ zoho     organisation: ")
