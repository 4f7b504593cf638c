"""Writes Zoho must not apply twice, and the steps before them, done at most once.

`at_most_once` makes a step (a durable create intent) idempotent; `create_once` looks a record up by its
natural key after any failure that may hide a success before it creates again; `settle_write` sends a
status write again only after reading that Zoho does not show its effect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from connectors.zoho import errors, tracking
from connectors.zoho.wire.retry import RetryPolicy

BeforeSend = Callable[[], Awaitable[None]]


def in_turn(*steps: BeforeSend | None) -> BeforeSend | None:
    """The steps given, run one after another (None: there are none)."""
    present = [step for step in steps if step is not None]
    if len(present) < 2:
        return present[0] if present else None

    async def run() -> None:
        for step in present:
            await step()

    return run


def at_most_once(step: BeforeSend | None) -> BeforeSend | None:
    """`step` made idempotent: the first call runs it, later calls return at once."""
    if step is None or getattr(step, "_runs_once", False):
        return step
    done = False

    async def run() -> None:
        nonlocal done
        if not done:
            await step()
            done = True

    run._runs_once = True  # type: ignore[attr-defined]
    return run


async def create_once(create: Any, lookup: Any, *, attempts: int) -> dict[str, Any]:
    """`create`, made at most once: after a failure that may hide a success (in doubt, a transient
    failure, a duplicate), `lookup` finds the record by its natural key before any new create."""
    last: errors.ZohoError | None = None
    for _ in range(attempts):
        if last is not None:
            try:
                found = await lookup()
            except errors.TransientError as exc:
                last = exc
                continue
            if found is not None:
                return found
            if isinstance(last, errors.Duplicate):
                raise last  # it exists under another key: not ours to adopt
        try:
            return await create()
        except (errors.TransientError, errors.InDoubt, errors.Duplicate) as exc:
            last = exc
    assert last is not None
    raise last


async def settle_write(
    send: Any, applied: Any, *, attempts: int, policy: RetryPolicy, metrics: tracking.ClientMetrics
) -> dict[str, Any]:
    """A write Zoho must not receive twice (a status call), sent until Zoho shows its effect.

    After an in-doubt reply nothing is sent again before `applied()` has read what Zoho holds: when it
    returns a record, the effect is there and that record is the result; when None, the write did not
    happen and is sent again (after the policy's back-off), within `attempts`."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await send()
        except errors.InDoubt as doubt:
            settled = await applied()
            if settled is not None:
                return settled
            if attempt >= attempts:
                raise doubt
            metrics.retries += 1
            await asyncio.sleep(policy.backoff(attempt))
