"""The event loop every command runs on: uvloop (libuv under asyncio's API) where it is installed.

A backfill is CPU-bound in the event loop itself (socket callbacks of PostgreSQL, Kafka and Zoho
replies); uvloop's are cheaper. Without uvloop (Windows) asyncio's own loop runs the same code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on the project's event loop."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coroutine)
