"""Group membership as the status page shows it: each instance's partitions, gone on a clean stop."""

from __future__ import annotations

import asyncio

import psycopg
from aiokafka import TopicPartition

from consumer.metrics import Metrics
from consumer.migrations import migrate
from consumer.service.members import live_members, report_membership


async def test_each_instance_reports_its_partitions_and_leaves_on_a_clean_stop(database_url):
    migrate(database_url)
    mine = [TopicPartition("billing.public.customers", 2), TopicPartition("billing.public.customers", 0)]
    tasks = [
        asyncio.create_task(report_membership(database_url, "g", "zoho-cdc-0", lambda: mine)),
        asyncio.create_task(report_membership(database_url, "g", "zoho-cdc-1", lambda: ())),
    ]
    try:
        for _ in range(50):
            with psycopg.connect(database_url) as conn:
                members = live_members(conn, "g")
            if len(members) == 2:
                break
            await asyncio.sleep(0.1)
        assert [m["instance"] for m in members] == ["zoho-cdc-0", "zoho-cdc-1"]
        assert members[0]["partitions"] == ["billing.public.customers/0", "billing.public.customers/2"]
        metrics = Metrics()
        metrics.group_and_window(
            members, {"org_calls_this_window": 7, "org_rate_per_window": 60, "org_members": []}
        )
        text = metrics.exposition().decode()
        assert "zoho_cdc_group_members 2.0" in text
        assert 'zoho_cdc_group_member_partitions{instance="zoho-cdc-0"} 2.0' in text
        assert "zoho_cdc_zoho_org_window_calls 7.0" in text
    finally:
        tasks[0].cancel()
        await asyncio.gather(tasks[0], return_exceptions=True)
    with psycopg.connect(database_url) as conn:
        assert [m["instance"] for m in live_members(conn, "g")] == ["zoho-cdc-1"]
    tasks[1].cancel()
    await asyncio.gather(tasks[1], return_exceptions=True)
