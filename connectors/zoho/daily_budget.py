"""The organisation's daily call budget, counted per UTC day in a store shared by every process.

Calls are reserved before they are sent, in blocks of at most 1 % of the limit (one store round trip
per block); a block left at close is handed back, one left by a crash is lost for that day only. The
processes sharing an organisation never send more than the limit in a UTC day; then callers wait.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from connectors.zoho.stores.protocols import DailyBudgetStore


def daily_block_size(limit: int) -> int:
    """Calls reserved per round trip: never more than 1 % of the day, so processes sharing the limit
    (and a crash, which loses its block) cost little of it; 1 for small limits (per-call counting)."""
    return max(1, min(50, limit // 100))


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(eq=False)
class DailyBudget:
    """The organisation's calls per UTC day, counted in a store shared by every process."""

    store: DailyBudgetStore
    organization_id: str
    limit: int
    poll_seconds: float = field(default=30.0, kw_only=True)
    clock: Callable[[], dt.datetime] = field(default=utc_now, kw_only=True)
    reservations: int = field(default=0, init=False)  # round trips to the store that reserved calls
    _held: tuple[dt.date, int] | None = field(default=None, init=False)  # reserved for a day, not sent yet
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    @property
    def block_size(self) -> int:
        return daily_block_size(self.limit)

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
                    self._take(now.date())
                    return waited
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
