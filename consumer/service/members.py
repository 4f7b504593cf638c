"""Who is in the consumer group and which partitions each member holds, kept in PostgreSQL.

Every `zoho-cdc run` reports its assignment every few seconds (and drops its row on a clean stop);
a member not seen for `LIVE_SECONDS` (a killed process) is no longer shown. The broker's own view
(DescribeGroups) is not used because the local Tansu broker returns members without assignments.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
import structlog
from aiokafka import TopicPartition

log = structlog.get_logger(__name__)

REPORT_SECONDS = 2.0
LIVE_SECONDS = 15


def instance_name(group_instance_id: str) -> str:
    return group_instance_id or f"{socket.gethostname()}:{os.getpid()}"


async def report_membership(
    database_url: str, group: str, instance: str, assignment: Callable[[], Iterable[TopicPartition]]
) -> None:
    """Upsert this member's row every REPORT_SECONDS until cancelled; then delete it."""
    conn: psycopg.AsyncConnection[Any] | None = None
    try:
        while True:
            try:
                if conn is None or conn.closed:
                    conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
                parts = sorted(f"{tp.topic}/{tp.partition}" for tp in assignment())
                await conn.execute(
                    "INSERT INTO zoho_cdc_group_member (consumer_group, instance, host, pid, partitions)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (consumer_group, instance) DO UPDATE SET"
                    " host = EXCLUDED.host, pid = EXCLUDED.pid, partitions = EXCLUDED.partitions,"
                    " seen_at = now()",
                    (group, instance, socket.gethostname(), os.getpid(), parts),
                )
            except psycopg.Error as exc:
                log.warning("membership report failed", error=str(exc).splitlines()[0] if str(exc) else "")
                conn = None
            await asyncio.sleep(REPORT_SECONDS)
    finally:
        if conn is not None and not conn.closed:
            try:
                await conn.execute(
                    "DELETE FROM zoho_cdc_group_member"
                    " WHERE consumer_group = %s AND instance = %s AND pid = %s",
                    (group, instance, os.getpid()),
                )
            finally:
                await conn.close()


def live_members(conn: psycopg.Connection[Any], group: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT instance, host, pid, partitions, started_at, seen_at FROM zoho_cdc_group_member"
        " WHERE consumer_group = %s AND seen_at > now() - make_interval(secs => %s) ORDER BY instance",
        (group, LIVE_SECONDS),
    ).fetchall()
    return [
        {
            "instance": i,
            "host": h,
            "pid": p,
            "partitions": list(parts),
            "started_at": s.isoformat(),
            "seen_at": seen.isoformat(),
        }
        for i, h, p, parts, s, seen in rows
    ]
