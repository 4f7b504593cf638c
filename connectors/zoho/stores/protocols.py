"""What the connector's shared state stores promise: the access token, the daily count, the rate window.

Each is a small protocol with an in-memory implementation (`memory.py`: tests, one-shot commands) and a
PostgreSQL one (`postgres.py`, `postgres_window.py`) shared by every process of an organisation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Protocol

from connectors.zoho.limits.window import Grant, RateLimitedState, RateLimitReport, Reservation


@dataclass(frozen=True)
class StoredToken:
    """An access token with its absolute expiry (Unix seconds) and the API domain Zoho issued it for."""

    access_token: str = field(repr=False)
    api_domain: str
    expires_at: float


def token_key(accounts_url: str, client_id: str, refresh_token: str) -> str:
    """A stable key for one OAuth grant that does not reveal the refresh token."""
    digest = hashlib.sha256(f"{accounts_url}\0{client_id}\0{refresh_token}".encode()).hexdigest()
    return f"{client_id[:12]}:{digest[:24]}"


class TokenStore(Protocol):
    async def load(self, key: str) -> StoredToken | None: ...
    async def save(self, key: str, token: StoredToken) -> None: ...
    async def clear(self, key: str) -> None: ...
    async def aclose(self) -> None: ...


class DailyBudgetStore(Protocol):
    """The day is always the store's (UTC), one clock for every process, never the caller's own."""

    async def reserve(self, organization_id: str, limit: int, want: int) -> tuple[dt.datetime, int]:
        """Reserve up to `want` calls of the store's current day at once; returns the store's time (UTC)
        and how many were granted (0 when the day is spent)."""
        ...

    async def give_back(self, organization_id: str, day: dt.date, calls: int) -> None:
        """Return reserved calls that were never sent (a process closing with part of a block left)."""
        ...

    async def spent(self, organization_id: str, day: dt.date) -> tuple[int, bool]:
        """Calls counted for the day, and whether Zoho declared the day exhausted."""
        ...

    async def today(self, organization_id: str) -> tuple[dt.datetime, int, bool]:
        """The store's time (UTC), and its day's calls and exhausted flag."""
        ...

    async def mark_exhausted(self, organization_id: str) -> None:
        """Zoho declared the store's current day exhausted."""
        ...

    async def aclose(self) -> None: ...


class RateWindowStore(Protocol):
    """Where every process of an organisation reserves its send slots and permits (one clock: the store's)."""

    async def reserve(self, req: Reservation) -> Grant: ...
    async def rate_limited(self, report: RateLimitReport) -> RateLimitedState: ...
    async def snapshot(self, organization_id: str, window: float, guard: float, max_rate: int) -> dict: ...
    async def leave(
        self, organization_id: str, member: str, returned: tuple[int, int, float] | None
    ) -> None: ...
    async def aclose(self) -> None: ...
