"""Which Zoho organisation a sync works in, and whether its outcomes are written back to the source.

The entity map, create intents, item map and replay memos are per organisation (`ZOHO_ORGANIZATION_ID`);
the source's one set of id columns holds the live sync's (`zoho_live_organization`). A sync in another
organisation keeps its ids in its map rows and writes nothing back: two never overwrite a row in turn.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
import structlog

from consumer.entities.registry import specs
from consumer.pipeline.effects.write_back import QUEUE_SQL

log = structlog.get_logger(__name__)

#: The organisation of rows written before zoho-cdc kept them per organisation (migration 0009).
UNCLAIMED = ""

_TABLES = ("zoho_entity_map", "zoho_sync_intent", "zoho_item_map")
_LOCK_ID = 0x20C0DD  # advisory lock: two starting processes settle one after the other


class OrganisationUnsettled(Exception):
    """The organisation of the remembered rows is not known yet; the message says what to run."""


@dataclass(frozen=True, slots=True)
class Organisation:
    """The organisation a sync works in."""

    organization_id: str
    live: bool  # the live sync's organisation: its outcomes are written back to the source
    followed: int = 0  # source rows whose id was queued to follow this organisation's map (a move)


def live_organisation(conn: psycopg.Connection) -> str | None:
    row = conn.execute("SELECT organization_id FROM zoho_live_organization").fetchone()
    return None if row is None else str(row[0])


def settle(database_url: str, organization_id: str, *, live_sync: bool) -> Organisation:
    """At a sync session's start, record or read the live organisation; say if `organization_id` writes back.

    `zoho-cdc run` records its organisation as the live one and claims rows from before organisations were
    kept (migration 0009: organisation ''); if another was live, the source's id columns follow the new
    one's map (`follow_map`). Any other command is live if its organisation is the recorded one, or none is
    recorded yet on a new install (the first backfill is the initial load). With unclaimed rows and none
    recorded (an upgrade not yet followed by `zoho-cdc run`) it raises `OrganisationUnsettled`: only the
    live sync knows whose those rows are, and guessing would attach one organisation's ids to another."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            with conn.transaction():
                return _settle(conn, organization_id, live_sync)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))


def _settle(conn: psycopg.Connection, organization_id: str, live_sync: bool) -> Organisation:
    recorded = live_organisation(conn)
    if recorded == organization_id:
        return Organisation(organization_id, live=True)
    if not live_sync:
        if recorded is not None:
            return Organisation(organization_id, live=False)
        if _unclaimed(conn) and organization_id != UNCLAIMED:
            raise OrganisationUnsettled(
                "zoho-cdc's entity map holds rows from before it kept one per Zoho organisation; start"
                " `zoho-cdc run` once with ZOHO_ORGANIZATION_ID set to the organisation your live sync"
                " used (it claims them), then run this command again."
            )
    _record_live(conn, organization_id)
    if recorded is None:
        claimed = _claim_unclaimed(conn, organization_id)
        if claimed:
            log.info(
                "rows from before organisations were kept claimed", organization=organization_id, **claimed
            )
        return Organisation(organization_id, live=True)
    followed = follow_map(conn, organization_id)
    log.warning(
        "the live sync moved to another Zoho organisation",
        from_organization=recorded,
        to_organization=organization_id,
        source_ids_following=followed,
    )
    return Organisation(organization_id, live=True, followed=followed)


def _unclaimed(conn: psycopg.Connection) -> bool:
    return any(
        conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM {t} WHERE organization_id = %s)", (UNCLAIMED,)
        ).fetchone()[0]  # noqa: S608
        for t in _TABLES
    )


def _claim_unclaimed(conn: psycopg.Connection, organization_id: str) -> dict[str, int]:
    claimed = {}
    for table in _TABLES:
        cur = conn.execute(
            f"UPDATE {table} SET organization_id = %s WHERE organization_id = %s",  # noqa: S608
            (organization_id, UNCLAIMED),
        )
        if cur.rowcount:
            claimed[table] = cur.rowcount
    return claimed


def _record_live(conn: psycopg.Connection, organization_id: str) -> None:
    conn.execute(
        "INSERT INTO zoho_live_organization (organization_id) VALUES (%s)"
        " ON CONFLICT (one) DO UPDATE SET organization_id = EXCLUDED.organization_id, recorded_at = now()",
        (organization_id,),
    )


def follow_map(conn: psycopg.Connection, organization_id: str) -> int:
    """Queue a write-back for every source row whose id column differs from what the organisation's
    map holds for it (the live sync moved there), logging each change; returns how many.

    Queued, not written here: the write-back queue applies them with its lock timeout, so a source
    row an application transaction holds delays only itself. Rows the map does not know keep their id
    (the live sync then meets them as records it does not know in this organisation)."""
    followed = 0
    for spec in specs():
        table, column = spec.entity.table, spec.write_back_id_column
        rows = conn.execute(
            f"SELECT t.id::text, t.{column}, m.zoho_id FROM {table} t"  # noqa: S608
            " JOIN zoho_entity_map m ON m.entity_id = t.id::text"
            " WHERE m.organization_id = %s AND m.entity_type = %s AND m.zoho_id IS NOT NULL"
            f" AND t.{column} IS DISTINCT FROM m.zoho_id",
            (organization_id, spec.entity.value),
        ).fetchall()
        for entity_id, before, after in rows:
            log.info(
                "source id follows the live organisation",
                entity_type=spec.entity.value,
                entity_id=entity_id,
                organization=organization_id,
                zoho_id_before=before,
                zoho_id=after,
            )
        with conn.cursor() as cur:
            cur.executemany(
                QUEUE_SQL,
                [(spec.entity.value, entity_id, after, "synced", False) for entity_id, _, after in rows],
            )
        followed += len(rows)
    return followed
