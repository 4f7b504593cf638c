"""Settings: one clear sentence per bad value, secrets never printed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from consumer.entities.registry import source_topics
from consumer.settings import ConfigError, load_settings, mask_url_password


def test_defaults_name_the_debezium_topics() -> None:
    settings = load_settings(topic_prefix="billing")
    assert source_topics(settings.topic_prefix) == (
        "billing.public.customers",
        "billing.public.customer_invoices",
    )
    assert settings.consumer_group == "zoho-sync"
    assert settings.dlq_topic == "zoho-sync.dlq"


@pytest.mark.parametrize(
    ("field", "value", "sentence"),
    [
        ("database_url", "mysql://root@db/app", "DATABASE_URL must look like postgresql://"),
        ("database_url", "postgresql://u@h:notaport/db", "DATABASE_URL has a port that is not a number"),
        ("kafka_bootstrap_servers", "localhost", "KAFKA_BOOTSTRAP_SERVERS must be host:port"),
        ("zoho_rate_per_minute", 0, "ZOHO_RATE_PER_MINUTE"),
        ("zoho_api_base", "ftp://x", "ZOHO_API_BASE must be an http(s) URL"),
    ],
)
def test_bad_value_gives_one_sentence_naming_the_variable(field: str, value: object, sentence: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(**{field: value})
    assert sentence in str(info.value)
    assert "Traceback" not in str(info.value)


def test_config_command_masks_secrets() -> None:
    env = {
        "ZOHO_CLIENT_SECRET": "very-secret-client",
        "ZOHO_REFRESH_TOKEN": "1000.refresh.secret",
        "DATABASE_URL": "postgresql://app:dbpass@127.0.0.1:5432/app",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [sys.executable, "-m", "consumer", "config"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "very-secret-client" not in out
    assert "1000.refresh.secret" not in out
    assert "dbpass" not in out
    assert "ZOHO_CLIENT_SECRET" in out and "********" in out


def test_config_command_rejects_malformed_database_url_without_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "consumer", "config"],
        env={"DATABASE_URL": "not a url", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_repr_of_settings_never_shows_a_password_or_secret() -> None:
    settings = load_settings(
        database_url="postgresql://app:db-pass-123@127.0.0.1:5432/app",
        zoho_client_secret="client-secret-xyz",
        zoho_refresh_token="1000.refresh.abc",
    )
    shown = repr(settings) + str(settings)
    for secret in ("db-pass-123", "client-secret-xyz", "1000.refresh.abc"):
        assert secret not in shown


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:db-pass-123@h:5432/app",
        "postgresql://app@h/app?password=db-pass-123&sslmode=require",
        "postgresql:///app?host=/run/pg&PASSWORD=db-pass-123",
        "postgresql://h/app?sslpassword=db-pass-123",
        "host=h user=app password=db-pass-123 dbname=app",
        "host=h password = 'db pass-123' dbname=app",
    ],
)
def test_every_form_of_database_password_is_masked(url: str) -> None:
    masked = mask_url_password(url)
    assert "db-pass-123" not in masked and "pass-123" not in masked
    assert "********" in masked


def test_config_command_masks_a_password_given_as_a_query_parameter() -> None:
    env = {**os.environ, "DATABASE_URL": "postgresql://app@127.0.0.1:5432/app?password=db-pass-123"}
    result = subprocess.run(
        [sys.executable, "-m", "consumer", "config"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "db-pass-123" not in result.stdout + result.stderr
    assert "password=********" in result.stdout


def test_a_logged_crash_shows_no_local_variables(capsys: pytest.CaptureFixture[str]) -> None:
    import structlog

    from consumer.logs import configure_logging

    configure_logging("warning", json=False)

    def fails() -> None:
        access_token = "secret-local-value-42"  # noqa: F841 - a local a rich traceback would print
        raise RuntimeError("boom")

    try:
        fails()
    except RuntimeError:
        structlog.get_logger("test").exception("crashed")
    err = capsys.readouterr().err
    assert "RuntimeError: boom" in err
    assert "secret-local-value-42" not in err


def test_the_options_the_pipeline_takes_default_to_the_settings_defaults() -> None:
    """A default is written once, on its setting: the option values built from Settings never restate it."""
    from consumer.model.plan import MappingConfig
    from consumer.pipeline.effects.apply import ApplyOptions
    from consumer.pipeline.intake.engine import EngineOptions
    from consumer.pipeline.intake.runner import RunOptions
    from consumer.settings import Settings

    defaults = Settings.model_construct()  # every field at its declared default, no environment read
    assert MappingConfig() == MappingConfig.from_settings(defaults)
    assert ApplyOptions() == ApplyOptions.from_settings(defaults)
    engine = EngineOptions(consumer_group="g", topic_prefix="p")
    assert (engine.dlq_topic, engine.reprocess_max_attempts) == (
        defaults.dlq_topic,
        defaults.reprocess_max_attempts,
    )
    run = RunOptions(topics=(), group_id="g", bootstrap_servers="b")
    assert (run.max_in_flight, run.commit_interval, run.shutdown_timeout) == (
        defaults.max_in_flight,
        defaults.commit_interval_seconds,
        defaults.shutdown_timeout_seconds,
    )
