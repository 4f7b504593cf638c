"""Debezium connector properties, derived from the one source of truth in `debezium/connector.base.json`.

Pure functions: the embedded relay and the Kafka Connect deployment both start from the same base
properties and only add where they run (connection, topic prefix, slot, offset storage), so the two
can never drift apart (`tests/test_compose.py` checks the generated Connect file).

`python -m consumer.relay.properties` prints the Kafka Connect config for `docker-compose.yml`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from consumer.relay.errors import RelayConfigError
from consumer.settings import Settings

DEBEZIUM_DIR = Path(__file__).resolve().parents[2] / "debezium"
BASE_FILE = DEBEZIUM_DIR / "connector.base.json"
CONNECT_FILE = DEBEZIUM_DIR / "postgres-connector.json"

# The embedded engine's name is part of every stored offset key; it never changes.
RELAY_ENGINE_NAME = "zoho-cdc-relay"
KAFKA_OFFSET_STORE = "org.apache.kafka.connect.storage.KafkaOffsetBackingStore"
FILE_OFFSET_STORE = "org.apache.kafka.connect.storage.FileOffsetBackingStore"

# Kafka Connect deployment (docker-compose.yml): the Connect worker resolves ${env:...} through
# its EnvVarConfigProvider, so no password is written into the connector file.
CONNECT_CONNECTOR_NAME = "zoho-cdc-postgres"
CONNECT_DEFAULTS = {
    "database.hostname": "postgres",
    "database.port": "5432",
    "database.user": "${env:POSTGRES_USER}",
    "database.password": "${env:POSTGRES_PASSWORD}",
    "database.dbname": "${env:POSTGRES_DB}",
    "topic.prefix": "billing",
    "slot.name": "zoho_cdc",
    "publication.name": "zoho_cdc",
}


@dataclass(frozen=True)
class DatabaseParts:
    """The pieces of DATABASE_URL that Debezium wants as separate properties."""

    hostname: str
    port: int
    user: str
    password: str
    dbname: str

    def __repr__(self) -> str:  # never show the password
        return f"DatabaseParts({self.user}@{self.hostname}:{self.port}/{self.dbname})"


def base_properties(path: Path = BASE_FILE) -> dict[str, str]:
    """The shared Debezium properties, as strings (Java Properties only hold strings)."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise RelayConfigError(f"The Debezium base configuration {path} is missing.") from None
    return {str(k): str(v) for k, v in raw.items()}


def database_parts(database_url: str) -> DatabaseParts:
    """Split DATABASE_URL into Debezium's connection properties."""
    parts = urlsplit(database_url)
    try:
        port = parts.port or 5432
    except ValueError:
        raise RelayConfigError("DATABASE_URL has a port that is not a number.") from None
    dbname = unquote(parts.path.lstrip("/"))
    if parts.scheme not in ("postgresql", "postgres") or not dbname:
        raise RelayConfigError("DATABASE_URL must look like postgresql://user:password@host:5432/dbname.")
    return DatabaseParts(
        hostname=parts.hostname or "127.0.0.1",
        port=port,
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        dbname=dbname,
    )


def offsets_topic(topic_prefix: str) -> str:
    return f"{topic_prefix}.relay-offsets"


def offsets_file(settings: Settings) -> Path:
    return Path(settings.state_dir) / f"relay-offsets-{settings.topic_prefix}.dat"


def relay_properties(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """Everything the embedded engine needs: base + connection + offsets, for this settings object."""
    db = database_parts(settings.database_url)
    props = dict(base if base is not None else base_properties())
    props.update(
        {
            "name": RELAY_ENGINE_NAME,
            "database.hostname": db.hostname,
            "database.port": str(db.port),
            "database.user": db.user,
            "database.password": db.password,
            "database.dbname": db.dbname,
            "topic.prefix": settings.topic_prefix,
            "slot.name": settings.debezium_slot_name,
            "publication.name": settings.debezium_publication_name,
            # The embedded engine reads its converter settings under "converter."; keep the
            # Connect-style key./value. entries too so both readings give the same shape.
            "converter.schemas.enable": props["value.converter.schemas.enable"],
            "offset.flush.interval.ms": str(settings.relay_offset_flush_interval_ms),
            "offset.flush.timeout.ms": "10000",
        }
    )
    if settings.relay_heartbeat_interval_ms:
        props["heartbeat.interval.ms"] = str(settings.relay_heartbeat_interval_ms)
    if settings.relay_offset_storage == "kafka":
        props.update(
            {
                "offset.storage": KAFKA_OFFSET_STORE,
                "offset.storage.topic": offsets_topic(settings.topic_prefix),
                "offset.storage.partitions": "1",
                "offset.storage.replication.factor": "1",
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                # Tansu has no idempotent producer (InitProducerId); the offset store's own producer
                # reads these top-level client settings.
                "enable.idempotence": "false",
            }
        )
    else:
        props.update(
            {
                "offset.storage": FILE_OFFSET_STORE,
                "offset.storage.file.filename": str(offsets_file(settings).resolve()),
            }
        )
    return props


def connect_connector_config(base: dict[str, str] | None = None) -> dict[str, str]:
    """The Kafka Connect connector config (PUT /connectors/<name>/config body) for docker-compose."""
    config = {"name": CONNECT_CONNECTOR_NAME}
    config.update(base if base is not None else base_properties())
    config.update(CONNECT_DEFAULTS)
    return config


def main() -> int:
    json.dump(connect_connector_config(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
