"""One process's gate onto its organisation's shared rate window: `async with window.send() as sent_at`.

Waiters queue FIFO for a send slot and an in-flight permit, reserved from the `RateWindowStore` in blocks
(the rules are in `window.py`); `burst` spends what is left of the window as fast as permits allow, `even`
spaces sends `(window + guard) / rate` apart. A 429 seen by any process slows and pauses every process.
What the process holds between reservations (block, permits, pause, lease) is kept in `holding.Holding`.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import socket
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from connectors.zoho.limits.holding import HeldBlock, Holding, ReturnedBlock
from connectors.zoho.limits.window import Grant, PacingMode, RateLimitReport, Reservation


def member_name(rng: random.Random | None = None) -> str:
    """Unique per process: host, pid and a random tail (a restarted process is a new member); the tail
    from `rng` when given (a seeded client, as the simulation's, names its members the same every run)."""
    tail = f"{rng.getrandbits(24):06x}" if rng is not None else uuid.uuid4().hex[:6]
    return f"{socket.gethostname()[:24]}:{os.getpid()}:{tail}"


@dataclass
class WindowMetrics:
    reservations: int = 0  # store round trips, refused ones included
    grants: int = 0  # round trips that granted slots
    reserved_slots: int = 0
    wait_seconds: float = 0.0
    rate_limited: int = 0
    last: Grant | None = None
    lapsed_slots: int = 0  # slots given up because what ran before the send outlasted their block
    extra: dict[str, Any] = field(default_factory=dict)


class SharedWindow:
    """This process's gate onto the organisation's shared window: `async with window.send() as sent_at`."""

    PERMIT_POLL_SECONDS = 0.2
    MAX_SLEEP_SECONDS = 1.0
    IDLE_REPORT_SECONDS = 0.2

    def __init__(
        self,
        store: Any,
        organization_id: str,
        *,
        # no defaults for what the service's settings decide (`ZohoConfig`)
        rate_per_window: int,
        window_seconds: float,
        guard_seconds: float,
        concurrency: int,
        mode: PacingMode,
        block_size: int,
        block_seconds: float,
        member_lease: float = 10.0,
        call_seconds: float = 0.0,
        member: str | None = None,
        label: str = "",
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self._rng = rng or random.Random()
        # What every reservation of this process repeats; `_refresh` fills in what changes each time.
        self.terms = Reservation(
            organization_id,
            member or member_name(rng),
            want=0,
            demand=0,
            in_flight=0,
            max_rate=rate_per_window,
            window=window_seconds,
            guard=guard_seconds,
            concurrency=concurrency,
            mode=mode,
            block_seconds=block_seconds,
            member_lease=member_lease,
            call_seconds=call_seconds,
            label=label,
        )
        # At high rates (paid plans, an unlimited test sink) a block of 5 slots would cost a transaction per
        # 5 calls; up to 1 % of the window is reserved at once instead (never below the configured size).
        self.block_size = max(block_size, min(50, rate_per_window // 100))
        self.metrics = WindowMetrics()
        self.rate = float(rate_per_window)
        self._hold = Holding(fair_permits=concurrency)
        self._returned: ReturnedBlock | None = None
        self._in_flight = 0
        self._waiting = 0
        self._clean = 0
        self._refreshing = False
        self._idle_task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._queue = asyncio.Lock()
        self._sent: deque[float] = deque(maxlen=rate_per_window + 1)
        self._reserved_at: dict[float, float] = {}  # send time -> when its block was reserved
        self._taken: HeldBlock | None = None  # the block of the slot `_take` gave out last

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # --- the gate ------------------------------------------------------------------------------------

    @asynccontextmanager
    async def send(self, prepare: Callable[[], Awaitable[object]] | None = None) -> AsyncIterator[float]:
        """Hold one slot of the window and one in-flight permit while the call is made.

        `prepare` (what may wait once the slot is held: a token refresh, a durable intent) runs before the
        call goes out. A slot counts only until its block's end (`valid_until`): when `prepare` outlasts
        it, that slot stays counted, unsent (over-counting is safe), and the call takes a fresh slot, so
        no call goes out later than the block it is counted in. `prepare` must be safe to run again."""
        while True:
            sent_at = await self.acquire()
            block = self._taken
            try:
                if prepare is not None:
                    await prepare()
            except BaseException:
                self._slot_done(block, sent=False)
                self._release()
                raise
            if block is None or self._now() < block.valid_until:
                self._slot_done(block, sent=True)
                break
            self._slot_done(block, sent=False)
            self._reserved_at.pop(sent_at, None)
            self.metrics.lapsed_slots += 1
            self._release()
        try:
            yield sent_at
        finally:
            self._release()

    def _slot_done(self, block: HeldBlock | None, *, sent: bool) -> None:
        if block is not None:  # the call goes out now, maybe later than the slot was taken
            block.slot_done(self._now(), sent=sent)

    def _release(self) -> None:
        self._in_flight -= 1
        self._notify()
        if self._in_flight == 0 and self._waiting == 0 and self._idle_task is None:
            self._idle_task = asyncio.create_task(self._report_idle())

    async def _report_idle(self) -> None:
        """Out of work: hand back our permits and slots soon, so the other processes can use them."""
        try:
            await asyncio.sleep(self.IDLE_REPORT_SECONDS)
            if self._in_flight == 0 and self._waiting == 0 and not self._refreshing and self._hold.permits:
                await self._refresh()
        except Exception:  # noqa: BLE001, S110 - the lease runs out on its own
            pass
        finally:
            self._idle_task = None

    def open_now(self) -> bool:
        """True when a call asking now is not expected to wait for the rate window: no pause, and either a
        slot in hand that is due now or a last reservation granted in full, at once, with room left in the
        organisation's window. A hint only: it may still wait briefly for a permit or for another process."""
        return self._hold.open_now(self._now())

    def _take(self, now: float) -> bool:
        b = self._hold.slot_due(now, self._in_flight)
        if b is None:
            return False
        b.take(now)
        self._taken = b
        self._sent.append(now)
        self._reserved_at[now] = b.asked
        if len(self._reserved_at) > 4 * self.terms.max_rate + 100:  # calls that ended in other errors
            self._reserved_at.pop(next(iter(self._reserved_at)))
        self._in_flight += 1
        return True

    def _wants_refresh(self, now: float) -> bool:
        return not self._refreshing and self._hold.wants_refresh(now, self._waiting, self._in_flight)

    async def acquire(self) -> float:
        """Wait for a send slot and a permit; returns the send time (the loop's clock)."""
        started = self._now()
        self._waiting += 1
        try:
            # Waiters queue FIFO and only the first one watches the window: a thousand waiters each woken
            # by every reply would spend the CPU the calls need (measured: 15 calls/s instead of hundreds).
            async with self._queue:
                while True:
                    now = self._now()
                    if self._take(now):
                        self.metrics.wait_seconds += now - started
                        return now
                    if self._wants_refresh(now):
                        await self._refresh()
                        continue
                    changed = self._changed
                    try:
                        next_check = self._hold.next_check(now, self.MAX_SLEEP_SECONDS)
                        await asyncio.wait_for(changed.wait(), max(0.001, next_check - now))
                    except TimeoutError:
                        pass
        finally:
            self._waiting -= 1

    async def _refresh(self) -> None:
        self._refreshing = True
        try:
            want = self._give_up_block(self._now())
            req = replace(
                self.terms,
                want=want,
                demand=self._waiting + self._in_flight,
                in_flight=self._in_flight,
                clean=self._clean,
                returned=self._returned,
            )
            asked = self._now()
            grant: Grant = await self.store.reserve(req)
            self._clean = 0
            self._returned = None
            replied = self._now()
            self._count(grant)
            self.rate = grant.rate
            self._hold.absorb(
                grant,
                want=want,
                asked=asked,
                replied=replied,
                lease=self.terms.member_lease,
                permit_poll=self.PERMIT_POLL_SECONDS,
            )
        finally:
            self._refreshing = False
            self._notify()

    def _give_up_block(self, now: float) -> int:
        """Before a reservation: hand back the block when no call waits, drop it when spent or lapsed;
        how many slots to ask for (none while the block in hand is still usable or nothing waits)."""
        hold = self._hold
        if self._waiting == 0 and hold.block is not None and hold.block.id is not None:
            self._returned = hold.hand_back(now)
            return 0
        if hold.usable(now):
            return 0
        self._returned = hold.hand_back(now) or self._returned
        hold.block = None
        return min(self.block_size, max(self._waiting, 0))

    def _count(self, grant: Grant) -> None:
        self.metrics.reservations += 1
        self.metrics.reserved_slots += grant.slots
        self.metrics.grants += 1 if grant.slots else 0
        self.metrics.last = grant

    # --- what the replies teach ------------------------------------------------------------------------

    def on_success(self, sent_at: float) -> None:
        if self._reserved_at.pop(sent_at, sent_at) > self._hold.last_decrease:
            self._clean += 1

    async def on_rate_limited(self, sent_at: float, retry_after: float | None = None) -> None:
        self.metrics.rate_limited += 1
        hold = self._hold
        hold.window_open = False
        now = self._now()
        hold.last_decrease = max(hold.last_decrease, now)
        own = sum(1 for t in self._sent if sent_at - self.terms.window < t <= sent_at)
        reserved = self._reserved_at.pop(sent_at, sent_at)
        self._returned = hold.hand_back(now) or self._returned  # stop spending slots reserved before it
        report = RateLimitReport(
            self.terms.organization_id,
            sent_age=now - sent_at,
            retry_after=retry_after,
            max_rate=self.terms.max_rate,
            window=self.terms.window,
            rng=self._rng,
            member=self.terms.member,
            own_sends=own,
            reserved_age=now - reserved,
        )
        org = await self.store.rate_limited(report)
        self.rate = org.rate
        hold.paused_until = max(hold.paused_until, self._now() + max(0.0, org.paused_for))
        hold.slot_refresh_at = hold.paused_until
        self._notify()

    # --- views and lifecycle ---------------------------------------------------------------------------

    def state(self) -> dict[str, object]:
        now = self._now()
        return {
            "rate_per_window": math.floor(self.rate),
            "rate": round(self.rate, 3),
            "configured_rate_per_window": self.terms.max_rate,
            "window_seconds": self.terms.window,
            "pacing": self.terms.mode,
            "permits": self._hold.permits,
            "in_flight": self._in_flight,
            "paused_for_seconds": round(max(0.0, self._hold.paused_until - now), 3),
            "rate_limited": self.metrics.rate_limited,
        }

    async def shared_state(self) -> dict[str, object]:
        """The organisation's window as every process sees it (calls this window, members, rate)."""
        return await self.store.snapshot(
            self.terms.organization_id, self.terms.window, self.terms.guard, self.terms.max_rate
        )

    async def aclose(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
        b = self._hold.block
        returned = b.handed_back(self._now()) if b is not None and b.id is not None else None
        try:
            await self.store.leave(self.terms.organization_id, self.terms.member, returned)
        except Exception:  # noqa: BLE001 - a lease left behind expires on its own
            pass
