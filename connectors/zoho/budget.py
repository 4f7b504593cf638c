"""Spending the organisation's API budget: per-window pacing (AIMD on 429), concurrency and the daily cap.

`CallPacer` spaces sends evenly (`aiolimiter.AsyncLimiter(1, window / rate)`) and gates them with a
sliding log so that no `window_seconds + guard_seconds` interval ever holds more than `rate` sends. A
server counting any sliding window of `window_seconds` (the strictest reading of "per minute", and the
simulator's; a fixed-window counter never counts more) therefore sees at most `rate` calls, and at a
steady load exactly `rate`: the budget is used to the last call. The guard absorbs network jitter
between our send time and Zoho's arrival time. On a 429 the whole pacer pauses, the rate is capped
just under what the server refused and drops multiplicatively on repeated 429s; it then recovers
additively (+1 call per clean window).

`DailyBudget` reserves calls in the `DailyBudgetStore` (per UTC day) before they are sent, in blocks of
at most 1 % of the daily limit (`daily_block_size`, at most 50), so the count costs one database round
trip per block, not per call; a block left when the process closes is handed back, one left by a crash
is lost for that day only. When the day is spent, callers wait for the next UTC day instead of failing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import random
from collections import deque
from collections.abc import Callable

from aiolimiter import AsyncLimiter

from connectors.zoho.stores import DailyBudgetStore
from connectors.zoho.window import CEILING_PROBE_WINDOWS, DECREASE_FACTOR, MIN_RATE, RATE_RECOVERY_PER_WINDOW


class CallPacer:
    """Per-organisation send pacing with additive-increase / multiplicative-decrease on 429s."""

    def __init__(
        self,
        rate_per_window: int,
        window_seconds: float = 60.0,
        guard_seconds: float = 0.5,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.max_rate = float(rate_per_window)
        self.rate = self.max_rate
        self.ceiling = self.max_rate
        self.window = window_seconds
        self.guard = guard_seconds
        self._rng = rng or random.Random()
        self._lock = asyncio.Lock()
        self._slots = math.floor(self.rate)
        self._limiter = AsyncLimiter(1, self._interval())
        self._sent: deque[float] = deque(maxlen=int(self.max_rate) + 1)
        self._not_before = 0.0
        self._paused_until = 0.0
        self._last_decrease = -math.inf
        self._episodes = 0  # consecutive 429 episodes without a clean call in between
        self.wait_seconds = 0.0
        self.rate_limited_count = 0

    def _interval(self) -> float:
        # Even spacing at the full rate; the sliding log adds the guard once per window, so Zoho's
        # window sees exactly `rate` calls, never one more.
        return self.window / self._slots

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    async def _sleep_until(self, deadline: Callable[[], float]) -> None:
        # the deadline moves (pauses, rate changes), so re-read it after every sleep
        while (delay := deadline() - self._now()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)

    def _window_gate(self) -> float:
        """Earliest time the next send keeps at most `rate` sends in any window + guard."""
        if len(self._sent) < self._slots:
            return 0.0
        return self._sent[-self._slots] + self.window + self.guard

    async def acquire(self) -> float:
        """Wait for the next send slot (FIFO); returns the send time, to pass back with the reply."""
        start = self._now()
        async with self._lock:
            await self._sleep_until(lambda: max(self._paused_until, self._not_before, self._window_gate()))
            await self._limiter.acquire()
            # a 429 may have paused or slowed everyone while we waited on the limiter
            await self._sleep_until(lambda: max(self._paused_until, self._window_gate()))
            sent_at = self._now()
            self._sent.append(sent_at)
        self.wait_seconds += sent_at - start
        return sent_at

    def _set_rate(self, rate: float) -> None:
        self.rate = max(MIN_RATE, min(rate, self.max_rate))
        slots = max(1, math.floor(self.rate))
        if slots != self._slots:
            self._slots = slots
            self._limiter = AsyncLimiter(1, self._interval())
            if self._sent:
                self._not_before = self._sent[-1] + self._interval()

    def on_success(self, sent_at: float) -> None:
        """Additive increase: a fixed share of the configured rate per window of clean calls."""
        if sent_at <= self._last_decrease:
            return
        self._episodes = 0
        # `rate` successes make one window, so each adds 1/rate of the per-window step.
        self.ceiling = min(self.max_rate, self.ceiling + 1.0 / (self.rate * CEILING_PROBE_WINDOWS))
        self._set_rate(min(self.ceiling, self.rate + self.max_rate * RATE_RECOVERY_PER_WINDOW / self.rate))

    def on_rate_limited(self, sent_at: float, retry_after: float | None = None) -> None:
        """Pause everyone and slow down, once per episode (replies to calls sent before it are ignored)."""
        self.rate_limited_count += 1
        now = self._now()
        if retry_after is not None:
            self._paused_until = max(self._paused_until, now + retry_after)
        if sent_at <= self._last_decrease:
            return
        self._episodes += 1
        # The server refused the c-th call we sent in its window, so it allows at most c - 1 -- unless
        # we sent few calls (someone else shares the organisation), when only the decrease applies.
        inferred = sum(1 for t in self._sent if sent_at - self.window < t <= sent_at) - 1
        if inferred >= self.rate * DECREASE_FACTOR:
            self.ceiling = max(MIN_RATE, min(self.ceiling, inferred))
            first = self._episodes == 1
            self._set_rate(self.ceiling if first else min(self.ceiling, self.rate * DECREASE_FACTOR))
        else:
            self._set_rate(self.rate * DECREASE_FACTOR)
        if retry_after is None:
            backoff = min(self.window, self.window / 20 * 2 ** (self._episodes - 1))
            self._paused_until = max(self._paused_until, now + self._rng.uniform(backoff / 2, backoff))
        self._last_decrease = now

    def state(self) -> dict[str, object]:
        now = self._now()
        return {
            "rate_per_window": math.floor(self.rate),
            "rate": round(self.rate, 3),
            "ceiling": round(self.ceiling, 3),
            "configured_rate_per_window": int(self.max_rate),
            "window_seconds": self.window,
            "calls_this_window": sum(1 for t in self._sent if t > now - self.window),
            "paused_for_seconds": round(max(0.0, self._paused_until - now), 3),
            "rate_limited": self.rate_limited_count,
        }


def daily_block_size(limit: int) -> int:
    """Calls reserved per round trip: never more than 1 % of the day, so processes sharing the limit
    (and a crash, which loses its block) cost little of it; 1 for small limits (per-call counting)."""
    return max(1, min(50, limit // 100))


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class DailyBudget:
    """The organisation's calls per UTC day, counted in a store shared by every process."""

    def __init__(
        self,
        store: DailyBudgetStore,
        organization_id: str,
        limit: int,
        *,
        poll_seconds: float = 30.0,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self.store = store
        self.organization_id = organization_id
        self.limit = limit
        self.poll_seconds = poll_seconds
        self.clock = clock
        self._paused_day: dt.date | None = None
        self._last_count: tuple[dt.date, int] | None = None
        self.block_size = daily_block_size(limit)
        self._held: tuple[dt.date, int] | None = None  # calls reserved for a day and not sent yet
        self._lock = asyncio.Lock()
        self.reservations = 0  # round trips to the store that reserved calls

    def _seconds_to_next_day(self, now: dt.datetime) -> float:
        tomorrow = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        return max(0.0, (tomorrow - now).total_seconds())

    async def spend(self) -> float:
        """Reserve one call for today, waiting for the next UTC day if today's are spent; returns the wait."""
        waited = 0.0
        while True:
            now = self.clock()
            if self._take(now.date()):
                return waited
            async with self._lock:  # one reservation at a time; the others take from its block
                if self._take(now.date()):
                    return waited
                if self._held is not None and self._held[0] != now.date():
                    self._held = None  # yesterday's unsent calls no longer matter
                granted = await self.store.reserve(
                    self.organization_id, now.date(), self.limit, self.block_size
                )
                self.reservations += 1
                if granted:
                    self._held = (now.date(), granted)
                    self._paused_day = None
                    self._take(now.date())
                    return waited
            self._paused_day = now.date()
            pause = min(self.poll_seconds, max(0.01, self._seconds_to_next_day(now)))
            await asyncio.sleep(pause)
            waited += pause

    def _take(self, day: dt.date) -> bool:
        if self._held is None or self._held[0] != day or self._held[1] <= 0:
            return False
        self._held = (day, self._held[1] - 1)
        return True

    async def close(self) -> None:
        """Hand back the calls reserved and never sent, so the day's count stays what was sent."""
        held, self._held = self._held, None
        if held is not None and held[1] > 0:
            await self.store.give_back(self.organization_id, held[0], held[1])

    async def mark_exhausted(self) -> None:
        """Zoho said code 45: stop spending today even though our own count is not at the limit."""
        self._held = None
        await self.store.mark_exhausted(self.organization_id, self.clock().date())

    async def state(self) -> dict[str, object]:
        now = self.clock()
        calls, exhausted = await self.store.spent(self.organization_id, now.date())
        spent = exhausted or calls >= self.limit
        if self._held is not None and self._held[0] == now.date():
            calls -= self._held[1]  # reserved by this process, not sent yet
        resume = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        return {
            "day": now.date().isoformat(),
            "calls_today": calls,
            "daily_limit": self.limit,
            "paused_until": resume.isoformat() if spent else None,
        }
