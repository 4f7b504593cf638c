"""The sync log, the entity map and create intents in PostgreSQL.

`record()` writes an event's outcome rows, the entity-map update, the intent removal and the
write-back to the source row in ONE transaction: when it returns, the outcome is durable and the
offset may be committed; when it raises, nothing of it happened.

A store works in one Zoho organisation (`organization_id`): every read and write of the entity map,
the intents and the item map is that organisation's. Only the live sync's organisation writes back
to the source (`writes_back`, `consumer.pipeline.durability.organisations`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from consumer.pipeline.durability.gathered import GATHER_SECONDS, settle_all
from consumer.pipeline.durability.group_writes import write_group
from consumer.pipeline.durability.source_reads import SourceReader
from consumer.pipeline.durability.waiting_children import WaitingChildren
from consumer.pipeline.effects.write_back import WriteBack, WriteBackQueue

log = structlog.get_logger(__name__)

# How long a group commit gathers outcomes. Longer than a read's pause: a worker waiting for its
# outcome holds no Zoho permit, only its key, and a group of a few dozen rows costs a group of a few
# per row; the outcome (and so the offset commit) is a few milliseconds later.
# Measured on the 50,000-event backfill: 2 ms -> 16.9 CPU s, 10 ms -> 15.5, 25 ms -> 14.8.
GROUP_GATHER_SECONDS = 0.02
# A group this large is written at once: waiting longer saves nothing, and a replay settling records in
# bulk would otherwise stall at its in-flight bound for a pause per group.
GROUP_FULL_ROWS = 500

OUTCOMES = tuple(SyncOutcome)  # every outcome a sync-log row may hold


# Not frozen: that triples the cost of building one, and a replay builds one per record.
@dataclass(slots=True)
class OutcomeRow:
    """One sync-log row: the outcome of one Kafka record (a value: never changed once built)."""

    consumer_group: str
    topic: str
    partition: int
    offset: int
    entity_type: str
    entity_id: str | None
    outcome: SyncOutcome
    operation: str | None = None
    zoho_id: str | None = None
    http_status: int | None = None
    attempts: int = 0
    error: str | None = None
    duration_ms: int | None = None
    source_lsn: int | None = None
    source_ts_ms: int | None = None


@dataclass(frozen=True, slots=True)
class EntityUpdate:
    """The entity map row after an applied (or confirmed unchanged) event."""

    entity_type: EntityType
    entity_id: str
    zoho_id: str | None
    payload_hash: str | None
    last_lsn: int | None
    zoho_status: str | None
    natural_key: str | None
    source_row: Mapping[str, Any] | None = None  # `row_images.remembered` form; None keeps the stored one
    rejected_digest: str | None = None  # None clears it: the entity's last outcome was not a refusal
    currency_code: str | None = None  # None keeps the stored one
    replay_memo: str | None = None  # always written: None clears it (`consumer.pipeline.replay.memo`)
    zoho_ahead: str | None = None  # always written: None clears it (Zoho's status, while Zoho is ahead)


@dataclass(frozen=True, slots=True)
class Intent:
    operation: str
    natural_key: str


class SyncStore:
    """Async access to zoho-cdc's tables and the source tables it reads and writes back."""

    def __init__(
        self, database_url: str, *, max_size: int = 10, organization_id: str = "", writes_back: bool = True
    ) -> None:
        self.organization_id = organization_id
        # True only in the live sync's organisation: the source's id columns hold its ids (an id read
        # there is this organisation's) and outcomes are written back; another organisation's sync
        # never touches the source rows.
        self.writes_back = writes_back
        self._writes: list[_Write] = []
        self._writer: asyncio.Task[None] | None = None
        self._waiting_rows = 0  # outcome rows waiting for the next group commit
        self._group_full = asyncio.Event()
        self._state_requests: dict[tuple[str, str], asyncio.Future[EntityState | None]] = {}
        self._state_loader: asyncio.Task[None] | None = None
        self._intents: list[tuple[tuple[str, str, str, str], asyncio.Future[None]]] = []
        self._intent_writer: asyncio.Task[None] | None = None
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
        self._waiting_children = WaitingChildren(self._pool, organization_id)

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
        key = (entity_type.value, entity_id)
        future = self._state_requests.get(key)
        if future is None:
            future = self._state_requests[key] = asyncio.get_running_loop().create_future()
        if self._state_loader is None or self._state_loader.done():
            self._state_loader = asyncio.create_task(self._load_states())
        return await asyncio.shield(future)

    async def _load_states(self) -> None:
        while self._state_requests:
            await asyncio.sleep(GATHER_SECONDS)  # let the other workers ask too
            requests, self._state_requests = self._state_requests, {}
            try:
                async with self._pool.connection() as conn:
                    keys = ([k[0] for k in requests], [k[1] for k in requests], self.organization_id)
                    cur = await conn.execute(_STATE_SQL, keys)
                    found = {(r[0], r[1]): _entity_state(r) for r in await cur.fetchall()}
            except Exception as exc:
                for future in requests.values():
                    if not future.done():
                        future.set_exception(exc)
                continue
            for key, future in requests.items():
                if not future.done():
                    future.set_result(found.get(key))

    async def entity_states(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], EntityState]:
        """The entity map rows of many (entity type, id) keys in one query, without the remembered source
        image (`source_row` None: a batch check never fills an image); keys without a row are left out."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                _STATES_SQL, ([k[0] for k in keys], [k[1] for k in keys], self.organization_id)
            )
            return {(r[0], r[1]): _entity_state(r) for r in await cur.fetchall()}

    async def intent(self, entity_type: EntityType, entity_id: str) -> Intent | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT operation, natural_key FROM zoho_sync_intent"
                " WHERE organization_id = %s AND entity_type = %s AND entity_id = %s",
                (self.organization_id, entity_type.value, entity_id),
            )
            row = await cur.fetchone()
        return Intent(operation=row[0], natural_key=row[1]) if row else None

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
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._intents.append(((entity_type.value, entity_id, operation, natural_key), future))
        if self._intent_writer is None or self._intent_writer.done():
            self._intent_writer = asyncio.create_task(self._write_intents())
        await future  # this caller's alone: if it is cancelled, the intent is still written

    async def _write_intents(self) -> None:
        while self._intents:
            # No gathering pause: an intent is written while its call holds one of Zoho's few concurrent
            # permits, so its wait would idle the permit (measured: a third of a backfill's time).
            await asyncio.sleep(0)
            batch, self._intents = self._intents, []
            rows = {(r[0], r[1]): r for r, _ in batch}  # one row per entity: ON CONFLICT cannot repeat a key
            try:
                async with self._pool.connection() as conn:  # one statement for the batch: atomic, one trip
                    await conn.execute(
                        "INSERT INTO zoho_sync_intent"
                        " (organization_id, entity_type, entity_id, operation, natural_key)"
                        " SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])"
                        " ON CONFLICT (organization_id, entity_type, entity_id)"
                        " DO UPDATE SET operation = EXCLUDED.operation, natural_key = EXCLUDED.natural_key",
                        [
                            self.organization_id,
                            *(list(column) for column in zip(*rows.values(), strict=True)),
                        ],
                    )
            except Exception as exc:
                settle_all([f for _, f in batch], exc)
                continue
            settle_all([f for _, f in batch], None)

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

        Writes of concurrent workers are group-committed: the ones waiting together go into one
        transaction. If that transaction fails on a bad item, each item is retried alone, so one
        bad write never fails the others; a lost database fails them all (the caller retries).
        `at_once` (records settled in bulk) starts the group without waiting for others to join.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self.writes_back:  # the source's id columns are the live organisation's alone
            write_back = None
        self._writes.append(_Write(tuple(outcomes), entity, write_back, clear_intent, future))
        self._waiting_rows += len(outcomes)
        if at_once or self._waiting_rows >= GROUP_FULL_ROWS:
            self._group_full.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_groups())
        await future  # this caller's alone (no shield needed): if it is cancelled, the write still goes

    async def _write_groups(self) -> None:
        while self._writes:
            try:  # let the other workers join the group, unless it is already full (a replay's bulk)
                await asyncio.wait_for(self._group_full.wait(), GROUP_GATHER_SECONDS)
            except TimeoutError:
                pass
            self._group_full.clear()
            group, self._writes, self._waiting_rows = self._writes, [], 0
            try:
                await self._write(group)
            except psycopg.OperationalError as exc:
                if not isinstance(exc, psycopg.errors.ProgramLimitExceeded):  # the database, not one item
                    _fail(group, exc)
                    continue
                await self._write_alone(group)
                continue
            except Exception:
                await self._write_alone(group)
                continue
            _done(group)

    async def _write_alone(self, group: Sequence[_Write]) -> None:
        """One item's content failed the group's transaction: write each apart, so only it fails."""
        for item in group:
            try:
                await self._write([item])
            except Exception as exc:
                _fail([item], exc)
            else:
                _done([item])

    async def _write(self, group: Sequence[_Write]) -> None:
        outcomes = [o for item in group for o in item.outcomes]
        entities = [item.entity for item in group if item.entity is not None]
        intents = [item.clear_intent for item in group if item.clear_intent is not None]
        write_backs = [item.write_back for item in group if item.write_back is not None]
        async with self._pool.connection() as conn:
            await write_group(conn, self.organization_id, outcomes, entities, intents, write_backs)
        if write_backs:
            self.write_backs.poke()


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
    " m.zoho_ahead"
    " FROM unnest(%s::text[], %s::text[]) AS k(entity_type, entity_id)"
    " CROSS JOIN (SELECT %s::text AS organization_id) AS o"
    " LEFT JOIN LATERAL (SELECT entity_id, zoho_id, payload_hash, last_lsn, zoho_status, source_row,"
    " rejected_digest, currency_code, replay_memo, zoho_ahead FROM zoho_entity_map"
    " WHERE organization_id = o.organization_id AND entity_type = k.entity_type"
    " AND entity_id = k.entity_id LIMIT 1) m ON true"
    " LEFT JOIN LATERAL (SELECT entity_id FROM zoho_sync_intent"
    " WHERE organization_id = o.organization_id AND entity_type = k.entity_type"
    " AND entity_id = k.entity_id LIMIT 1) i ON true"
    " WHERE m.entity_id IS NOT NULL OR i.entity_id IS NOT NULL"
)


# The same rows for `entity_states`, without reading (and parsing) the remembered image.
_STATES_SQL = _STATE_SQL.replace(" m.source_row,", " NULL,", 1)
assert _STATES_SQL != _STATE_SQL


def _entity_state(r: Sequence[Any]) -> EntityState:
    return EntityState(
        zoho_id=r[2],
        payload_hash=r[3],
        last_lsn=r[4],
        status=r[5],
        source_row=recalled(r[6]),
        rejected=r[7],
        currency_code=r[8],
        pending_create=bool(r[9]),
        replay_memo=r[10],
        ahead=r[11],
    )


@dataclass(frozen=True, slots=True)
class _Write:
    outcomes: tuple[OutcomeRow, ...]
    entity: EntityUpdate | None
    write_back: WriteBack | None
    clear_intent: tuple[EntityType, str] | None
    future: asyncio.Future[None]


def _done(group: Sequence[_Write]) -> None:
    for item in group:
        if not item.future.done():
            item.future.set_result(None)


def _fail(group: Sequence[_Write], exc: BaseException) -> None:
    for item in group:
        if not item.future.done():
            item.future.set_exception(exc)
