"""`MemoryStore`: the sync store (`consumer.pipeline.durability.store.SyncStore`) over a `MemoryDatabase`.

The same methods and attributes the pipeline, the entities and the Zoho applier use, with the semantics
of the SQL they run: the sync log's ON CONFLICT DO NOTHING, the entity map's "newer wins" upsert, the
write-back queue's merge (`simulation.database.rows`). `record` writes an event's rows, entity update,
cleared intent and queued write-back together or not at all. Writes the service hands to a gathering task
(`record`, `write_intent`, `take_waiting`) go on when their caller is cancelled, as there; the service's
gathering pauses are kept (`pauses=True`), so an outcome is durable when the service's would be.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import psycopg

from connectors import clock
from consumer.model.events import EntityType
from consumer.model.plan import EntityState
from consumer.pipeline.decision.row_images import recalled
from consumer.pipeline.durability.gathered import GATHER_SECONDS
from consumer.pipeline.durability.group_writes import GROUP_GATHER_SECONDS
from consumer.pipeline.durability.rows import EntityUpdate, Intent, OutcomeRow
from consumer.pipeline.effects.write_back import WriteBack
from simulation.database.claims import MemoryClaims
from simulation.database.leases import MemoryLeases
from simulation.database.rows import entity_values, fresh, logged_values, merged_entity, queued_write_back
from simulation.database.tables import MemoryDatabase, MemorySourceReader, StatementGate
from simulation.database.write_backs import MemoryWriteBacks


class MemoryStore:
    """One process's sync store in one Zoho organisation, over a `MemoryDatabase` that outlives it."""

    def __init__(
        self, db: MemoryDatabase, *, organization_id: str = "", writes_back: bool = True, pauses: bool = True
    ) -> None:
        self.organization_id = organization_id
        self.writes_back = writes_back  # only the live organisation's store writes back to the source
        self._db = db
        self._gate = StatementGate(db, pauses=pauses)
        self.source = MemorySourceReader(db, self._gate)
        self.write_backs = MemoryWriteBacks(db, self._gate)
        self.claims = MemoryClaims(db, organization_id, self._gate)
        self.leases = MemoryLeases(db, organization_id, self._gate)

    @property
    def database(self) -> MemoryDatabase:
        return self._db

    async def open(self) -> None:
        self._db.guard()
        self._db.check_available()  # the pool's first connection
        self._gate.open = True

    async def close(self) -> None:
        await self.write_backs.close()
        try:
            await self.write_backs.apply_pending()  # what is left stays queued for the next start
        except psycopg.Error:
            pass  # closing must not fail on it: the queue is durable
        self._gate.open = False

    async def __aenter__(self) -> MemoryStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def ping(self) -> bool:
        await self._gate.before()
        return True

    # --- reads ------------------------------------------------------------------------------------------
    def _key(self, entity_type: EntityType | str, entity_id: str) -> tuple[str, str, str]:
        return (self.organization_id, str(entity_type), entity_id)

    def _state(self, key: tuple[str, str, str], *, with_image: bool) -> EntityState | None:
        """`_STATE_SQL`'s row: the map row, and whether an intent is left; none when neither exists."""
        row = self._db.entity_map.get(key)
        pending = key in self._db.intents
        if row is None:
            return EntityState(None, None, None, None, pending_create=True) if pending else None
        image = row["source_row"] if with_image and row["source_row"] is not None else None
        return EntityState(
            zoho_id=row["zoho_id"],
            payload_hash=row["payload_hash"],
            last_lsn=row["last_lsn"],
            status=row["zoho_status"],
            source_row=None if image is None else recalled(fresh(image)),
            rejected=row["rejected_digest"],
            currency_code=row["currency_code"],
            pending_create=pending,
            replay_memo=row["replay_memo"],
            ahead=row["zoho_ahead"],
            version=row["version"],
        )

    async def entity_state(self, entity_type: EntityType, entity_id: str) -> EntityState | None:
        await self._gate.before(GATHER_SECONDS)
        return self._state(self._key(entity_type, entity_id), with_image=True)

    async def entity_states(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], EntityState]:
        """Many keys' map rows without the remembered image; keys with neither row nor intent are left out."""
        await self._gate.before()
        found = {}
        for kind, entity_id in keys:
            state = self._state(self._key(kind, entity_id), with_image=False)
            if state is not None:
                found[(str(kind), entity_id)] = state
        return found

    async def intent(self, entity_type: EntityType, entity_id: str) -> Intent | None:
        await self._gate.before()
        return self._db.intents.get(self._key(entity_type, entity_id))

    async def source_row(self, entity_type: EntityType, entity_id: str) -> dict[str, Any] | None:
        return await self.source.row(entity_type, entity_id)

    async def first_child_value(
        self, child: EntityType, parent_column: str, value_column: str, parent_id: str
    ) -> str | None:
        return await self.source.first_child_value(child, parent_column, value_column, parent_id)

    async def has_outcome(self, consumer_group: str, topic: str, partition: int, offset: int) -> bool:
        await self._gate.before()
        return self._db.is_logged((consumer_group, topic, partition, offset))

    async def logged_positions(self, consumer_group: str, topic: str) -> set[tuple[int, int]]:
        await self._gate.before()
        return {
            (row.partition, row.offset)
            for row in self._db.sync_log
            if row.consumer_group == consumer_group and row.topic == topic
        }

    async def dead_lettered_by(self, topic: str, partition: int, offset: int) -> str | None:
        await self._gate.before()
        return self._db.dead_lettered_by(topic, partition, offset)

    async def item_id(self, kind: str, key: str) -> str | None:
        await self._gate.before()
        return self._db.item_map.get((self.organization_id, kind, key))

    # --- writes of their own statement ------------------------------------------------------------------
    async def await_parent(
        self, entity_type: EntityType, entity_id: str, parent_type: EntityType, parent_id: str
    ) -> None:
        """Remember a child refused because Zoho refused its parent (upsert: the newest parent wins)."""
        await self._gate.before()
        self._db.waiting[self._key(entity_type, entity_id)] = (parent_type.value, parent_id)
        await self._gate.after()

    async def next_follow_up(self) -> int:
        await self._gate.before()
        self._db.follow_up_seq += 1  # a sequence: never given twice, never given back
        value = self._db.follow_up_seq
        await self._gate.after()
        return value

    async def remember_item(self, kind: str, key: str, zoho_item_id: str) -> None:
        if kind not in ("code", "default"):
            raise psycopg.errors.CheckViolation("zoho_item_map_kind_check")
        await self._gate.before()
        self._db.item_map[(self.organization_id, kind, key)] = zoho_item_id
        await self._gate.after()

    async def forget_item(self, kind: str, key: str) -> None:
        await self._gate.before()
        self._db.item_map.pop((self.organization_id, kind, key), None)
        await self._gate.after()

    # --- writes a gathering task makes in the service -----------------------------------------------------
    async def _detached(self, write: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """Run the write in a task of its own, as the service's gathering does: the caller cancelled
        leaves it going (the harness's kill of the process cancels it too: tasks are the process's)."""
        task = asyncio.ensure_future(write())
        task.add_done_callback(_retrieved)
        result = await asyncio.shield(task)
        await self._gate.after()
        return result

    async def take_waiting(self, parent_type: EntityType, parent_id: str) -> list[tuple[EntityType, str]]:
        """The children waiting for this parent, forgotten as they are handed out."""

        async def take() -> list[tuple[EntityType, str]]:
            await self._gate.before(GATHER_SECONDS)
            parent = (parent_type.value, parent_id)
            taken = [
                key
                for key, waited in self._db.waiting.items()
                if key[0] == self.organization_id and waited == parent
            ]
            for key in taken:
                del self._db.waiting[key]
            return [(EntityType(kind), entity_id) for _, kind, entity_id in taken]

        return await self._detached(take)  # type: ignore[no-any-return]

    async def write_intent(
        self, entity_type: EntityType, entity_id: str, operation: str, natural_key: str
    ) -> None:
        """Durably note a create (or payment) about to be sent; returns once committed."""

        async def write() -> None:
            await self._gate.before()
            if operation is None or natural_key is None:
                raise psycopg.errors.NotNullViolation(
                    "zoho_sync_intent: operation and natural_key are NOT NULL"
                )
            if "\x00" in f"{entity_id}{operation}{natural_key}":
                raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
            self._db.intents[self._key(entity_type, entity_id)] = self._db.new_intent(operation, natural_key)

        await self._detached(write)

    async def claim_create(
        self,
        entity_type: EntityType,
        entity_id: str,
        natural_key: str,
        *,
        zoho_id: str | None,
        taking_over: Intent | None,
    ) -> Intent | None:
        """`SyncStore.claim_create`: the intent written only if the map still shows `zoho_id` and no intent
        was written since the caller's lookup (none, or still `taking_over`); one statement, atomic."""

        async def claim() -> Intent | None:
            await self._gate.before()
            key = self._key(entity_type, entity_id)
            if (self._db.entity_map.get(key) or {}).get("zoho_id") != zoho_id:
                return None
            held = self._db.intents.get(key)
            if held is not None and (taking_over is None or held.written_at != taking_over.written_at):
                return None
            written = self._db.intents[key] = self._db.new_intent("create", natural_key)
            return written

        return await self._detached(claim)  # type: ignore[no-any-return]

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

        `at_once` skips the group commit's gathering pause. If the caller is cancelled, the write goes."""
        if not self.writes_back:  # the source's id columns are the live organisation's alone
            write_back = None
        rows = tuple(outcomes)

        async def write() -> None:
            await self._gate.before(0.0 if at_once else GROUP_GATHER_SECONDS)
            self._commit(rows, entity, write_back, clear_intent)
            if write_back is not None:
                self.write_backs.poke()

        await self._detached(write)

    def _commit(
        self,
        outcomes: Sequence[OutcomeRow],
        entity: EntityUpdate | None,
        write_back: WriteBack | None,
        clear_intent: tuple[EntityType, str] | None,
    ) -> None:
        """Every check first, then every change, with no await between: all of it or none of it."""
        db = self._db
        logged = [logged_values(o) for o in outcomes]
        if entity is not None:
            entity_key = self._key(entity.entity_type, entity.entity_id)
            merged = merged_entity(
                db.entity_map.get(entity_key), entity_values(entity), entity.lease, entity.planned_version
            )
            merged["updated_at"] = clock.wall()
        if write_back is not None:
            queue_key = (write_back.entity_type.value, write_back.entity_id)
            db.queue_order += 1
            queued = queued_write_back(
                db.pending_write_backs.get(queue_key), write_back, clock.wall(), db.queue_order
            )
        db.log(logged)
        if entity is not None:
            db.entity_map[entity_key] = merged
        if clear_intent is not None:
            db.intents.pop(self._key(*clear_intent), None)
        if write_back is not None:
            db.pending_write_backs[queue_key] = queued


def _retrieved(task: asyncio.Future[Any]) -> None:
    """A write whose caller was cancelled fails unseen: its error is taken here, not reported as lost."""
    if not task.cancelled():
        task.exception()
