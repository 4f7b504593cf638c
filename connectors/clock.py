"""The one clock every component reads: the running event loop's.

asyncio's own timers (sleep, wait_for, call_later) read `loop.time()`; reading the same clock for
deadlines, windows and timestamps keeps them in step with those timers, and lets the deterministic
simulation (`simulation.loop.VirtualLoop`) run the real code on virtual time: its loop answers `time()`
and `wall()` from a virtual clock. Outside a running loop (a synchronous command), the system's clocks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time


def _loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def monotonic() -> float:
    """Seconds on the running loop's monotonic clock (`time.monotonic` outside a loop)."""
    loop = _loop()
    return loop.time() if loop is not None else time.monotonic()


def wall() -> float:
    """Seconds since the epoch: the virtual loop's wall clock under simulation, else `time.time()`."""
    loop = _loop()
    virtual = getattr(loop, "wall", None)
    return virtual() if virtual is not None else time.time()


def wall_ms() -> int:
    return int(wall() * 1000)


def utc_now() -> dt.datetime:
    return dt.datetime.fromtimestamp(wall(), dt.UTC)
