"""Key-ordered, concurrent processing of change events (the Parallel Consumer model).

Records are decoded on arrival and queued per entity key; one worker per key drains its queue,
so a key's events are applied in order while different keys run concurrently (bounded by the
Zoho limiter). A worker takes everything queued for its key at once: only the newest state is
sent, older events are recorded `superseded`. Every record ends in exactly one sync-log outcome,
and `on_done` (which advances the offset watermark) is called only after that row is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

import psycopg
import structlog

from connectors.zoho.errors import AuthError, PermanentError, ZohoError
from connectors.zoho.send_guard import CURRENT_GUARD, SendGuard, SendRevoked
from consumer.jobs.health import MOVED_BACK_MIN_STALE
from consumer.metrics import Metrics
from consumer.pipeline.apply import Applied, Applier, natural_key
from consumer.pipeline.dead_letters import (
    H_OFFSET,
    H_PARTITION,
    H_REPROCESS_COUNT,
    H_TOPIC,
    DeadLetter,
    DeadLetterPublisher,
    header_int,
    parse_headers,
)
from consumer.pipeline.decode import decode_event
from consumer.pipeline.encode import encode_event, topic_for
from consumer.pipeline.events import ChangeEvent, DecodeError, EntityType, Op
from consumer.pipeline.plan import (
    Action,
    EntityState,
    MappingConfig,
    MappingError,
    Plan,
    plan_customer,
    plan_invoice,
)
from consumer.pipeline.replay_index import ReplayIndex, Role
from consumer.pipeline.row_images import coalesce, fill_unavailable, is_partial, remembered, state_digest
from consumer.pipeline.store import EntityUpdate, OutcomeRow, SyncStore
from consumer.pipeline.write_back import WRITE_BACK_ID_COLUMN, WriteBack

if TYPE_CHECKING:
    from consumer.pipeline.zoho_listing import ZohoListing

log = structlog.get_logger("zoho_cdc.engine")

_CALL_ACTIONS = {
    Action.CREATE_CUSTOMER,
    Action.UPDATE_CUSTOMER,
    Action.MARK_CUSTOMER_INACTIVE,
    Action.MARK_CUSTOMER_ACTIVE,
    Action.CREATE_INVOICE,
    Action.UPDATE_INVOICE,
    Action.OPEN_INVOICE,
    Action.RECORD_PAYMENT,
    Action.VOID_INVOICE,
    Action.DELETE_INVOICE,
}


@dataclass(frozen=True, slots=True)
class InboundRecord:
    """One Kafka record as the engine sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None


@dataclass(slots=True)
class _Active:
    task: asyncio.Task[None] | None
    guard: SendGuard
    batch: list[_Item]
    withdrawn: bool = False  # cancelled by a revoke, not by shutdown


@dataclass(slots=True)
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


@dataclass(slots=True)
class _Item:
    record: InboundRecord
    event: ChangeEvent | None
    error: DecodeError | None


class FatalSyncError(Exception):
    """The sync cannot go on (e.g. the Zoho refresh token was revoked); offsets are not advanced."""


@dataclass
class EngineOptions:
    consumer_group: str
    topic_prefix: str
    mapping: MappingConfig = field(default_factory=MappingConfig)
    resync: bool = False  # ignore stored payload hashes and check every entity against Zoho
    ignore_stale: bool = False
    dlq_topic: str = "zoho-sync.dlq"
    reprocess_max_attempts: int = 3


class SyncEngine:
    """Turns inbound records into Zoho calls and durable sync-log outcomes."""

    def __init__(
        self,
        *,
        options: EngineOptions,
        store: SyncStore,
        applier: Applier,
        dead_letters: DeadLetterPublisher,
        on_done: Callable[[InboundRecord], None],
        metrics: Metrics | None = None,
        replay: ReplayIndex | None = None,
        listing: ZohoListing | None = None,
    ) -> None:
        self.options = options
        # A backfill's first pass (`ReplayIndex`): only each entity's newest record is worked on.
        self._replay = replay
        # A resync's page-by-page read of Zoho: only differences are written.
        self._listing = listing
        self._images: dict[tuple[str, str], ChangeEvent] = {}  # images a newest record is made whole from
        self._settling: list[tuple[_Item, OutcomeRow]] = []  # outcomes decided on arrival, written in bulk
        self._settler: asyncio.Task[None] | None = None
        self._store = store
        self._applier = applier
        self._dlq = dead_letters
        self._on_done = on_done
        self.metrics = metrics or Metrics()
        self._queues: dict[tuple[str, str], deque[_Item]] = {}
        self._workers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._locks: dict[tuple[str, str], _KeyLock] = {}
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # Closed while a bounded run reads ahead, so events of one entity gather and coalesce into one call.
        self._gate = asyncio.Event()
        self._gate.set()
        self.fatal: BaseException | None = None
        self._verified: set[str] = set()
        self._stale_streak = 0  # stale outcomes in a row: a long streak means the source moved backwards
        self._active: dict[tuple[str, str], _Active] = {}  # batches being worked on, by key
        self._closing = False
        self._revoked: set[tuple[str, int]] = set()
        self._in_flight_by_partition: Counter[tuple[str, int]] = Counter()
        self._progress = asyncio.Event()  # set whenever a record leaves the in-flight set

    # --- intake -------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return self._in_flight

    def submit(self, record: InboundRecord, event: ChangeEvent | None = None) -> None:
        """Queue one record behind earlier records of the same entity.

        `event` is given by jobs that already hold the change (reconcile's repair reads the source rows
        itself): the record then only names the sync-log position, and nothing is decoded."""
        error: DecodeError | None = None
        if event is None:
            event, error = self._decoded(record)
        key = (
            (event.entity_type.value, event.entity_id)
            if event is not None
            else ("undecodable", f"{record.topic}/{record.partition}/{record.offset}")
        )
        self._in_flight += 1
        self._in_flight_by_partition[(record.topic, record.partition)] += 1
        self._idle.clear()
        item = _Item(record, event, error)
        if event is not None and self._replay is not None and record.topic != self.options.dlq_topic:
            settled = self._replayed(key, item, event)
            if settled is None:
                return
            item = settled
        self._queues.setdefault(key, deque()).append(item)
        if key not in self._workers:
            self._workers[key] = asyncio.create_task(self._work(key), name=f"sync:{key[0]}:{key[1]}")

    def _decoded(self, record: InboundRecord) -> tuple[ChangeEvent | None, DecodeError | None]:
        # A record re-driven from the DLQ is decoded as the record of its original topic.
        source_topic = record.topic
        if record.topic == self.options.dlq_topic:
            source_topic = parse_headers(record.headers).get(H_TOPIC) or record.topic
        try:
            return decode_event(
                source_topic, record.key, record.value, topic_prefix=self.options.topic_prefix
            ), None
        except DecodeError as exc:
            return None, exc

    def _replayed(self, key: tuple[str, str], item: _Item, event: ChangeEvent) -> _Item | None:
        """A replayed record: its entity's newest record goes on (made whole from the images before it),
        every other one gets its outcome at once, without a call; None when it was settled."""
        assert self._replay is not None
        record = item.record
        if event.op is Op.TOMBSTONE:
            self._settle(item, self._row(item, "skipped", operation="none", error="tombstone"))
            return None
        role, newest = self._replay.role(key, record.topic, record.partition, record.offset)
        if role is Role.APPLY:
            image = self._images.pop(key, None)
            if image is None:
                return item
            return _Item(record, coalesce([image, event]), None)
        if role is Role.MERGE:
            image = self._images.get(key)
            self._images[key] = event if image is None else coalesce([image, event])
        self._settle(item, self._row(item, "superseded", error=f"newer event at offset {newest}"))
        return None

    def _settle(self, item: _Item, row: OutcomeRow) -> None:
        """Record an outcome decided without any work; such rows are written in bulk."""
        self.metrics.outcome(row.outcome)
        self._settling.append((item, row))
        if self._settler is None or self._settler.done():
            self._settler = asyncio.create_task(self._write_settled(), name="sync:settled")

    async def _write_settled(self) -> None:
        try:
            while self._settling and self.fatal is None:
                await asyncio.sleep(0)  # gather what this tick's intake settles
                batch, self._settling = self._settling, []
                await self._durably([row for _, row in batch], quiet=True)
                self._finish([item for item, _ in batch])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must stop the process loudly, never silently drop a record
            self.fatal = exc
            log.exception("writing settled outcomes failed")
            self._idle.set()

    def hold(self) -> None:
        """Let records gather without starting their work (read-ahead for coalescing)."""
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every submitted record has a durable outcome. False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self._closing = True
        tasks = list(self._workers.values())
        if self._settler is not None:
            tasks.append(self._settler)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- per-key worker -----------------------------------------------------------------
    async def _work(self, key: tuple[str, str]) -> None:
        queue = self._queues[key]
        try:
            while queue and self.fatal is None:
                await self._gate.wait()
                batch = list(queue)
                queue.clear()
                if not await self._guarded(key, batch):
                    continue  # withdrawn by a revoke: the records are the new owner's now
                if key[0] == EntityType.CUSTOMER.value:
                    self._mark_verified(key[1])
                self._finish(batch)
        except FatalSyncError as exc:
            self.fatal = exc
            log.error("sync stopped", reason=str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must stop the process loudly, never silently drop a record
            self.fatal = exc
            log.exception("worker crashed", key=key)
        finally:
            self._workers.pop(key, None)
            if not queue:
                self._queues.pop(key, None)
            elif not self._closing and self.fatal is None:
                # Never leave queued records without a worker: they would hold their partition's commit.
                self._workers[key] = asyncio.create_task(self._work(key), name=f"sync:{key[0]}:{key[1]}")
            if self.fatal is not None:
                self._idle.set()

    async def _guarded(self, key: tuple[str, str], batch: list[_Item]) -> bool:
        """Process a batch under a send guard a revoke can withdraw; False when it was withdrawn.

        Withdrawn work made no Zoho call (it was cancelled while it waited, or stopped right before
        sending): its records of revoked partitions are dropped without an outcome (their offsets
        were not committed, so the new owner gets them) and the others go back to the queue."""
        guard = SendGuard()
        active = _Active(asyncio.current_task(), guard, batch)  # type: ignore[arg-type]
        self._active[key] = active
        token = CURRENT_GUARD.set(guard)
        try:
            async with self._locked(key):
                await self._process_safely(batch)
            return True
        except asyncio.CancelledError:
            if not active.withdrawn:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
        except SendRevoked:
            pass
        finally:
            CURRENT_GUARD.reset(token)
            self._active.pop(key, None)
        self._withdraw(key, batch)
        return False

    def _withdraw(self, key: tuple[str, str], batch: list[_Item]) -> None:
        kept = [item for item in batch if _partition(item) not in self._revoked]
        dropped = [item for item in batch if _partition(item) in self._revoked]
        self._queues[key].extendleft(reversed(kept))
        self._drop(dropped)
        log.info("work withdrawn from a revoked partition", key=f"{key[0]}:{key[1]}", records=len(dropped))

    def revoke(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Stop the work of revoked partitions before it calls Zoho: queued records are dropped, waiting
        work is cancelled, and work whose call is on the wire finishes and records its outcome."""
        self._revoked = set(partitions)
        if not self._revoked:
            return
        for key, queue in list(self._queues.items()):
            if key in self._active:
                continue  # its worker holds the batch; decided below
            dropped = [item for item in queue if _partition(item) in self._revoked]
            if dropped:
                kept = [item for item in queue if _partition(item) not in self._revoked]
                queue.clear()
                queue.extend(kept)
                self._drop(dropped)
        for active in list(self._active.values()):
            if any(_partition(item) in self._revoked for item in active.batch):
                active.guard.revoked = True
                # Once only: a second cancel before the first lands would outlive the withdrawal and
                # kill the worker later, leaving its queue without one.
                if active.guard.abandonable and active.task is not None and not active.withdrawn:
                    active.withdrawn = True
                    active.task.cancel()

    def in_flight_for(self, partitions: Iterable[tuple[str, int]]) -> int:
        return sum(self._in_flight_by_partition.get(tp, 0) for tp in partitions)

    async def wait_partitions_idle(self, partitions: Iterable[tuple[str, int]], timeout: float) -> bool:
        """Wait until no record of these partitions is in flight; False on timeout."""
        wanted = list(partitions)
        deadline = time.monotonic() + timeout
        while self.in_flight_for(wanted):
            self._progress.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._progress.wait(), remaining)
            except TimeoutError:
                return False
        return True

    def assigned(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Partitions (re)assigned to this process: their work is ours again."""
        self._revoked.difference_update(partitions)

    def _left(self, item: _Item) -> None:
        self._progress.set()
        tp = _partition(item)
        self._in_flight_by_partition[tp] -= 1
        if self._in_flight_by_partition[tp] <= 0:
            del self._in_flight_by_partition[tp]

    def _drop(self, items: list[_Item]) -> None:
        for item in items:
            self._left(item)
        self._in_flight -= len(items)
        if self._in_flight == 0:
            self._idle.set()

    @contextlib.asynccontextmanager
    async def _locked(self, key: tuple[str, str]) -> AsyncIterator[None]:
        """Hold the entity's lock; the lock lives only while someone holds or waits for it, so idle
        keys keep nothing in memory however many entities a run sees."""
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _KeyLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[key]

    def _finish(self, batch: list[_Item]) -> None:
        for item in batch:
            self._on_done(item.record)
            self._left(item)
        self._in_flight -= len(batch)
        if self._in_flight == 0:
            self._idle.set()

    async def _process_safely(self, batch: list[_Item]) -> None:
        """Process a key's batch; an unexpected error dead-letters its records instead of stopping the sync.

        Record content must never stop the process (the next records of the partition would wait
        forever); the error is logged with its traceback and each record keeps exactly one outcome."""
        try:
            await self._process_batch(batch)
        except (FatalSyncError, asyncio.CancelledError, SendRevoked):
            raise
        except Exception as exc:
            log.exception("unexpected error processing a record; dead-lettering it", key=_key_of(batch[0]))
            reason = f"unexpected error while processing this record: {type(exc).__name__}: {exc}"
            for item in batch:
                await self._dead_letter(item, reason, kind="internal", exc_class=type(exc).__name__)

    async def _process_batch(self, batch: list[_Item]) -> None:
        undecodable = [item for item in batch if item.event is None]
        for item in undecodable:
            assert item.error is not None
            await self._dead_letter(item, item.error.reason, kind="decode", exc_class="DecodeError")
        decoded = [item for item in batch if item.event is not None]
        if not decoded:
            return
        # Tombstones only exist for log compaction: they get an outcome but never a call.
        tombstones = [item for item in decoded if item.event.op is Op.TOMBSTONE]  # type: ignore[union-attr]
        changes = [item for item in decoded if item.event.op is not Op.TOMBSTONE]  # type: ignore[union-attr]
        rows = [self._row(item, "skipped", operation="none", error="tombstone") for item in tombstones]
        if changes:
            changes = _in_source_order(changes)
            winner = changes[-1]
            rows += [
                self._row(item, "superseded", error=f"newer event at offset {winner.record.offset}")
                for item in changes[:-1]
            ]
            self.metrics.outcome("superseded", len(changes) - 1)
            # The newest state wins, made whole from the older images (a partial one never wins as it is).
            merged = coalesce([item.event for item in changes])  # type: ignore[misc]
            await self._process_winner(winner, merged, rows)
        elif rows:
            await self._durably(rows)
        self.metrics.outcome("skipped", len(tombstones))

    async def _process_winner(self, item: _Item, event: ChangeEvent, rows: list[OutcomeRow]) -> None:
        started = time.monotonic()
        state = await self._retrying_db(self._store.entity_state, event.entity_type, event.entity_id)
        if self.options.resync:
            state = self._as_listed(event.entity_type, event.row, state)
        if (
            not self.options.ignore_stale
            and state is not None
            and state.last_lsn is not None
            and event.lsn is not None
            and event.lsn < state.last_lsn
        ):
            rows.append(
                self._row(item, "stale", error=f"source lsn {event.lsn} older than applied {state.last_lsn}")
            )
            self.metrics.outcome("stale")
            self._stale_streak += 1
            if self._stale_streak in (MOVED_BACK_MIN_STALE, 1000 * MOVED_BACK_MIN_STALE):
                log.error(
                    "source positions moved backwards for every entity: was the database restored into a new"
                    " cluster? Changes are being skipped as stale; run `zoho-cdc backfill --resync`",
                    stale_in_a_row=self._stale_streak,
                )
            await self._durably(rows)
            return

        event = await self._made_whole(event, state)
        digest = (
            None if event.row is None or is_partial(event) else state_digest(event.entity_type, event.row)
        )
        explicit = self._explicit(item)
        if digest is not None and state is not None and state.rejected == digest and not explicit:
            # An echo (or replay) of a state Zoho refused: sending it again would be refused again.
            rows.append(self._row(item, "skipped", operation="none", error=_REFUSED_BEFORE))
            self.metrics.outcome("skipped")
            await self._durably(rows, entity=self._rejection(event, state, digest))
            return
        refused = self._rejection(event, state, digest)
        try:
            plan = await self._plan(event, state, explicit=explicit)
        except MappingError as exc:
            return await self._dead_letter(
                item,
                f"cannot map row: {exc.reason}",
                kind="mapping",
                exc_class="MappingError",
                prior=rows,
                write_back=event.op is not Op.DELETE,
                entity=refused,
            )
        except AuthError as exc:
            raise _credentials_refused(exc) from exc
        except (ZohoError, _CustomerRefused) as exc:
            # Only reached for an invoice whose customer had to be synced first and Zoho refused it.
            return await self._dead_letter(
                item,
                f"its customer could not be synced to Zoho: {exc}",
                kind="permanent" if isinstance(exc, PermanentError | _CustomerRefused) else "exhausted",
                exc_class=type(exc).__name__,
                attempts=getattr(exc, "attempts", 0),
                http_status=getattr(exc, "http_status", None),
                prior=rows,
                write_back=event.op is not Op.DELETE,
                entity=refused,
            )
        if plan is None:  # the invoice's customer cannot exist in Zoho: recorded by _plan's caller
            return await self._customer_unavailable(item, rows, event)
        outcome_rows, entity, write_back, clear_intent = await self._execute(
            item, event, state, plan, started, refused
        )
        rows += outcome_rows
        await self._durably(rows, entity=entity, write_back=write_back, clear_intent=clear_intent)

    def _as_listed(
        self, entity_type: EntityType, row: Mapping[str, Any] | None, state: EntityState | None
    ) -> EntityState | None:
        """A resync's view of the entity: what Zoho's listing shows replaces what the entity map assumes.

        Without a listing nothing stored is trusted (payload hash and status cleared: every entity is
        written). With one, a record Zoho no longer has is created again, and the stored payload hash is
        kept only when every listed field matches, so an entity already in step makes no call."""
        listing = self._listing
        if listing is None or not listing.covers(entity_type):
            return None if state is None else replace(state, payload_hash=None, status=None)
        record = listing.find(entity_type, state.zoho_id if state else None, natural_key(entity_type, row))
        if record is None:  # not in Zoho: created again (idempotently: intent, natural-key lookup)
            return None if state is None else replace(state, zoho_id=None, payload_hash=None, status=None)
        zoho_id = listing.zoho_id_of(entity_type, record)
        differs = row is None or listing.differs(entity_type, row, record, self.options.mapping)
        base = state or EntityState(zoho_id=None, payload_hash=None, last_lsn=None, status=None)
        payload_hash = None if differs or base.zoho_id != zoho_id else base.payload_hash
        return replace(base, zoho_id=zoho_id, payload_hash=payload_hash, status=record.get("status"))

    def _explicit(self, item: _Item) -> bool:
        """A resync or a dead letter re-driven on purpose may send a state Zoho refused before."""
        return self.options.resync or item.record.topic == self.options.dlq_topic

    async def _made_whole(self, event: ChangeEvent, state: EntityState | None) -> ChangeEvent:
        """Fill a partial image from the last full image we remember, else from the current source row."""
        if event.row is None or not is_partial(event):
            return event
        event = fill_unavailable(event, state.source_row if state else None)
        if is_partial(event):
            current = await self._retrying_db(self._store.source_row, event.entity_type, event.entity_id)
            event = fill_unavailable(event, current)
        return event

    def _rejection(
        self, event: ChangeEvent, state: EntityState | None, digest: str | None
    ) -> EntityUpdate | None:
        """The entity-map row that remembers a refused state (None when the state is not whole)."""
        if digest is None or event.row is None:
            return None
        return EntityUpdate(
            event.entity_type,
            event.entity_id,
            None,
            state.payload_hash if state else None,
            _position(event),
            None,
            natural_key(event.entity_type, event.row),
            source_row=remembered(event.entity_type, event.row),
            rejected_digest=digest,
        )

    async def _plan(self, event: ChangeEvent, state: EntityState | None, *, explicit: bool) -> Plan | None:
        if event.entity_type is EntityType.CUSTOMER:
            currency = None
            if state is None or state.zoho_id is None:
                currency = await self._retrying_db(self._store.customer_currency, event.entity_id)
            return plan_customer(event, state, self.options.mapping, currency_code=currency)
        customer: _ZohoCustomer | None = None
        customer_id = (
            str(event.row.get("customer_id")) if event.row and event.row.get("customer_id") else None
        )
        if customer_id:
            customer = await self._zoho_customer(customer_id, explicit=explicit)
        plan = plan_invoice(
            event,
            state,
            customer.zoho_id if customer else None,
            customer_currency=customer.currency_code if customer else None,
        )
        if plan.needs_customer is not None and plan.action in _CALL_ACTIONS and plan.payload is None:
            return None
        return plan

    async def _zoho_customer(self, customer_id: str, *, explicit: bool) -> _ZohoCustomer | None:
        """An invoice's customer as Zoho has it, syncing the customer first if it is not in Zoho yet.

        In a resync the stored id may point at a record that no longer exists, so the customer is
        checked against Zoho once per run before any of its invoices uses the id. A customer whose
        current state Zoho refused before is not sent again (unless `explicit`): `_CustomerRefused`.
        """
        state = await self._retrying_db(self._store.entity_state, EntityType.CUSTOMER, customer_id)
        if self._usable(customer_id, state):
            return _ZohoCustomer.of(state)
        # Wait for (or do) the customer's sync under the customer's own key lock, so the two never race.
        async with self._locked((EntityType.CUSTOMER.value, customer_id)):
            state = await self._retrying_db(self._store.entity_state, EntityType.CUSTOMER, customer_id)
            if self._usable(customer_id, state):
                return _ZohoCustomer.of(state)
            row = await self._retrying_db(self._store.source_customer, customer_id)
            if row is None:
                return None
            digest = state_digest(EntityType.CUSTOMER, row)
            if state is not None and state.rejected == digest and not explicit:
                raise _CustomerRefused(f"customer {customer_id}: {_REFUSED_BEFORE}")
            if self.options.resync:
                state = self._as_listed(EntityType.CUSTOMER, row, state)
            event = ChangeEvent(
                entity_type=EntityType.CUSTOMER,
                entity_id=customer_id,
                op=Op.READ,
                row=row,
                unavailable=frozenset(),
                lsn=None,
                tx_id=None,
                snapshot=True,
                source_ts_ms=None,
            )
            currency = await self._retrying_db(self._store.customer_currency, customer_id)
            plan = plan_customer(event, state, self.options.mapping, currency_code=currency)
            if plan.action is Action.NOOP and state is not None:
                self._mark_verified(customer_id)
                return _ZohoCustomer.of(state)
            if plan.action not in (
                Action.CREATE_CUSTOMER,
                Action.UPDATE_CUSTOMER,
                Action.MARK_CUSTOMER_ACTIVE,
            ):
                return None
            try:
                applied = await self._apply(
                    EntityType.CUSTOMER,
                    customer_id,
                    plan,
                    row,
                    state.zoho_id if state else None,
                    intent_left=state is not None and state.pending_create,
                )
            except ZohoError as exc:
                if not isinstance(exc, AuthError):
                    await self._customer_refused(event, state, digest, exc)
                raise
            self.metrics.zoho_calls(applied.calls)
            created_in = _created_currency(plan)
            await self._durably(
                [],
                entity=EntityUpdate(
                    EntityType.CUSTOMER,
                    customer_id,
                    applied.zoho_id,
                    plan.payload_hash,
                    None,
                    applied.zoho_status,
                    natural_key(EntityType.CUSTOMER, row),
                    source_row=remembered(EntityType.CUSTOMER, row),
                    currency_code=created_in,
                ),
                write_back=WriteBack(EntityType.CUSTOMER, customer_id, applied.zoho_id, "synced"),
                clear_intent=(EntityType.CUSTOMER, customer_id),
            )
            self._mark_verified(customer_id)
            log.info("customer synced for its invoice", customer_id=customer_id, zoho_id=applied.zoho_id)
            currency_code = created_in or (state.currency_code if state else None)
            return _ZohoCustomer(applied.zoho_id, currency_code) if applied.zoho_id else None

    async def _customer_refused(
        self, event: ChangeEvent, state: EntityState | None, digest: str, exc: ZohoError
    ) -> None:
        """Zoho refused a customer an invoice needed: dead-letter the customer's state once, as its own
        record (a snapshot-shaped event, so `dlq reprocess` can re-drive it), and remember the refusal
        so neither the customer's own event nor its write-back echo sends it again."""
        assert event.row is not None
        key, value = encode_event(
            EntityType.CUSTOMER,
            "r",
            event.row,
            key_id=event.entity_id,
            topic_prefix=self.options.topic_prefix,
        )
        letter = DeadLetter(
            topic=topic_for(self.options.topic_prefix, EntityType.CUSTOMER),
            partition=-1,
            offset=-1,
            key=key,
            value=value,
            reason=f"customer synced for its invoice: {exc}",
            kind="permanent" if isinstance(exc, PermanentError) else "exhausted",
            exception_class=type(exc).__name__,
            attempts=exc.attempts,
            http_status=exc.http_status,
        )
        await self._publish(letter)
        await self._durably(
            [],
            entity=self._rejection(event, state, digest),
            write_back=WriteBack(EntityType.CUSTOMER, event.entity_id, None, "failed", called=False),
        )

    async def _publish(self, letter: DeadLetter) -> None:
        """Produce a dead letter. It is a send like a Zoho call: withdrawn before it, never cancelled once
        it started (a cancelled produce may still reach the topic, and the new owner would publish again)."""
        guard = CURRENT_GUARD.get()
        if guard is not None:
            guard.before_send()  # raises SendRevoked when the record's partition was revoked
        await self._retrying(lambda: self._dlq.publish(letter), what="dead-letter produce")

    def _mark_verified(self, customer_id: str) -> None:
        if self.options.resync:  # only a resync run asks; a live run must not remember every customer
            self._verified.add(customer_id)

    def _usable(self, customer_id: str, state: EntityState | None) -> bool:
        if state is None or not state.zoho_id:
            return False
        if self._listing is not None and self._listing.has(EntityType.CUSTOMER, state.zoho_id):
            return True  # listed by this resync: it exists in Zoho
        return not self.options.resync or customer_id in self._verified

    async def _customer_unavailable(self, item: _Item, rows: list[OutcomeRow], event: ChangeEvent) -> None:
        customer_id = event.row.get("customer_id") if event.row else None
        row = await self._retrying_db(self._store.source_customer, str(customer_id)) if customer_id else None
        if row is not None and row.get("account_type") == "internal_test":
            rows.append(self._row(item, "skipped", error="customer is internal_test and never sent to Zoho"))
            self.metrics.outcome("skipped")
            await self._durably(rows)
            return
        reason = f"customer {customer_id} of invoice {event.entity_id} does not exist in the source"
        await self._dead_letter(item, reason, kind="source", exc_class="MissingCustomer", prior=rows)

    async def _execute(
        self,
        item: _Item,
        event: ChangeEvent,
        state: EntityState | None,
        plan: Plan,
        started: float,
        refused: EntityUpdate | None,
    ) -> tuple[list[OutcomeRow], EntityUpdate | None, WriteBack | None, tuple[EntityType, str] | None]:
        key_value = natural_key(event.entity_type, event.row)
        whole = None if event.row is None or is_partial(event) else remembered(event.entity_type, event.row)
        if plan.action is Action.SKIP:
            self.metrics.outcome("skipped")
            return [self._row(item, "skipped", operation="none", error=plan.reason)], None, None, None
        if plan.action is Action.NOOP:
            self.metrics.outcome("unchanged")
            self._stale_streak = 0
            zoho_id = state.zoho_id if state else None
            entity: EntityUpdate | None = EntityUpdate(
                event.entity_type,
                event.entity_id,
                zoho_id,
                plan.payload_hash or (state.payload_hash if state else None),
                _position(event),
                None,
                key_value,
                source_row=whole,
            )
            if _already_mapped(state, event, plan):
                entity = None  # a redelivery (a replay): the map row already says all of it
            return (
                [self._row(item, "unchanged", operation="none", zoho_id=zoho_id)],
                entity,
                _settled_write_back(event, zoho_id),
                None,
            )
        try:
            applied = await self._apply(
                event.entity_type,
                event.entity_id,
                plan,
                event.row,
                state.zoho_id if state else None,
                intent_left=state is not None and state.pending_create,
            )
        except AuthError as exc:
            raise _credentials_refused(exc) from exc
        except ZohoError as exc:
            kind = "permanent" if isinstance(exc, PermanentError) else "exhausted"
            self.metrics.zoho_calls(getattr(exc, "attempts", 0) or 0)
            await self._dead_letter(
                item,
                f"{plan.action.value}: {exc}",
                kind=kind,
                exc_class=type(exc).__name__,
                attempts=getattr(exc, "attempts", 0) or 0,
                http_status=getattr(exc, "http_status", None),
                write_back=event.op is not Op.DELETE,
                entity=refused,
            )
            return [], None, None, None
        self.metrics.zoho_calls(applied.calls)
        self._stale_streak = 0
        if applied.zoho_id is None:  # a delete whose unresolved create never reached Zoho
            self.metrics.outcome("skipped")
            row = self._row(item, "skipped", operation="none", error="deleted; its create never reached Zoho")
            return [row], None, None, (event.entity_type, event.entity_id)
        self.metrics.outcome("synced")
        duration_ms = int((time.monotonic() - started) * 1000)
        if event.source_ts_ms:
            self.metrics.latency(time.time() - event.source_ts_ms / 1000)
        row = self._row(
            item,
            "synced",
            operation=plan.action.value,
            zoho_id=applied.zoho_id,
            http_status=applied.http_status,
            attempts=applied.attempts,
            duration_ms=duration_ms,
        )
        entity = EntityUpdate(
            event.entity_type,
            event.entity_id,
            applied.zoho_id,
            plan.payload_hash,
            _position(event),
            applied.zoho_status,
            key_value,
            source_row=whole,
            currency_code=_created_currency(plan),
        )
        write_back = None
        if event.op is not Op.DELETE:
            write_back = WriteBack(event.entity_type, event.entity_id, applied.zoho_id, "synced")
        return [row], entity, write_back, (event.entity_type, event.entity_id)

    async def _apply(self, *args: Any, intent_left: bool) -> Applied:
        """One planned call. The client keeps its token and daily budget in PostgreSQL: if the database is
        briefly gone (a restart), the call is retried, which is safe because creates are guarded by the
        intent and the natural-key lookup. `intent_left` False (the entity map showed no intent) skips the
        intent read, but only on the first attempt: a failed attempt may have written one."""
        attempts = 0

        def attempt() -> Any:
            nonlocal attempts
            attempts += 1
            return self._applier.apply(*args, intent_left=intent_left or attempts > 1)

        return await self._retrying(attempt, what="zoho call (database unavailable)")

    async def _dead_letter(
        self,
        item: _Item,
        reason: str,
        *,
        kind: str,
        exc_class: str,
        attempts: int = 0,
        http_status: int | None = None,
        prior: list[OutcomeRow] | None = None,
        write_back: bool = False,
        entity: EntityUpdate | None = None,
    ) -> None:
        """Publish the record to the DLQ and record it; `entity` remembers the refused state."""
        rec = item.record
        group = self.options.consumer_group
        if await self._retrying_db(self._store.has_outcome, group, rec.topic, rec.partition, rec.offset):
            # Redelivered after a crash: dead-lettered before (publish, then row); never publish it twice.
            return
        headers = parse_headers(rec.headers)
        reprocess_count = header_int(headers, H_REPROCESS_COUNT, 0)
        if rec.topic == self.options.dlq_topic:
            reprocess_count += 1
            if reprocess_count >= self.options.reprocess_max_attempts:
                # Parked: recorded as failed instead of going round the DLQ forever.
                self.metrics.outcome("failed")
                log.warning("parked after reprocess attempts", offset=rec.offset, reason=reason)
                rows = list(prior or [])
                rows.append(
                    self._row(
                        item,
                        "failed",
                        error=f"parked after {reprocess_count} reprocess attempts: {reason}",
                        attempts=attempts,
                        http_status=http_status,
                        operation=kind,
                    )
                )
                await self._durably(rows, entity=entity)
                return
        letter = DeadLetter(
            topic=headers.get(H_TOPIC) or rec.topic,
            partition=header_int(headers, H_PARTITION, rec.partition),
            offset=header_int(headers, H_OFFSET, rec.offset),
            key=rec.key,
            value=rec.value,
            reason=reason,
            kind=kind,
            exception_class=exc_class,
            attempts=attempts,
            http_status=http_status,
            reprocess_count=reprocess_count,
        )
        await self._publish(letter)
        event = item.event
        rows = list(prior or [])
        rows.append(
            self._row(
                item,
                "dead_lettered",
                error=reason,
                attempts=attempts,
                http_status=http_status,
                operation=kind,
            )
        )
        wb = None
        if write_back and event is not None:
            wb = WriteBack(event.entity_type, event.entity_id, None, "failed", called=False)
        self.metrics.outcome("dead_lettered")
        await self._durably(rows, write_back=wb, entity=entity)

    # --- durability ---------------------------------------------------------------------
    def _row(self, item: _Item, outcome: str, **fields: Any) -> OutcomeRow:
        event = item.event
        return OutcomeRow(
            consumer_group=self.options.consumer_group,
            topic=item.record.topic,
            partition=item.record.partition,
            offset=item.record.offset,
            entity_type=event.entity_type.value if event else "unknown",
            entity_id=event.entity_id if event else None,
            outcome=outcome,
            source_lsn=event.lsn if event else None,
            source_ts_ms=event.source_ts_ms if event else None,
            **fields,
        )

    async def _durably(self, rows: list[OutcomeRow], *, quiet: bool = False, **kwargs: Any) -> None:
        """Write outcomes in one transaction, retrying while PostgreSQL is unavailable.

        If PostgreSQL refuses the content itself (a value it cannot store or index), the outcome is
        still recorded, without the entity-map and write-back parts and with the reason, so the
        offset can advance: nothing is lost and the partition is not blocked."""
        try:
            await self._retrying(lambda: self._store.record(rows, **kwargs), what="sync-log write")
        except _NOT_TRANSIENT as exc:
            log.error(
                "outcome content refused by PostgreSQL; recording it without its entity state", error=str(exc)
            )
            rows = [
                _bare(row, f"PostgreSQL refused this outcome's content: {type(exc).__name__}") for row in rows
            ]
            await self._retrying(lambda: self._store.record(rows), what="sync-log write")
        if quiet:  # a replay's settled records: one line per bulk write, not one per record
            log.info("settled in bulk", records=len(rows), outcomes=dict(Counter(r.outcome for r in rows)))
            return
        for row in rows:  # one log line per durable outcome
            (log.warning if row.outcome in ("dead_lettered", "failed") else log.info)(
                row.outcome,
                entity=row.entity_type,
                entity_id=row.entity_id,
                topic=row.topic,
                partition=row.partition,
                offset=row.offset,
                call=row.operation,
                zoho_id=row.zoho_id,
                attempts=row.attempts,
                duration_ms=row.duration_ms,
                error=row.error,
            )

    async def _retrying_db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self._retrying(lambda: fn(*args), what="database read")

    async def _retrying(self, make: Callable[[], Any], *, what: str) -> Any:
        delay = 0.2
        while True:
            try:
                return await make()
            except _NOT_TRANSIENT:
                raise  # the same write fails the same way every time: retrying would block the partition
            except (psycopg.OperationalError, OSError, ConnectionError) as exc:
                log.warning("retrying", what=what, error=str(exc), delay_s=round(delay, 2))
            except Exception as exc:
                if type(exc).__module__.startswith(("aiokafka", "psycopg_pool")):
                    log.warning("retrying", what=what, error=str(exc), delay_s=round(delay, 2))
                else:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


_REFUSED_BEFORE: Final = (
    "Zoho refused this same mapped state before (see the dead-letter topic); it is sent again only when"
    " the row changes, or by `dlq reprocess` or `backfill --resync`"
)


class _CustomerRefused(Exception):
    """Raised when an invoice needs its customer synced and Zoho refused that customer's current state."""


@dataclass(frozen=True, slots=True)
class _ZohoCustomer:
    """What an invoice needs of its customer's Zoho record."""

    zoho_id: str
    currency_code: str | None

    @classmethod
    def of(cls, state: EntityState | None) -> _ZohoCustomer | None:
        if state is None or not state.zoho_id:
            return None
        return cls(state.zoho_id, state.currency_code)


def _created_currency(plan: Plan) -> str | None:
    """The currency a customer create gives the Zoho record (None for every other call)."""
    if plan.action is not Action.CREATE_CUSTOMER or not plan.payload:
        return None
    currency = plan.payload.get("currency_code")
    return str(currency) if currency else None


def _already_mapped(state: EntityState | None, event: ChangeEvent, plan: Plan) -> bool:
    """True when the entity map row already holds what an `unchanged` outcome would write: the same
    change (one LSN is one change of one row, so the same image) with the same payload hash and no
    refusal to clear. Replays of synced topics then write only their sync-log rows."""
    return (
        state is not None
        and event.lsn is not None
        and state.last_lsn == event.lsn
        and plan.payload_hash is not None
        and state.payload_hash == plan.payload_hash
        and state.rejected is None
        and not state.pending_create
    )


def _settled_write_back(event: ChangeEvent, zoho_id: str | None) -> WriteBack | None:
    """The write-back of an entity Zoho already matches: only when the row says otherwise.

    Checked against the event's own row, so the echo of a write-back (which already says
    'synced' and the id) writes nothing and therefore streams nothing back.
    """
    if event.row is None or zoho_id is None:
        return None
    id_column = WRITE_BACK_ID_COLUMN[event.entity_type]
    if "zoho_sync_status" not in event.row:  # an image without the write-back columns
        return None
    if event.row.get("zoho_sync_status") == "synced" and event.row.get(id_column) == zoho_id:
        return None
    return WriteBack(event.entity_type, event.entity_id, zoho_id, "synced", called=False)


#: PostgreSQL errors caused by the content written, never by the database's state.
_NOT_TRANSIENT = (psycopg.errors.ProgramLimitExceeded, psycopg.DataError)


def _position(event: ChangeEvent) -> int | None:
    """The source position an applied event leaves in the entity map, for later stale checks.

    Only streamed changes set it. A snapshot read carries the LSN at which the snapshot began, and a
    transaction that was open then (its change written to the WAL before that LSN) but committed after
    it is streamed later with its own, lower change LSN: compared with the read's LSN it would look
    stale and be lost. Streamed changes of one row are in LSN order (row locks), so they compare safely.
    """
    return None if event.snapshot else event.lsn


def _partition(item: _Item) -> tuple[str, int]:
    return (item.record.topic, item.record.partition)


def _in_source_order(changes: list[_Item]) -> list[_Item]:
    """A key's queued changes ordered by source position (LSN), so the newest change wins even when the
    entity's events came through two partitions (a partition-count change, a primary-key update).
    Arrival order breaks ties and stands when a change carries no LSN."""
    if any(item.event is None or item.event.lsn is None or item.event.snapshot for item in changes):
        return changes  # a snapshot read's LSN is where the snapshot began, not when its row changed
    if len({_partition(item) for item in changes}) == 1:
        return changes  # one partition is already in Debezium's (commit) order
    return sorted(changes, key=lambda item: item.event.version)  # type: ignore[union-attr]


def _key_of(item: _Item) -> str:
    event = item.event
    return f"{event.entity_type.value}:{event.entity_id}" if event else f"offset {item.record.offset}"


def _bare(row: OutcomeRow, note: str) -> OutcomeRow:
    """An outcome row that PostgreSQL can always store: bounded ids, no NULs, the reason kept."""
    error = f"{note}; {row.error or ''}".replace("\x00", "")[:2000]
    entity_id = row.entity_id.replace("\x00", "")[:200] if row.entity_id else None
    return replace(row, entity_id=entity_id, error=error, zoho_id=None)


def _credentials_refused(exc: AuthError) -> FatalSyncError:
    return FatalSyncError(
        f"Zoho refused our credentials ({exc}); fix ZOHO_REFRESH_TOKEN / ZOHO_CLIENT_ID / "
        "ZOHO_CLIENT_SECRET and restart: no offsets were advanced."
    )


__all__ = ["SyncEngine", "EngineOptions", "InboundRecord", "FatalSyncError", "Applied"]
