"""A per-process send pacer for one organisation: even spacing, a sliding-log gate and AIMD on 429s.

Sends are spaced `window / rate` apart and no `window + guard` interval ever holds more than `rate` of
them, so a server counting any sliding window sees at most `rate` calls (exactly `rate` at a steady load).
It is the one-process form of the rule the shared window applies across processes (`aimd`).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import deque
from collections.abc import Callable

from aiolimiter import AsyncLimiter

from connectors.zoho.limits.aimd import MIN_RATE, decrease, next_episode, pause_seconds, recover


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
        rate, self.ceiling = recover(self.rate, self.ceiling, self.max_rate)
        self._set_rate(rate)

    def on_rate_limited(self, sent_at: float, retry_after: float | None = None) -> None:
        """Pause everyone and slow down, once per episode (replies to calls sent before it are ignored)."""
        self.rate_limited_count += 1
        now = self._now()
        if retry_after is not None:
            self._paused_until = max(self._paused_until, now + retry_after)
        if sent_at <= self._last_decrease:
            return
        self._episodes = next_episode(self._episodes, now - self._last_decrease, self.window)
        inferred = sum(1 for t in self._sent if sent_at - self.window < t <= sent_at) - 1
        rate, self.ceiling = decrease(self.rate, self.ceiling, inferred, self._episodes)
        self._set_rate(rate)
        if retry_after is None:
            pause = pause_seconds(self.window, self._episodes, self._rng)
            self._paused_until = max(self._paused_until, now + pause)
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
