"""`run_relay`: check, start, supervise and stop the embedded Debezium relay.

Order matters: configuration and wal_level are checked before the JVM starts (seconds saved and a
clear sentence instead of a Java stack trace), then the broker, then the engine. SIGTERM/SIGINT ask
Debezium to stop, which commits the offsets of every acknowledged batch; the producer is flushed
last. Any failure ends as one `RelayError` whose message says what to do.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import structlog

from consumer.relay.engine import RelayEngine, jvm_options, write_log4j_config
from consumer.relay.errors import EngineFailed, RelayError, StaleOffsetsError
from consumer.relay.offsets import discard_stale_offsets_file
from consumer.relay.preflight import check_broker, check_wal_level, observe_wal_level
from consumer.relay.properties import database_parts, offsets_topic, relay_properties
from consumer.relay.publisher import KafkaPublisher
from consumer.settings import Settings, mask_url_password

log = structlog.get_logger(__name__)

# Phrases Debezium uses when stored offsets and the replication slot disagree (slot or database
# recreated, WAL removed): restarting would fail the same way, so we stop and say what to do.
_STALE_SLOT_HINTS = ("slot", "lsn", "offset")
_STALE_SLOT_WORDS = ("ahead", "no longer available", "recreat", "does not exist", "removed", "mismatch")


def stale_offsets_message(settings: Settings, reason: str) -> str:
    return (
        "The stored relay offsets point at a WAL position the replication slot "
        f"'{settings.debezium_slot_name}' no longer has (database or slot recreated): run "
        "'zoho-cdc relay --reset-offsets' (the relay then snapshots both tables again) "
        "and start the relay again. "
        f"Debezium said: {reason}"
    )


def classify_failure(settings: Settings, reason: str) -> RelayError:
    """Turn Debezium's stop reason into the error the operator sees."""
    lowered = reason.lower()
    if any(h in lowered for h in _STALE_SLOT_HINTS) and any(w in lowered for w in _STALE_SLOT_WORDS):
        return StaleOffsetsError(stale_offsets_message(settings, reason))
    return EngineFailed(f"Debezium stopped: {reason}")


def preflight(settings: Settings) -> dict[str, str]:
    """All checks that need no JVM; returns the engine properties."""
    properties = relay_properties(settings)
    check_wal_level(observe_wal_level(settings.database_url))
    check_broker(settings.kafka_bootstrap_servers)
    return properties


def run_relay(settings: Settings, stop: threading.Event | None = None, install_signals: bool = True) -> None:
    """Run until `stop` is set or SIGTERM/SIGINT arrives; raise RelayError on failure."""
    stop = stop or threading.Event()
    properties = preflight(settings)
    db = database_parts(settings.database_url)
    log.info(
        "relay.starting",
        database=mask_url_password(settings.database_url),
        kafka=settings.kafka_bootstrap_servers,
        topic_prefix=settings.topic_prefix,
        slot=settings.debezium_slot_name,
        offsets=(
            offsets_topic(settings.topic_prefix)
            if settings.relay_offset_storage == "kafka"
            else properties["offset.storage.file.filename"]
        ),
        dbname=db.dbname,
    )
    if settings.relay_offset_storage == "file":
        discard_stale_offsets_file(settings)

    if install_signals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(
                signum, lambda s, _f: (log.info("relay.stopping", signal=signal.Signals(s).name), stop.set())
            )

    publisher = KafkaPublisher(settings.kafka_bootstrap_servers, timeout_ms=settings.relay_publish_timeout_ms)
    publisher.start()
    log4j = write_log4j_config(Path(settings.state_dir), settings.relay_java_log_level)
    engine = RelayEngine(properties, publisher, jvm_options(settings.relay_jvm_max_heap, log4j))
    try:
        engine.start()
        log.info("relay.engine_started")
        while not stop.is_set() and not engine.wait(0.5):
            pass
    finally:
        engine.close()
        publisher.close()
    reason = engine.failure()
    log.info(
        "relay.stopped",
        batches=engine.stats.batches,
        records=engine.stats.records,
        tombstones=engine.stats.tombstones,
        error=reason,
    )
    if reason is not None and stop.is_set():
        # Asked to stop while Debezium was busy (typically mid-snapshot): its task reports the interrupt
        # as a failure. Only acknowledged batches have stored offsets, so the next start picks up there.
        log.warning("relay.interrupted_by_stop", reason=reason)
    elif reason is not None:
        raise classify_failure(settings, reason)
    if not stop.is_set():
        raise EngineFailed(f"Debezium stopped on its own: {engine.outcome.message or 'no reason given'}")
