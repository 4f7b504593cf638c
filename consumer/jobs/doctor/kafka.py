"""Doctor's Kafka lines: the broker answers, the source topics and the dead-letter topic exist, the live
group's lag, and where a Kafka Connect worker runs the connector, that it and its tasks are RUNNING.

Topics are looked up in the broker's metadata for all topics, which never creates one (asking for a
named topic could, on a broker that auto-creates topics).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from consumer.entities.registry import source_topics
from consumer.jobs.doctor.checks import Check, fail, ok
from consumer.jobs.status import collect_lag
from consumer.service.wiring import ServiceUnavailable, check_broker
from consumer.settings import Settings

AREA = "kafka"


async def kafka_checks(settings: Settings) -> list[Check]:
    try:
        check_broker(settings)
    except ServiceUnavailable as exc:
        return [fail(AREA, "broker", str(exc))]
    try:
        existing = await asyncio.wait_for(_all_topics(settings.kafka_bootstrap_servers), 15)
    except (KafkaError, TimeoutError, OSError) as exc:
        return [
            fail(
                AREA, "broker", f"the broker accepts connections but answers no metadata ({exc!r}): check it."
            )
        ]
    checks = [ok(AREA, "broker", f"{settings.kafka_bootstrap_servers} answers ({len(existing)} topics)")]
    topics = source_topics(settings.topic_prefix)
    for topic in topics:
        if topic in existing:
            checks.append(ok(AREA, f"topic {topic}", "exists"))
        else:
            checks.append(
                fail(
                    AREA,
                    f"topic {topic}",
                    f"topic {topic} does not exist: start the relay or connector (it creates it on the first"
                    f" change), or check TOPIC_PREFIX ({settings.topic_prefix}).",
                )
            )
    if settings.dlq_topic in existing:
        checks.append(ok(AREA, f"dead-letter topic {settings.dlq_topic}", "exists"))
    else:
        checks.append(
            fail(
                AREA,
                f"dead-letter topic {settings.dlq_topic}",
                f"dead-letter topic {settings.dlq_topic} does not exist and dead letters would be lost if the"
                f" broker does not create topics: create it, or check DLQ_TOPIC.",
            )
        )
    present = tuple(t for t in topics if t in existing)
    if present:
        lag = await collect_lag(settings.kafka_bootstrap_servers, settings.consumer_group, present)
        total = sum(p.lag for p in lag)
        checks.append(ok(AREA, f"group {settings.consumer_group}", f"lag {total} over {len(lag)} partitions"))
    return checks


async def _all_topics(bootstrap: str) -> set[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return set(await consumer.topics())
    finally:
        await consumer.stop()


async def connect_checks(settings: Settings) -> list[Check]:
    """The connector on a Kafka Connect worker, when KAFKA_CONNECT_URL names one."""
    url, name = settings.kafka_connect_url.rstrip("/"), settings.kafka_connect_connector
    if not url:
        return []
    area = "connect"
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            reply = await http.get(f"{url}/connectors/{name}/status")
    except httpx.HTTPError as exc:
        return [
            fail(
                area,
                "worker",
                f"Kafka Connect at {url} does not answer ({type(exc).__name__}):"
                " start it or fix KAFKA_CONNECT_URL.",
            )
        ]
    if reply.status_code == 404:
        return [
            fail(
                area,
                f"connector {name}",
                f"connector {name} is not registered at {url}: PUT debezium/postgres-connector.json to"
                f" {url}/connectors/{name}/config, or set KAFKA_CONNECT_CONNECTOR.",
            )
        ]
    status: dict[str, Any] = reply.json() if reply.status_code == 200 else {}
    state = str((status.get("connector") or {}).get("state", f"HTTP {reply.status_code}"))
    tasks = [t for t in status.get("tasks") or [] if isinstance(t, dict)]
    broken = [t for t in tasks if t.get("state") != "RUNNING"]
    if state != "RUNNING" or not tasks or broken:
        why = next((str(t.get("trace", "")).strip().splitlines()[0] for t in broken if t.get("trace")), "")
        task_states = ", ".join(f"task {t.get('id')} {t.get('state')}" for t in tasks) or "no tasks"
        return [
            fail(
                area,
                f"connector {name}",
                f"connector {name} is {state} ({task_states}{'; ' + why if why else ''}): fix the cause, then"
                f" POST {url}/connectors/{name}/restart?includeTasks=true.",
            )
        ]
    return [ok(area, f"connector {name}", f"RUNNING, {len(tasks)} task(s) RUNNING")]
