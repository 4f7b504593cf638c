"""The sync log, the entity map and create intents in PostgreSQL.

`record()` writes an event's outcome rows, the entity-map update, the intent removal and the write-back
for the source row in ONE transaction: when it returns, the outcome is durable and the offset may be
committed; when it raises, nothing of it happened.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson
import psycopg
import structlog
from psycopg.types.json import set_json_dumps
from psycopg_pool import AsyncConnectionPool

from consumer.model.events import EntityType
from consumer.model.outcomes import SyncOutcome
from consumer.model.plan import EntityState
from consumer.pipeline.adoption.claims import AdoptionClaims
from consumer.pipeline.decision.row_images import recalled
from consumer.pipeline.durability.gathered import Gathered, GatheredWrites, Waiter
from consumer.pipeline.durability.group_writes import GroupCommit, GroupItem
from consumer.pipeline.durability.leases import WriteLeases
from consumer.pipeline.durability.rows import EntityUpdate, Intent, OutcomeRow
from consumer.pipeline.durability.source_reads import SourceReader
from consumer.pipeline.durability.waiting_children import WaitingChildren
from consumer.pipeline.effects.write_back import WriteBack, WriteBackQueue

log = structlog.get_logger(__name__)


class SyncStore:
    """Async access to zoho-cdc's tables and the source tables it reads and writes back.

    A store works in one Zoho organisation (`organization_id`): every read and write of the entity map,
    the intents and the item map is that organisation's. Only the live sync's organisation writes back
    to the source (`writes_back`, `consumer.pipeline.durability.organisations`)."""

    def __init__(
        self, database_url: str, *, max_size: int = 10, organization_id: str = "", writes_back: bool = True
    ) -> None:
        self.organization_id = organization_id
        # True only in the live sync's organisation: the source's id columns hold its ids (an id read
        # there is this organisation's) and outcomes are written back; another organisation's sync
        # never touches the source rows.
        self.writes_back = writes_back
        # Autocommit: a read or a one-statement write is one round trip, not BEGIN, statement, COMMIT;
        # writes of several statements open their transaction explicitly (`conn.transaction()`).
        self._pool = AsyncConnectionPool(
            database_url,
            min_size=1,
            max_size=max_size,
            open=False,
            timeout=10,
            kwargs={"autocommit": True},
            configure=_configure,
        )
        self.source = SourceReader(self._pool)
        self.write_backs = WriteBackQueue(self._pool)
        self.claims = AdoptionClaims(self._pool, organization_id)
        self.leases = WriteLeases(self._pool, organization_id)
        self._waiting_children = WaitingChildren(self._pool, organization_id)
        self._map_rows: Gathered[str, EntityState] = Gathered(self._read_map_rows)
        # No gathering pause for intents: one is written while its call holds one of Zoho's few
        # concurrent permits, so its wait would idle the permit (measured: a third of a backfill's time).
        self._intents: GatheredWrites[tuple[str, str, str, str]] = GatheredWrites(self._write_intents)
        self._groups = GroupCommit(self._pool, organization_id, self.write_backs)

    async def open(self) -> None:
        await self._pool.open(wait=True, timeout=15)

    async def close(self) -> None:
        await self.write_backs.close()
        try:
            await self.write_backs.apply_pending()  # what is left stays queued for the next start
        except Exception as exc:  # noqa: BLE001 - closing must not fail on it
            log.warning("write-backs left queued at close", error=str(exc))
        await self._pool.close()

    async def __aenter__(self) -> SyncStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def ping(self) -> bool:
        async with self._pool.connection() as conn:
            await conn.execute("SELECT 1")
        return True

    # --- reads --------------------------------------------------------------------------
    async def entity_state(self, entity_type: EntityType, entity_id: str) -> EntityState | None:
        """The entity map row of one entity. Requests made in the same event-loop tick by many workers
        are answered by one query, so a backlog costs one round trip per batch, not per event."""
        return await self._map_rows.ask(_STATE_SQL, (entity_type.value, entity_id))

    async def entity_states(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], EntityState]:
        """The entity map rows of many (entity type, id) keys in one query, without the remembered source
        image (`source_row` None: a batch check never fills an image); keys without a row are left out."""
        return await self._read_map_rows(_STATES_SQL, keys)

    async def _read_map_rows(
        self, sql: str, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], EntityState]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql, ([k[0] for k in keys], [k[1] for k in keys], self.organization_id))
            return {(r[0], r[1]): _entity_state(r) for r in await cur.fetchall()}

    async def intent(self, entity_type: EntityType, entity_id: str) -> Intent | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT operation, natural_key, created_at FROM zoho_sync_intent"
                " WHERE organization_id = %s AND entity_type = %s AND entity_id = %s",
                (self.organization_id, entity_type.value, entity_id),
            )
            row = await cur.fetchone()
        return Intent(operation=row[0], natural_key=row[1], written_at=row[2]) if row else None

    async def source_row(self, entity_type: EntityType, entity_id: str) -> dict[str, Any] | None:
        return await self.source.row(entity_type, entity_id)

    async def first_child_value(
        self, child: EntityType, parent_column: str, value_column: str, parent_id: str
    ) -> str | None:
        return await self.source.first_child_value(child, parent_column, value_column, parent_id)

    async def has_outcome(self, consumer_group: str, topic: str, partition: int, offset: int) -> bool:
        """True if this record already has its sync-log row (it is a redelivery after a crash)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM zoho_sync_log"
                " WHERE consumer_group = %s AND topic = %s AND kafka_partition = %s"
                " AND kafka_offset = %s",
                (consumer_group, topic, partition, offset),
            )
            return await cur.fetchone() is not None

    async def logged_positions(self, consumer_group: str, topic: str) -> set[tuple[int, int]]:
        """The (partition, offset) of every record of `topic` the group has a sync-log row for."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT kafka_partition, kafka_offset FROM zoho_sync_log"
                " WHERE consumer_group = %s AND topic = %s",
                (consumer_group, topic),
            )
            return {(int(p), int(o)) for p, o in await cur.fetchall()}

    async def dead_lettered_by(self, topic: str, partition: int, offset: int) -> str | None:
        """The consumer group that dead-lettered this record, in any run; None when none did."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT consumer_group FROM zoho_sync_log WHERE topic = %s AND kafka_partition = %s"
                " AND kafka_offset = %s AND outcome = %s ORDER BY id LIMIT 1",
                (topic, partition, offset, SyncOutcome.DEAD_LETTERED),
            )
            row = await cur.fetchone()
            return None if row is None else str(row[0])

    async def await_parent(
        self, entity_type: EntityType, entity_id: str, parent_type: EntityType, parent_id: str
    ) -> None:
        """Remember a child refused because Zoho refused its parent (`follow_ups`)."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO zoho_waiting_for_parent"
                " (organization_id, entity_type, entity_id, parent_type, parent_id)"
                " VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (organization_id, entity_type, entity_id) DO UPDATE SET"
                " parent_type = EXCLUDED.parent_type, parent_id = EXCLUDED.parent_id, since = now()",
                (self.organization_id, entity_type.value, entity_id, parent_type.value, parent_id),
            )

    async def take_waiting(self, parent_type: EntityType, parent_id: str) -> list[tuple[EntityType, str]]:
        """The children waiting for this parent, forgotten as they are handed out (one statement for the
        parents asked within a gathering pause)."""
        return await self._waiting_children.take(parent_type, parent_id)

    async def next_follow_up(self) -> int:
        async with self._pool.connection() as conn:
            row = await (await conn.execute("SELECT nextval('zoho_follow_up_seq')")).fetchone()
            assert row is not None
            return int(row[0])

    async def item_id(self, kind: str, key: str) -> str | None:
        """The Zoho item remembered for an invoice-line code (or the default item), if any."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT zoho_item_id FROM zoho_item_map"
                " WHERE organization_id = %s AND kind = %s AND key = %s",
                (self.organization_id, kind, key),
            )
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def remember_item(self, kind: str, key: str, zoho_item_id: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO zoho_item_map (organization_id, kind, key, zoho_item_id)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (organization_id, kind, key)"
                " DO UPDATE SET zoho_item_id = EXCLUDED.zoho_item_id",
                (self.organization_id, kind, key, zoho_item_id),
            )

    async def forget_item(self, kind: str, key: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "DELETE FROM zoho_item_map WHERE organization_id = %s AND kind = %s AND key = %s",
                (self.organization_id, kind, key),
            )

    # --- writes -------------------------------------------------------------------------
    async def write_intent(
        self, entity_type: EntityType, entity_id: str, operation: str, natural_key: str
    ) -> None:
        """Durably note a create (or payment) about to be sent; returns once committed. The intents of
        concurrent workers are written together, in one round trip."""
        await self._intents.write((entity_type.value, entity_id, operation, natural_key))

    async def _write_intents(self, batch: list[Waiter[tuple[str, str, str, str]]]) -> None:
        rows = {(w.item[0], w.item[1]): w.item for w in batch}  # one per entity: ON CONFLICT cannot repeat
        async with self._pool.connection() as conn:  # one statement for the batch: atomic, one trip
            await conn.execute(
                "INSERT INTO zoho_sync_intent"
                " (organization_id, entity_type, entity_id, operation, natural_key)"
                " SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])"
                " ON CONFLICT (organization_id, entity_type, entity_id)"
                " DO UPDATE SET operation = EXCLUDED.operation, natural_key = EXCLUDED.natural_key",
                [self.organization_id, *(list(column) for column in zip(*rows.values(), strict=True))],
            )

    async def claim_create(
        self,
        entity_type: EntityType,
        entity_id: str,
        natural_key: str,
        *,
        zoho_id: str | None,
        taking_over: Intent | None,
    ) -> Intent | None:
        """Write the intent of a create about to be sent, only while the create is still this caller's to
        send: the map still shows the Zoho id it was planned from (`zoho_id`), and no intent was written
        since its lookup (none, or still `taking_over`: the one it resolved, or the caller's own, renewed).
        The intent written; None, with nothing written, when another process created the record or has its
        create under way: one statement, so of two processes creating one entity only one sends."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                _CLAIM_CREATE_SQL,
                {
                    "org": self.organization_id,
                    "type": entity_type.value,
                    "id": entity_id,
                    "key": natural_key,
                    "zoho_id": zoho_id,
                    "seen": taking_over.written_at if taking_over else None,
                },
            )
            row = await cur.fetchone()
            return None if row is None else Intent("create", natural_key, written_at=row[0])

    async def record(
        self,
        outcomes: Sequence[OutcomeRow],
        *,
        entity: EntityUpdate | None = None,
        write_back: WriteBack | None = None,
        clear_intent: tuple[EntityType, str] | None = None,
        at_once: bool = False,
    ) -> None:
        """Write one event's outcome rows and its entity changes atomically; returns once durable.

        Writes of concurrent workers are group-committed (`group_writes`): one bad item never fails the
        others; a lost database fails them all (the caller retries). `at_once` (records settled in bulk)
        starts the group without waiting for others to join. If the caller is cancelled, the write goes.
        """
        if not self.writes_back:  # the source's id columns are the live organisation's alone
            write_back = None
        await self._groups.record(
            GroupItem(tuple(outcomes), entity, write_back, clear_intent), at_once=at_once
        )


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    set_json_dumps(_json_dumps, conn)


def _json_dumps(value: Any) -> bytes | str:
    """jsonb parameters (remembered source images) through orjson, several times faster than json;
    json for what orjson refuses (an integer beyond 64 bits in a jsonb source column)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value)


# One query answers many workers' entity-state requests (of the store's organisation); an intent
# without a map row still counts. Each key is looked up by its primary key (LIMIT 1 keeps the planner
# from flattening the lookups into a hash join): on a map not yet analysed (a fresh database, a first
# backfill) it took the organisation's rows for few and hashed the whole map for every query.
_STATE_SQL = (
    "SELECT k.entity_type, k.entity_id, m.zoho_id, m.payload_hash, m.last_lsn, m.zoho_status,"
    " m.source_row, m.rejected_digest, m.currency_code, i.entity_id IS NOT NULL, m.replay_memo,"
    " m.zoho_ahead, m.version"
    " FROM unnest(%s::text[], %s::text[]) AS k(entity_type, entity_id)"
    " CROSS JOIN (SELECT %s::text AS organization_id) AS o"
    " LEFT JOIN LATERAL (SELECT entity_id, zoho_id, payload_hash, last_lsn, zoho_status, source_row,"
    " rejected_digest, currency_code, replay_memo, zoho_ahead, version FROM zoho_entity_map"
    " WHERE organization_id = o.organization_id AND entity_type = k.entity_type"
    " AND entity_id = k.entity_id LIMIT 1) m ON true"
    " LEFT JOIN LATERAL (SELECT entity_id FROM zoho_sync_intent"
    " WHERE organization_id = o.organization_id AND entity_type = k.entity_type"
    " AND entity_id = k.entity_id LIMIT 1) i ON true"
    " WHERE m.entity_id IS NOT NULL OR i.entity_id IS NOT NULL"
)


# A create's intent, written only if the map still shows the planned Zoho id and no other intent was
# written since the caller's lookup (an existing row is taken over only while it is the one seen).
_CLAIM_CREATE_SQL = (
    "INSERT INTO zoho_sync_intent (organization_id, entity_type, entity_id, operation, natural_key)"
    " SELECT %(org)s, %(type)s, %(id)s, 'create', %(key)s"
    " WHERE (SELECT zoho_id FROM zoho_entity_map WHERE organization_id = %(org)s"
    " AND entity_type = %(type)s AND entity_id = %(id)s) IS NOT DISTINCT FROM %(zoho_id)s::text"
    " ON CONFLICT (organization_id, entity_type, entity_id) DO UPDATE"
    " SET operation = EXCLUDED.operation, natural_key = EXCLUDED.natural_key, created_at = now()"
    " WHERE zoho_sync_intent.created_at = %(seen)s::timestamptz"
    " RETURNING created_at"
)


# The same rows for `entity_states`, without reading (and parsing) the remembered image.
_STATES_SQL = _STATE_SQL.replace(" m.source_row,", " NULL,", 1)
assert _STATES_SQL != _STATE_SQL


def _entity_state(r: Sequence[Any]) -> EntityState:
    return EntityState(
        *r[2:6],  # zoho_id, payload_hash, last_lsn, status
        source_row=recalled(r[6]),
        rejected=r[7],
        currency_code=r[8],
        pending_create=bool(r[9]),
        replay_memo=r[10],
        ahead=r[11],
        version=r[12],
    )
