"""The organisation's daily call budget, counted per UTC day in a store shared by every process.

Calls are reserved before they are sent, in blocks of at most 1 % of the limit (one store round trip
per block); a block left at close is handed back, one left by a crash is lost for that day only. The
processes sharing an organisation never send more than the limit in a UTC day; then callers wait. The
day is the store's (PostgreSQL's clock), never a host's: hosts whose clocks disagree count one day.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field

from connectors.zoho.stores.protocols import DailyBudgetStore


def daily_block_size(limit: int) -> int:
    """Calls reserved per round trip: never more than 1 % of the day, so processes sharing the limit
    (and a crash, which loses its block) cost little of it; 1 for small limits (per-call counting)."""
    return max(1, min(50, limit // 100))


@dataclass
class _Held:
    """Calls reserved for the store's `day` and not sent yet; usable until that day ends (`until`, this
    process's monotonic clock, measured from the store's time: no host's calendar clock is read)."""

    day: dt.date
    left: int
    until: float


def seconds_to_next_day(now: dt.datetime) -> float:
    tomorrow = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    return max(0.0, (tomorrow - now).total_seconds())


@dataclass(eq=False)
class DailyBudget:
    """The organisation's calls per UTC day, counted in a store shared by every process, on its clock."""

    store: DailyBudgetStore
    organization_id: str
    limit: int
    poll_seconds: float = field(default=30.0, kw_only=True)
    reservations: int = field(default=0, init=False)  # round trips to the store that reserved calls
    _held: _Held | None = field(default=None, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    @property
    def block_size(self) -> int:
        return daily_block_size(self.limit)

    @staticmethod
    def _monotonic() -> float:
        return asyncio.get_running_loop().time()

    async def spend(self) -> float:
        """Reserve one call for the store's today, waiting for its next UTC day if today's are spent;
        returns the wait."""
        waited = 0.0
        while True:
            if self._take():
                return waited
            async with self._lock:  # one reservation at a time; the others take from its block
                if self._take():
                    return waited
                asked = self._monotonic()
                now, granted = await self.store.reserve(self.organization_id, self.limit, self.block_size)
                self.reservations += 1
                # yesterday's unsent calls no longer matter; the new block lasts to the store's midnight
                self._held = _Held(now.date(), granted, asked + seconds_to_next_day(now)) if granted else None
                if self._take():
                    return waited
            pause = min(self.poll_seconds, max(0.01, seconds_to_next_day(now)))
            await asyncio.sleep(pause)
            waited += pause

    def _take(self) -> bool:
        held = self._held
        if held is None or held.left <= 0 or self._monotonic() >= held.until:
            return False
        held.left -= 1
        return True

    async def close(self) -> None:
        """Hand back the calls reserved and never sent, so the day's count stays what was sent."""
        held, self._held = self._held, None
        if held is not None and held.left > 0:
            await self.store.give_back(self.organization_id, held.day, held.left)

    async def mark_exhausted(self) -> None:
        """Zoho said code 45: stop spending today even though our own count is not at the limit."""
        self._held = None
        await self.store.mark_exhausted(self.organization_id)

    async def state(self) -> dict[str, object]:
        now, calls, exhausted = await self.store.today(self.organization_id)
        spent = exhausted or calls >= self.limit
        if self._held is not None and self._held.day == now.date():
            calls -= self._held.left  # reserved by this process, not sent yet
        resume = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        return {
            "day": now.date().isoformat(),
            "calls_today": calls,
            "daily_limit": self.limit,
            "paused_until": resume.isoformat() if spent else None,
        }
