"""Gather for a pause, then one call: many workers' questions or writes handled by one query or one write.

`Gathering` is the one primitive; `Gathered` answers questions with it, one query per kind;
`GatheredWrites` writes with it, each writer waiting for its own write. A failed call fails exactly the
questions or writes it held.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

# How long a batched read waits for other workers' questions before it asks the database. A worker
# waits this long once per read; a busy pipeline saves a transaction (~0.3 ms of CPU) per question.
GATHER_SECONDS = 0.002

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)  # the kind of question (a table, a child-value question)
V = TypeVar("V")


def _one(_item: object) -> int:
    return 1


class Gathering(Generic[T]):
    """Items handed in one by one, taken together after a pause and handed to one call (`take`).

    `pause`: seconds to wait for more items once one arrived (0: the rest of this event-loop tick); None:
    items wait until `hand_over` is called. `full_at`: gathered items (of `size` each) that cut the pause
    short, as `add(at_once=True)` does. `most`: items taken at most per call, the rest wait for the next.
    `overlap`: each batch is handed to a task of its own and the next is gathered at once (`below` and
    `finish` wait for them); otherwise one call at a time, the next batch gathering meanwhile. `every`: also
    call `take` this often when nothing arrives (with an empty batch), until `close`. A call that raises goes
    to `failed` (a one-at-a-time gathering stops until the next item); else it is raised where awaited."""

    def __init__(
        self,
        take: Callable[[list[T]], Awaitable[None]],
        *,
        pause: float | None = 0.0,
        full_at: int | None = None,
        size: Callable[[T], int] = _one,
        most: int | None = None,
        overlap: bool = False,
        every: float | None = None,
        failed: Callable[[Exception], None] | None = None,
        name: str | None = None,
    ) -> None:
        self._take, self._failed, self._name = take, failed, name
        self._pause, self._full_at, self._size_of, self._most = pause, full_at, size, most
        self._overlap, self._every = overlap, every
        self._items: list[T] = []
        self._size = 0  # of the items gathered
        self._full = asyncio.Event()
        self._arrived = asyncio.Event()  # an item is gathered: what a timer (`every`) waits for
        self._closed = False
        self.task: asyncio.Task[None] | None = None  # the gathering, while items are gathered
        self._writing: dict[asyncio.Task[None], int] = {}  # overlapping calls not yet done, by size
        self._in_flight = 0  # the size of the items in `_writing`

    def add(self, item: T, *, at_once: bool = False) -> None:
        """Gather an item; `at_once` ends the pause (a replay's bulk is a group already)."""
        self._items.append(item)
        self._size += self._size_of(item)
        if at_once or (self._full_at is not None and self._size >= self._full_at):
            self._full.set()
        self._arrived.set()
        if self._pause is not None and not self._closed and (self.task is None or self.task.done()):
            self.task = asyncio.create_task(self._gather(), name=self._name)

    def hand_over(self) -> None:
        """Hand what is gathered to a call now, without a pause (an overlapping gathering)."""
        assert self._overlap, "a one-at-a-time gathering hands over only from its own task"
        if self._items:
            self._start(self._taken())

    async def below(self, limit: int) -> None:
        """Wait while more than `limit` items are handed over and not yet done, oldest call first;
        a call that failed raises here."""
        while self._in_flight > limit:
            oldest = next(iter(self._writing))
            await oldest
            self._forget(oldest)

    async def finish(self) -> None:
        """Hand over what is gathered and wait for every call, oldest first; the first failure raises."""
        self.hand_over()
        await self.below(0)

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """What is still gathering or writing, for shutdown."""
        return [t for t in (self.task, *self._writing) if t is not None and not t.done()]

    def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()

    async def close(self) -> None:
        # The flag ends the gathering even when the cancel is lost: Python 3.11's wait_for swallows a
        # cancel that arrives as the event it waits for is set (an item added just before close).
        self._closed = True
        tasks = self.tasks
        self.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _gather(self) -> None:
        while not self._closed and (self._items or self._every is not None):
            await self._wait()
            batch = self._taken()
            if not batch and self._every is None:
                continue  # handed over meanwhile (`hand_over`)
            if self._overlap:
                self._start(batch)
                continue
            try:
                await self._take(batch)
            except Exception as exc:
                if self._failed is None:
                    raise
                self._failed(exc)
                return

    async def _wait(self) -> None:
        if self._every is not None:  # a timer: nothing arriving for `every` seconds still makes a call
            try:
                await asyncio.wait_for(self._arrived.wait(), self._every)
            except TimeoutError:
                return
        if self._full_at is None:
            await asyncio.sleep(self._pause or 0)
            return
        try:  # let other workers add theirs, unless the batch is full already
            await asyncio.wait_for(self._full.wait(), self._pause)
        except TimeoutError:
            pass

    def _taken(self) -> list[T]:
        self._full.clear()
        if self._most is None or len(self._items) <= self._most:
            batch, self._items, self._size = self._items, [], 0
        else:
            batch, self._items = self._items[: self._most], self._items[self._most :]
            self._size -= sum(map(self._size_of, batch))
        if not self._items:
            self._arrived.clear()
        return batch

    def _start(self, batch: list[T]) -> None:
        task = asyncio.create_task(self._take_apart(batch), name=self._name and f"{self._name}-write")
        size = sum(map(self._size_of, batch))
        self._writing[task] = size
        self._in_flight += size
        task.add_done_callback(self._done)

    async def _take_apart(self, batch: list[T]) -> None:
        try:
            await self._take(batch)
        except Exception as exc:
            if self._failed is None:
                raise
            self._failed(exc)

    def _done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            self._forget(task)  # a failed call stays, to be raised where the batch is waited for

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._in_flight -= self._writing.pop(task, 0)


class Gathered(Generic[K, V]):
    """Questions many workers ask at about the same time, answered by one query per kind of question.

    A worker asks for one key and waits; the first question starts a short gathering pause
    (`GATHER_SECONDS`), after which each kind's keys are answered by one call of `answer`. The same
    question asked twice in one pause is asked once. A failed query fails exactly its questions.
    """

    def __init__(
        self,
        answer: Callable[[K, Sequence[Any]], Awaitable[Mapping[Any, V]]],
        *,
        pause: float = GATHER_SECONDS,
    ) -> None:
        self._answer = answer
        self._waiting: dict[tuple[K, Hashable], asyncio.Future[V | None]] = {}
        self._questions: Gathering[None] = Gathering(self._answer_all, pause=pause)

    async def ask(self, kind: K, key: Hashable) -> V | None:
        """The answer for `key` (None when there is none), gathered with the other questions."""
        future = self._waiting.get((kind, key))
        if future is None:
            future = self._waiting[(kind, key)] = asyncio.get_running_loop().create_future()
            self._questions.add(None)
        return await asyncio.shield(future)  # one asker cancelled never cancels the others' answer

    async def _answer_all(self, _asked: list[None]) -> None:
        waiting, self._waiting = self._waiting, {}  # a question asked from now on is the next query's
        by_kind: dict[K, dict[Hashable, asyncio.Future[V | None]]] = {}
        for (kind, key), future in waiting.items():
            by_kind.setdefault(kind, {})[key] = future
        for kind, futures in by_kind.items():
            try:
                found = await self._answer(kind, list(futures))
            except Exception as exc:
                for future in futures.values():
                    _fail(future, exc)
                continue
            for key, future in futures.items():
                if not future.done():
                    future.set_result(found.get(key))


@dataclass(slots=True)
class Waiter(Generic[T]):
    """One write handed to a `GatheredWrites`, and its writer waiting for it."""

    item: T
    future: asyncio.Future[None]

    def done(self) -> None:
        if not self.future.done():
            self.future.set_result(None)

    def fail(self, exc: BaseException) -> None:
        _fail(self.future, exc)


class GatheredWrites(Generic[T]):
    """Writes many workers hand in, written together by one call (`write`); each waits for its own.

    The call may end single writes (`Waiter.done`, `Waiter.fail`, in the order it writes them); every
    write it leaves is done when it returns, in the order handed in, or fails with its error when it
    raises. Gathering options are `Gathering`'s (`size` measures an item).
    """

    def __init__(
        self,
        write: Callable[[list[Waiter[T]]], Awaitable[None]],
        *,
        size: Callable[[T], int] = _one,
        **gathering: Any,
    ) -> None:
        self._write = write
        self._writes: Gathering[Waiter[T]] = Gathering(
            self._write_all, size=lambda waiter: size(waiter.item), **gathering
        )

    async def write(self, item: T, *, at_once: bool = False) -> None:
        """Hand in a write; returns once it is written (raises its error when it failed).

        This writer's wait alone: if it is cancelled, the write still goes."""
        waiter = Waiter(item, asyncio.get_running_loop().create_future())
        self._writes.add(waiter, at_once=at_once)
        await waiter.future

    async def _write_all(self, batch: list[Waiter[T]]) -> None:
        try:
            await self._write(batch)
        except Exception as exc:
            for waiter in batch:
                waiter.fail(exc)
            return
        for waiter in batch:
            waiter.done()


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
