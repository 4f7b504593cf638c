"""The facts an operator checks: outcomes, lag, DLQ depth, last errors, budget, unsynced rows.

`collect_status` is shared by `zoho-cdc status`, the HTML page and `/metrics` cross-checks, so
the three always agree with the sync log.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer

from consumer.model.outcomes import SyncOutcome
from consumer.pipeline.durability.organisations import live_organisation
from consumer.pipeline.durability.rows import OUTCOMES
from consumer.pipeline.intake.end_offsets import end_offsets as true_end_offsets
from consumer.pipeline.intake.end_offsets import topic_partitions
from consumer.service.members import live_members


@dataclass
class PartitionLag:
    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(self.end - self.committed, 0)


@dataclass
class Status:
    outcomes_last_hour: dict[str, int] = field(default_factory=dict)
    outcomes_last_day: dict[str, int] = field(default_factory=dict)
    outcomes_total: dict[str, int] = field(default_factory=dict)
    dead_lettered_total: int = 0
    dlq_depth: int | None = None
    last_errors: list[dict[str, Any]] = field(default_factory=list)
    recent: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)  # newest DLQ entries
    customers_unsynced: int = 0
    customers_failed: int = 0
    invoices_unsynced: int = 0
    invoices_failed: int = 0
    zoho_ahead_total: int = 0  # entities Zoho is ahead of now (entity map), listed in `zoho_ahead`
    zoho_ahead: list[dict[str, Any]] = field(default_factory=list)
    write_backs_refused: int = 0  # queued write-backs the source tables refused (see `write_back`)
    lag: list[PartitionLag] = field(default_factory=list)
    budget: dict[str, Any] = field(default_factory=dict)
    members: list[dict[str, Any]] = field(default_factory=list)  # the group's live instances
    replication_slot: dict[str, Any] = field(default_factory=dict)  # name, active (None: missing)
    health: dict[str, Any] = field(default_factory=dict)  # level, reasons, summary (status page)
    # The Zoho organisation whose ids the source holds (`zoho-cdc run` records it); None: none yet.
    live_organization: str | None = None

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.lag)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["lag"] = [dict(asdict(p), lag=p.lag) for p in self.lag]
        out["total_lag"] = self.total_lag
        return out


def _counts(conn: psycopg.Connection[Any], where: str, group: str) -> dict[str, int]:
    rows = conn.execute(
        f"SELECT outcome, count(*) FROM zoho_sync_log WHERE consumer_group = %s {where} GROUP BY outcome",  # noqa: S608
        (group,),
    ).fetchall()
    counts = {name: 0 for name in OUTCOMES}
    counts.update({outcome: int(n) for outcome, n in rows})
    return counts


def replication_slot_active(conn: psycopg.Connection[Any], slot_name: str) -> bool | None:
    """Whether Debezium's slot in this database is streaming now; None when there is no such slot."""
    row = conn.execute(
        "SELECT active FROM pg_replication_slots WHERE slot_name = %s AND database = current_database()",
        (slot_name,),
    ).fetchone()
    return None if row is None else bool(row[0])


def replication_slot_facts(conn: psycopg.Connection[Any], slot_name: str) -> dict[str, Any]:
    """Debezium's slot: whether it streams now, and how much WAL PostgreSQL keeps for it (bytes it
    cannot free while the slot lags or nothing reads it); `active` is None when there is no such slot."""
    row = conn.execute(
        "SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots"
        " WHERE slot_name = %s AND database = current_database()",
        (slot_name,),
    ).fetchone()
    if row is None:
        return {"name": slot_name, "active": None, "retained_wal_bytes": None}
    return {"name": slot_name, "active": bool(row[0]), "retained_wal_bytes": row[1]}


def collect_database_status(
    database_url: str, group: str, *, recent: int = 20, slot_name: str | None = None
) -> Status:
    status = Status()
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        if slot_name is not None:
            status.replication_slot = replication_slot_facts(conn, slot_name)
        status.outcomes_last_hour = _counts(conn, "AND created_at > now() - interval '1 hour'", group)
        status.outcomes_last_day = _counts(conn, "AND created_at > now() - interval '1 day'", group)
        status.outcomes_total = _counts(conn, "", group)
        status.dead_lettered_total = status.outcomes_total.get(SyncOutcome.DEAD_LETTERED, 0)
        cols = (
            "created_at",
            "topic",
            "kafka_partition",
            "kafka_offset",
            "entity_type",
            "entity_id",
            "outcome",
            "operation",
            "zoho_id",
            "attempts",
            "error",
        )
        for target, where in (
            (status.last_errors, f"AND outcome IN ('{SyncOutcome.DEAD_LETTERED}', '{SyncOutcome.FAILED}')"),
            (status.recent, ""),
        ):
            rows = conn.execute(
                f"SELECT {', '.join(cols)} FROM zoho_sync_log WHERE consumer_group = %s {where}"  # noqa: S608
                " ORDER BY id DESC LIMIT %s",
                (group, recent),
            ).fetchall()
            target.extend(
                {c: (v.isoformat() if hasattr(v, "isoformat") else v) for c, v in zip(cols, r, strict=True)}
                for r in rows
            )
        status.members = live_members(conn, group)
        if conn.execute("SELECT to_regclass('zoho_live_organization')").fetchone()[0] is not None:  # type: ignore[index]
            status.live_organization = live_organisation(conn)
        one = conn.execute(
            "SELECT"
            " (SELECT count(*) FROM customers WHERE account_type <> 'internal_test'"
            "   AND zoho_billing_customer_id IS NULL),"
            " (SELECT count(*) FROM customers WHERE zoho_sync_status = 'failed'),"
            " (SELECT count(*) FROM customer_invoices i JOIN customers c ON c.id = i.customer_id"
            "   WHERE c.account_type <> 'internal_test' AND i.zoho_billing_invoice_id IS NULL"
            # void before it was ever created: never sent by design (`skipped`), so never missing
            "   AND i.status IS DISTINCT FROM 'void'),"
            " (SELECT count(*) FROM customer_invoices WHERE zoho_sync_status = 'failed'),"
            " (SELECT count(*) FROM zoho_pending_write_back WHERE refused IS NOT NULL)"
        ).fetchone()
        assert one is not None
        (
            status.customers_unsynced,
            status.customers_failed,
            status.invoices_unsynced,
            status.invoices_failed,
            status.write_backs_refused,
        ) = (int(x) for x in one)
        status.zoho_ahead_total, status.zoho_ahead = zoho_ahead_entities(
            conn, status.live_organization, limit=recent
        )
    return status


def zoho_ahead_entities(
    conn: psycopg.Connection[Any], organization_id: str | None, *, limit: int = 20
) -> tuple[int, list[dict[str, Any]]]:
    """How many entities Zoho is ahead of in the organisation (every one when None: no live sync recorded)
    by their entity map, and the newest `limit` of them: what an operator settles by making the source
    agree with Zoho."""
    rows = conn.execute(
        "SELECT entity_type, entity_id, zoho_id, zoho_ahead, updated_at, count(*) OVER ()"
        " FROM zoho_entity_map WHERE zoho_ahead IS NOT NULL AND (%s::text IS NULL OR organization_id = %s)"
        " ORDER BY updated_at DESC LIMIT %s",
        (organization_id, organization_id, limit),
    ).fetchall()
    listed = [
        {
            "entity_type": r[0],
            "entity_id": r[1],
            "zoho_id": r[2],
            "zoho_status": r[3],
            "since": r[4].isoformat(),
        }
        for r in rows
    ]
    return (int(rows[0][5]) if rows else 0), listed


def zoho_ahead_by_entity(conn: psycopg.Connection[Any], organization_id: str) -> dict[str, int]:
    """Entities Zoho is ahead of in the organisation, by entity type (the `zoho_cdc_zoho_ahead_entities`
    gauge)."""
    rows = conn.execute(
        "SELECT entity_type, count(*) FROM zoho_entity_map WHERE zoho_ahead IS NOT NULL"
        " AND organization_id = %s GROUP BY entity_type",
        (organization_id,),
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


async def collect_lag(bootstrap_servers: str, group: str, topics: tuple[str, ...]) -> list[PartitionLag]:
    """Committed offset versus end offset for every partition of the group's topics."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, topics)
        ends = await true_end_offsets(bootstrap_servers, partitions)
        out = []
        for tp in partitions:
            committed = await consumer.committed(tp)
            out.append(PartitionLag(tp.topic, tp.partition, committed or 0, ends.get(tp, 0)))
        return out
    finally:
        await consumer.stop()


async def dlq_depth(bootstrap_servers: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await topic_partitions(consumer, [topic])
        if not parts:
            return 0
        begins = await consumer.beginning_offsets(parts)
        ends = await true_end_offsets(bootstrap_servers, parts)
        return sum(ends[tp] - begins[tp] for tp in parts)
    finally:
        await consumer.stop()
