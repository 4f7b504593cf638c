"""The event loop every command runs on: uvloop (libuv under asyncio's API) where it is installed.

A backfill is CPU-bound in the event loop itself (socket callbacks of PostgreSQL, Kafka and Zoho
replies); uvloop's are cheaper. Without uvloop (Windows) asyncio's own loop runs the same code.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if os.environ.get("ZCDC_EVENT_LOOP") == "asyncio":  # asyncio's own loop, e.g. to rule uvloop out
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


# The cyclic garbage collector's young generation runs every 700 net container allocations by default;
# a backfill allocates millions (decoded rows, futures, rows of outcomes), so collections took 15 % of
# its CPU (measured on the 50,000-event backfill: 3.1 s of 18.5 s). With the start-up objects frozen out
# of every scan (`gc.freeze`) and these thresholds they take 1.2 s. Reference counting still frees
# almost everything at once; only reference cycles wait longer, which costs memory: (50_000, 50, 100)
# saved another 0.9 s but raised the backfill's peak RSS by 80 MB and a replay's by 110 MB; these
# thresholds cost about +30 MB in a replay and nothing measurable in the backfill.
GC_THRESHOLDS = (10_000, 10, 10)


def tune_garbage_collection() -> None:
    gc.collect()
    gc.freeze()  # modules, settings, registries: alive for the whole process, never worth a scan
    gc.set_threshold(*GC_THRESHOLDS)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on the project's event loop, with the collector tuned for a long-running pipeline."""
    tune_garbage_collection()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coroutine)
