"""The shared-state stores kept in this process's memory: for tests and one-shot commands.

They keep the protocols' promises for one process only (nothing is shared with another process and
nothing survives a restart); the window rules themselves are the same pure functions PostgreSQL runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace

from connectors.clock import monotonic, utc_now
from connectors.zoho.limits.window import (
    Block,
    Grant,
    Member,
    OrgRate,
    RateLimitedState,
    RateLimitReport,
    Reservation,
    decide,
    rate_limited,
    returned_block,
    shared_view,
)
from connectors.zoho.stores.protocols import StoredToken


class MemoryTokenStore:
    def __init__(self) -> None:
        self._tokens: dict[str, StoredToken] = {}

    async def load(self, key: str) -> StoredToken | None:
        return self._tokens.get(key)

    async def save(self, key: str, token: StoredToken) -> None:
        self._tokens[key] = token

    async def clear(self, key: str) -> None:
        self._tokens.pop(key, None)

    async def aclose(self) -> None:
        return None


class MemoryDailyBudgetStore:
    """One process's daily count, on its own clock (there is no other process to agree with): the running
    loop's wall clock unless `clock` replaces it."""

    def __init__(self, clock: Callable[[], dt.datetime] | None = None) -> None:
        self._days: dict[tuple[str, dt.date], list] = {}  # (org, day) -> [calls, exhausted]
        self._clock = clock or utc_now

    async def reserve(self, organization_id: str, limit: int, want: int) -> tuple[dt.datetime, int]:
        now = self._clock()
        row = self._days.setdefault((organization_id, now.date()), [0, False])
        if row[1]:
            return now, 0
        granted = max(0, min(want, limit - row[0]))
        row[0] += granted
        return now, granted

    async def give_back(self, organization_id: str, day: dt.date, calls: int) -> None:
        row = self._days.get((organization_id, day))
        if row is not None:
            row[0] = max(0, row[0] - calls)

    async def spent(self, organization_id: str, day: dt.date) -> tuple[int, bool]:
        calls, exhausted = self._days.get((organization_id, day), [0, False])
        return calls, exhausted

    async def today(self, organization_id: str) -> tuple[dt.datetime, int, bool]:
        now = self._clock()
        calls, exhausted = await self.spent(organization_id, now.date())
        return now, calls, exhausted

    async def mark_exhausted(self, organization_id: str) -> None:
        self._days.setdefault((organization_id, self._clock().date()), [0, False])[1] = True

    async def aclose(self) -> None:
        return None


class MemoryRateWindowStore:
    """The shared window of one process only (tests, one-shot commands without PostgreSQL)."""

    def __init__(self) -> None:
        self._orgs: dict[str, OrgRate] = {}
        self._blocks: dict[str, list[Block]] = {}
        self._members: dict[str, dict[str, Member]] = {}
        self._ids = 0

    @staticmethod
    def _now() -> float:
        return monotonic()

    def _org(self, organization_id: str, max_rate: int) -> OrgRate:
        return self._orgs.get(organization_id) or OrgRate(float(max_rate), float(max_rate))

    def _hand_back(self, organization_id: str, returned: tuple[int, int, float] | None, now: float) -> None:
        if returned is None:
            return
        block_id, used, idle = returned
        self._blocks[organization_id] = [
            returned_block(b, used, idle, now) if b.id == block_id else b
            for b in self._blocks.get(organization_id, [])
        ]

    async def reserve(self, req: Reservation) -> Grant:
        now = self._now()
        org_id = req.organization_id
        span = req.window + req.guard
        self._blocks[org_id] = [b for b in self._blocks.get(org_id, []) if b.last_at > now - span - 1.0]
        self._hand_back(org_id, req.returned, now)
        blocks = self._blocks[org_id]
        members = self._members.setdefault(org_id, {})
        decision = decide(self._org(org_id, req.max_rate), blocks, list(members.values()), req, now)
        self._orgs[org_id] = decision.org
        members[req.member] = decision.member
        grant = decision.grant
        if decision.block is not None:
            self._ids += 1
            blocks.append(replace(decision.block, id=self._ids))
            grant = replace(grant, block_id=self._ids)
        return grant

    async def rate_limited(self, report: RateLimitReport) -> RateLimitedState:
        now = self._now()
        org_id = report.organization_id
        org = rate_limited(self._org(org_id, report.max_rate), self._blocks.get(org_id, []), report, now)
        self._orgs[org_id] = org
        return RateLimitedState(org.rate, max(0.0, org.paused_until - now))

    async def snapshot(self, organization_id: str, window: float, guard: float, max_rate: int) -> dict:
        return shared_view(
            self._orgs.get(organization_id),
            self._blocks.get(organization_id, []),
            list(self._members.get(organization_id, {}).values()),
            self._now(),
            window + guard,
            max_rate,
        )

    async def leave(self, organization_id: str, member: str, returned: tuple[int, int, float] | None) -> None:
        self._members.get(organization_id, {}).pop(member, None)
        self._hand_back(organization_id, returned, self._now())

    async def aclose(self) -> None:
        return None
