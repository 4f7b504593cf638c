"""An asyncio loop on virtual time: one seed, one history.

The loop's clock (`time()`, and `wall()` for `connectors.clock`) stands still while any callback is ready
and jumps to the next timer when every task waits on one, so a minute of rate window costs no real time.
Everything a simulated world touches is in memory: no socket, no thread, so asyncio's FIFO ready queue
and its timer heap make the order of every step a function of the seed alone.

Processes: each simulated process runs under its own `Process`; every task it creates (directly or
through library code) is tracked by the loop's task factory, so a crash cancels all of them at whatever
await they are parked on, and the stand-ins it holds refuse to act for it afterwards (`Process.check`).
"""

from __future__ import annotations

import asyncio
import contextvars
import selectors
from collections.abc import Coroutine
from typing import Any, Final

#: 2026-12-06T00:00:00Z: the virtual wall clock starts at a fixed instant, so dates are part of the seed.
EPOCH_WALL: Final = 1_796_515_200.0
#: Loop iterations at one virtual instant before the world is declared livelocked.
SPIN_LIMIT: Final = 200_000


class SimulationStalled(Exception):
    """Every task waits on something no timer or callback will ever complete: a deadlock."""


class ProcessKilled(BaseException):
    """The process this code runs for was killed (SIGKILL): nothing more of it may happen.

    A BaseException, as CancelledError is: `except Exception` retry loops must not swallow a death."""


class Process:
    """One simulated OS process: its tasks die together and leave nothing more behind."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.alive = True
        self.tasks: list[asyncio.Task[Any]] = []

    def check(self) -> None:
        if not self.alive:
            raise ProcessKilled(self.name)

    def kill(self) -> None:
        self.alive = False
        for task in self.tasks:
            if not task.done():
                task.cancel()
        self.tasks = []


#: The process the running code belongs to (None: the world itself: the scenario, the checks).
CURRENT: Final[contextvars.ContextVar[Process | None]] = contextvars.ContextVar("sim_process", default=None)


def current_check() -> None:
    """Raise `ProcessKilled` if the calling code's process is dead (a stand-in's guard on every act)."""
    process = CURRENT.get()
    if process is not None:
        process.check()


class _VirtualSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The loop's selector: real file descriptors are polled without waiting; a wait advances the clock."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        assert self.loop is not None
        ready = super().select(0)
        if ready or timeout == 0:
            self.loop.spin()
        elif timeout is None:
            raise SimulationStalled("no task can make progress and no timer is pending")
        else:
            self.loop.advance(timeout)
        self.loop.reach_due_timers()
        return ready


class VirtualLoop(asyncio.SelectorEventLoop):
    """A selector loop whose clock is virtual (see the module docstring)."""

    def __init__(self, wall_start: float = EPOCH_WALL) -> None:
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        self._now = 0.0
        self._wall_start = wall_start
        self._spins = 0  # loop iterations since the clock last moved
        self.set_task_factory(_tracked_task)
        self.unhandled: list[str] = []  # errors no one awaited (a task that died unseen), killed ones apart
        self.set_exception_handler(_unhandled)

    def time(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._wall_start + self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
        if seconds >= self._clock_resolution:  # less is no motion: a loop of such waits still burns a core
            self._spins = 0

    def reach_due_timers(self) -> None:
        """Move the clock to the latest timer this iteration will run.

        asyncio runs every timer due within its clock resolution (1 ns) of `time()`. A real clock has passed
        that instant by the time the callback runs; the virtual one must too, or a task that waits until a
        deadline a few ulps ahead finds it still ahead every time its timer fires, and spins (seed 1160)."""
        heap = self._scheduled  # asyncio's timer heap: a node at or past `end` has no child before it
        while heap and heap[0]._when < (end := self._now + self._clock_resolution):
            due, latest = [0], self._now
            while due:
                node = due.pop()
                if heap[node]._when < end:
                    latest = max(latest, heap[node]._when)
                    due.extend(child for child in (2 * node + 1, 2 * node + 2) if child < len(heap))
            if latest == self._now:
                return
            self._now = latest  # which makes a timer just past the old `end` due as well: look again

    def spin(self) -> None:
        """One more iteration at the same instant; endless ones are a livelock (tasks that never wait)."""
        self._spins += 1
        if self._spins > SPIN_LIMIT:
            raise SimulationStalled(
                f"livelock: {SPIN_LIMIT} loop iterations at t={self._now:.3f} s, time never moves"
            )


def _tracked_task(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kw: Any
) -> asyncio.Task[Any]:
    task = asyncio.Task(coro, loop=loop, **kw)
    context = kw.get("context")  # the task runs in this one if given, else in a copy of the creator's
    process = context.get(CURRENT) if context is not None else CURRENT.get()
    if process is not None:
        process.tasks.append(task)
    return task


def _unhandled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    error = context.get("exception")
    if isinstance(error, ProcessKilled | asyncio.CancelledError):
        return  # what a kill leaves behind: tasks of a dead process
    assert isinstance(loop, VirtualLoop)
    loop.unhandled.append(
        f"{context.get('message')}: {error!r} in {context.get('task') or context.get('future')}"
    )


def run(main: Coroutine[Any, Any, Any], unhandled: list[str] | None = None) -> Any:
    """Run `main` to completion on a fresh virtual loop, then close it (pending tasks are cancelled);
    errors no task awaited are added to `unhandled`."""
    loop = VirtualLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all(loop)
        finally:
            loop.close()
            if unhandled is not None:
                unhandled.extend(loop.unhandled)


def _cancel_all(loop: VirtualLoop) -> None:
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
