"""Key-ordered, concurrent scheduling of records (the Parallel Consumer model).

Records are queued per key; one worker per key takes everything queued for it as one batch, so a key's
records are handled in order while different keys run at once. `on_done` (which advances the offset
watermark) is called only after the batch's handler returned, that is after its sync-log rows are durable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import structlog

from connectors import clock
from connectors.zoho.send_guard import CURRENT_GUARD, SendGuard, SendRevoked
from consumer.model.events import ChangeEvent, DecodeError

log = structlog.get_logger(__name__)

Key = tuple[str, str]  # (entity, source id), or ("undecodable", topic/partition/offset)
Partition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class InboundRecord:
    """One Kafka record as the pipeline sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None


@dataclass(slots=True)
class WorkItem:
    """A record with what decoding made of it: an event, or the reason it is undecodable."""

    record: InboundRecord
    event: ChangeEvent | None
    error: DecodeError | None
    ownership: int = 0  # the partition's ownership this record was admitted under (set by `admit`)

    @property
    def partition(self) -> Partition:
        return (self.record.topic, self.record.partition)


def key_of(item: WorkItem) -> Key:
    """The scheduler key of a record: its entity, or its own position when it could not be decoded."""
    if item.event is not None:
        return (item.event.entity_type.value, item.event.entity_id)
    record = item.record
    return ("undecodable", f"{record.topic}/{record.partition}/{record.offset}")


class FatalSyncError(Exception):
    """The sync cannot go on (e.g. the Zoho refresh token was revoked); offsets are not advanced."""


@dataclass(slots=True)
class _Active:
    task: asyncio.Task[None] | None
    guard: SendGuard
    batch: list[WorkItem]
    withdrawn: bool = False  # cancelled by a revoke, not by shutdown


@dataclass(slots=True)
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class KeyScheduler:
    """Queues per key, one worker per key, in-flight accounting per partition, and revokes.

    Of Zoho it knows only the send guard the client checks before each request
    (`connectors.zoho.send_guard`): a revoke withdraws the work of revoked partitions that has sent nothing
    yet; queued records are never left without a worker. Work admitted under one ownership of a partition
    stays revoked for good once that ownership ends: later rebalances, and the partition coming back (its
    records are then fetched again), never revive it."""

    def __init__(
        self,
        handle: Callable[[Key, list[WorkItem]], Awaitable[None]],
        on_done: Callable[[InboundRecord], None],
    ) -> None:
        self._handle = handle
        self._on_done = on_done
        self._queues: dict[Key, deque[WorkItem]] = {}
        self._workers: dict[Key, asyncio.Task[None]] = {}
        self._locks: dict[Key, _KeyLock] = {}
        self._active: dict[Key, _Active] = {}  # batches being worked on, by key
        self._in_flight = 0
        self._in_flight_by_partition: Counter[Partition] = Counter()
        self._idle = asyncio.Event()
        self._idle.set()
        self._progress = asyncio.Event()  # set whenever a record leaves the in-flight set
        # Closed while a bounded run reads ahead, so events of one entity gather and coalesce into one call.
        self._gate = asyncio.Event()
        self._gate.set()
        # Bumped by each revoke of a partition: a record admitted under an older ownership is revoked work.
        # A set replaced on each rebalance forgot partitions revoked one rebalance earlier, and their
        # withdrawn batches were queued again beside the new owner's.
        self._ownership: Counter[Partition] = Counter()
        self._closing = False
        self.fatal: BaseException | None = None

    # --- intake and completion ------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return self._in_flight

    def admit(self, item: WorkItem) -> None:
        """Count a record as in flight; it leaves through `finish` or `drop`."""
        self._in_flight += 1
        self._in_flight_by_partition[item.partition] += 1
        item.ownership = self._ownership[item.partition]
        self._idle.clear()

    def enqueue(self, key: Key, item: WorkItem) -> None:
        """Queue an admitted record behind earlier records of the same key."""
        self._queues.setdefault(key, deque()).append(item)
        if key not in self._workers:
            self._start(key)

    def finish(self, batch: list[WorkItem]) -> None:
        """The batch's outcomes are durable: its offsets may be committed."""
        for item in batch:
            self._on_done(item.record)
        self._leave(batch)

    def fail(self, exc: BaseException) -> None:
        """Stop the sync loudly: offsets stop advancing and waiters wake up."""
        self.fatal = exc
        self._idle.set()

    def hold(self) -> None:
        """Let records gather without starting their work (read-ahead for coalescing)."""
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every admitted record has finished. False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, *others: asyncio.Task[None] | None) -> None:
        self._closing = True
        tasks = [*self._workers.values(), *(t for t in others if t is not None)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def locked(self, key: Key) -> AsyncIterator[None]:
        """Hold the key's lock; the lock lives only while someone holds or waits for it, so idle
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

    # --- workers --------------------------------------------------------------------------
    def _start(self, key: Key) -> None:
        self._workers[key] = asyncio.create_task(self._work(key), name=f"sync:{key[0]}:{key[1]}")

    async def _work(self, key: Key) -> None:
        queue = self._queues[key]
        try:
            while queue and self.fatal is None:
                await self._gate.wait()
                batch = list(queue)
                queue.clear()
                if await self._guarded(key, batch):
                    self.finish(batch)
                # else withdrawn by a revoke: the records are the new owner's now
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
                self._start(key)
            if self.fatal is not None:
                self._idle.set()

    async def _guarded(self, key: Key, batch: list[WorkItem]) -> bool:
        """Handle a batch under a send guard a revoke can withdraw; False when it was withdrawn.

        Withdrawn work made no Zoho call (it was cancelled while it waited, or stopped right before
        sending): its records of revoked partitions are dropped without an outcome (their offsets
        were not committed, so the new owner gets them) and the others go back to the queue."""
        guard = SendGuard()
        active = _Active(asyncio.current_task(), guard, batch)
        self._active[key] = active
        token = CURRENT_GUARD.set(guard)
        try:
            async with self.locked(key):
                await self._handle(key, batch)
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

    def _is_revoked(self, item: WorkItem) -> bool:
        return item.ownership != self._ownership[item.partition]

    def _withdraw(self, key: Key, batch: list[WorkItem]) -> None:
        kept = [item for item in batch if not self._is_revoked(item)]
        dropped = [item for item in batch if self._is_revoked(item)]
        self._queues[key].extendleft(reversed(kept))
        self._leave(dropped)
        log.info("work withdrawn from a revoked partition", key=f"{key[0]}:{key[1]}", records=len(dropped))

    # --- partitions -----------------------------------------------------------------------
    def revoke(self, partitions: Iterable[Partition]) -> None:
        """Stop the work of revoked partitions before it calls Zoho: queued records are dropped, waiting
        work is cancelled, and work whose call is on the wire finishes and records its outcome."""
        revoked = set(partitions)
        if not revoked:
            return
        for tp in revoked:
            self._ownership[tp] += 1
        for queue in list(self._queues.values()):  # records waiting behind a running batch included
            dropped = [item for item in queue if self._is_revoked(item)]
            if dropped:
                kept = [item for item in queue if not self._is_revoked(item)]
                queue.clear()
                queue.extend(kept)
                self._leave(dropped)
        for active in list(self._active.values()):
            if any(self._is_revoked(item) for item in active.batch):
                active.guard.revoked = True
                # Once only: a second cancel before the first lands would outlive the withdrawal and
                # kill the worker later, leaving its queue without one.
                if active.guard.abandonable and active.task is not None and not active.withdrawn:
                    active.withdrawn = True
                    active.task.cancel()

    def assigned(self, partitions: Iterable[Partition]) -> None:
        """Partitions (re)assigned to this process: records admitted from now on are ours.

        Nothing is cleared: work of an earlier ownership stays revoked (its records are fetched again from
        the committed offset, so reviving it would run them twice, once beside the new owner's copy)."""

    def in_flight_for(self, partitions: Iterable[Partition]) -> int:
        return sum(self._in_flight_by_partition.get(tp, 0) for tp in partitions)

    async def wait_in_flight(self, at_most: int, timeout: float) -> bool:
        """Wait until at most `at_most` records are in flight; False on timeout."""
        return await self._wait_until(lambda: self._in_flight <= at_most or self.fatal is not None, timeout)

    async def wait_partitions_idle(self, partitions: Iterable[Partition], timeout: float) -> bool:
        """Wait until no record of these partitions is in flight; False on timeout."""
        wanted = list(partitions)
        return await self._wait_until(lambda: not self.in_flight_for(wanted), timeout)

    async def _wait_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait, woken by each finished record, until `done()`; False on timeout."""
        deadline = clock.monotonic() + timeout
        while not done():
            self._progress.clear()
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._progress.wait(), remaining)
            except TimeoutError:
                return False
        return True

    def _leave(self, items: list[WorkItem]) -> None:
        for item in items:
            self._progress.set()
            tp = item.partition
            self._in_flight_by_partition[tp] -= 1
            if self._in_flight_by_partition[tp] <= 0:
                del self._in_flight_by_partition[tp]
        self._in_flight -= len(items)
        if self._in_flight == 0:
            self._idle.set()
