"""The run's Kafka consumer in its group: static membership when configured, and the one way out of it.

With KAFKA_GROUP_INSTANCE_ID a live sync joins as a static member: a restart within the session timeout
gets its partitions straight back. The local Tansu broker can leave such a member rejoining for ever, so
one not joined after `RunOptions.static_join_timeout` rejoins once as a dynamic one. Replays are never static.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer

from connectors import clock
from consumer.pipeline.intake.kafka_clients import kafka_consumer
from consumer.pipeline.intake.runner import RunOptions, SyncRunner
from consumer.settings import Settings

log = structlog.get_logger(__name__)


class GroupJoin:
    """Makes the run's consumer, replaces it once if a static join goes unanswered, and stops it.

    On Tansu a restarted static member can keep rejoining with no assignment while the others keep their
    partitions and its own have no owner; the dynamic member that replaces it makes the group rebalance."""

    def __init__(self, settings: Settings, options: RunOptions, *, static: bool) -> None:
        self._options = options  # read at each check: the join timeout may be changed while running
        self._membership: dict[str, Any] = {
            "session_timeout_ms": settings.kafka_session_timeout_ms,
            "heartbeat_interval_ms": settings.kafka_heartbeat_interval_ms,
        }
        self._instance_id = settings.kafka_group_instance_id if static else ""
        self._current: AIOKafkaConsumer | None = None

    async def join(self) -> AIOKafkaConsumer:
        """Start the run's consumer, static when configured."""
        instance = {"group_instance_id": self._instance_id} if self._instance_id else {}
        self._current = self._consumer(**instance)
        await self._current.start()
        return self._current

    async def keep_joined(self, runner: SyncRunner) -> None:
        """Rejoin as a dynamic member when a static member's join has gone unanswered too long."""
        if not self._instance_id or runner.joined:
            return
        waited = clock.monotonic() - runner.started
        if waited <= self._options.static_join_timeout:
            return
        log.warning(
            "no assignment since joining as a static member; rejoining as a dynamic member",
            waited_s=round(waited, 1),
        )
        self._instance_id = ""  # once only
        assert self._current is not None
        await self._current.stop()
        self._current = self._consumer()
        await self._current.start()
        await runner.rejoined(self._current)

    async def leave(self) -> None:
        if self._current is not None:
            await self._current.stop()

    def _consumer(self, **instance: str) -> AIOKafkaConsumer:
        options = self._options
        return kafka_consumer(options.bootstrap_servers, options.group_id, **self._membership, **instance)
