"""Shared fixtures: real PostgreSQL, a real Tansu broker, and (in fixtures_zoho) the Zoho simulator.

Each test gets its own database (source schema applied) so tests never see each other's rows;
the broker is one per session and tests use unique topic prefixes and group ids instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from consumer.local import broker as local_broker
from consumer.local import postgres as local_pg

# Property tests check behaviour, not speed (speed lives in `make bench`): on a loaded CI machine a
# first example can take 300 ms, and hypothesis's default 200 ms deadline then fails a correct test.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")

pytest_plugins = ["tests.fixtures_zoho", "tests.fixtures_relay", "tests.fixtures_connect"]

FIXTURES = Path(__file__).parent / "fixtures"
SERVER_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The local PostgreSQL server, running and with wal_level=logical."""
    local_pg.ensure_logical_decoding(SERVER_URL)
    return SERVER_URL


def _database_url(server_url: str, name: str) -> str:
    return server_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def database_url(postgres_server: str) -> Iterator[str]:
    """A fresh database with the source schema, dropped after the test."""
    url = _database_url(postgres_server, f"zcdc_t_{uuid.uuid4().hex[:12]}")
    local_pg.ensure_database(url)
    yield url
    local_pg.drop_database(url)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Tansu broker on a free port for the whole session."""
    port = local_broker.free_port()
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    proc = local_broker.start_broker(port, log_path=log)
    yield f"127.0.0.1:{port}"
    local_broker.stop_process(proc)


@pytest.fixture
def topic_prefix() -> str:
    """A unique Debezium topic prefix per test, so topics on the shared broker never collide."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def fixture_lines() -> dict[str, list[str]]:
    """Every line of the captured Debezium fixture files, by file stem."""
    out: dict[str, list[str]] = {}
    for path in sorted((FIXTURES / "debezium").glob("*.jsonl")):
        out[path.stem] = [line for line in path.read_text().splitlines() if line.strip()]
    return out
