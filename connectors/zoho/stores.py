"""Where the connector keeps state that must outlive one process: the access token and the daily call count.

Each store is a small protocol with an in-memory implementation (tests, one-shot commands) and a
PostgreSQL one (tables of migration 0002). The daily count is reserved atomically in one statement,
so several processes sharing an organisation never spend more than the limit between them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Protocol

import psycopg


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
    async def try_spend(self, organization_id: str, day: dt.date, limit: int) -> int | None:
        """Reserve one call; return the new count for the day, or None when the day's budget is spent."""
        ...

    async def spent(self, organization_id: str, day: dt.date) -> tuple[int, bool]:
        """Calls counted for the day, and whether Zoho declared the day exhausted."""
        ...

    async def mark_exhausted(self, organization_id: str, day: dt.date) -> None: ...
    async def aclose(self) -> None: ...


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
    def __init__(self) -> None:
        self._days: dict[tuple[str, dt.date], list] = {}

    async def try_spend(self, organization_id: str, day: dt.date, limit: int) -> int | None:
        row = self._days.setdefault((organization_id, day), [0, False])
        if row[1] or row[0] >= limit:
            return None
        row[0] += 1
        return row[0]

    async def spent(self, organization_id: str, day: dt.date) -> tuple[int, bool]:
        calls, exhausted = self._days.get((organization_id, day), [0, False])
        return calls, exhausted

    async def mark_exhausted(self, organization_id: str, day: dt.date) -> None:
        self._days.setdefault((organization_id, day), [0, False])[1] = True

    async def aclose(self) -> None:
        return None


class _PgStore:
    """One lazily opened autocommit connection, serialised by a lock and reopened after a failure."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._conn: psycopg.AsyncConnection | None = None
        self._lock = asyncio.Lock()

    async def _execute(self, sql: str, params: tuple) -> list[tuple]:
        async with self._lock:
            for attempt in (1, 2):
                if self._conn is None or self._conn.closed:
                    self._conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                try:
                    cur = await self._conn.execute(sql, params)  # type: ignore[arg-type]
                    return await cur.fetchall() if cur.description else []
                except psycopg.OperationalError:
                    await self._conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise
        return []  # unreachable

    async def aclose(self) -> None:
        async with self._lock:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None


class PgTokenStore(_PgStore):
    async def load(self, key: str) -> StoredToken | None:
        rows = await self._execute(
            "SELECT access_token, api_domain, extract(epoch FROM expires_at) FROM zoho_oauth_token"
            " WHERE token_key = %s",
            (key,),
        )
        if not rows:
            return None
        access_token, api_domain, expires_at = rows[0]
        return StoredToken(access_token, api_domain, float(expires_at))

    async def save(self, key: str, token: StoredToken) -> None:
        await self._execute(
            "INSERT INTO zoho_oauth_token (token_key, access_token, api_domain, expires_at)"
            " VALUES (%s, %s, %s, to_timestamp(%s))"
            " ON CONFLICT (token_key) DO UPDATE SET access_token = EXCLUDED.access_token,"
            " api_domain = EXCLUDED.api_domain, expires_at = EXCLUDED.expires_at, updated_at = now()",
            (key, token.access_token, token.api_domain, token.expires_at),
        )

    async def clear(self, key: str) -> None:
        await self._execute("DELETE FROM zoho_oauth_token WHERE token_key = %s", (key,))


class PgDailyBudgetStore(_PgStore):
    async def try_spend(self, organization_id: str, day: dt.date, limit: int) -> int | None:
        rows = await self._execute(
            "INSERT INTO zoho_daily_budget AS b (organization_id, day, calls) VALUES (%s, %s, 1)"
            " ON CONFLICT (organization_id, day) DO UPDATE SET calls = b.calls + 1, updated_at = now()"
            " WHERE b.calls < %s AND NOT b.exhausted"
            " RETURNING calls",
            (organization_id, day, limit),
        )
        return int(rows[0][0]) if rows else None

    async def spent(self, organization_id: str, day: dt.date) -> tuple[int, bool]:
        rows = await self._execute(
            "SELECT calls, exhausted FROM zoho_daily_budget WHERE organization_id = %s AND day = %s",
            (organization_id, day),
        )
        return (int(rows[0][0]), bool(rows[0][1])) if rows else (0, False)

    async def mark_exhausted(self, organization_id: str, day: dt.date) -> None:
        await self._execute(
            "INSERT INTO zoho_daily_budget AS b (organization_id, day, calls, exhausted)"
            " VALUES (%s, %s, 0, true)"
            " ON CONFLICT (organization_id, day) DO UPDATE SET exhausted = true, updated_at = now()",
            (organization_id, day),
        )
