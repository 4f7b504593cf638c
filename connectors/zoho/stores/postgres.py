"""The access token and the daily call count in PostgreSQL (tables of migration 0002), shared by processes.

The daily count is reserved atomically in one statement, so several processes sharing an organisation
never spend more than the limit between them. Every store holds one lazily opened connection,
serialised by a lock and reopened once after a connection failure.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg

from connectors.zoho.stores.protocols import StoredToken

T = TypeVar("T")


class PgStore:
    """One lazily opened autocommit connection, serialised by a lock and reopened after a failure."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._conn: psycopg.AsyncConnection | None = None
        self._lock = asyncio.Lock()

    async def _with_connection(self, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        async with self._lock:
            for attempt in (1, 2):
                if self._conn is None or self._conn.closed:
                    self._conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                try:
                    return await work(self._conn)
                except psycopg.OperationalError:
                    await self._conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def _execute(self, sql: str, params: tuple) -> list[tuple]:
        async def run(conn: psycopg.AsyncConnection) -> list[tuple]:
            cur = await conn.execute(sql, params)  # type: ignore[arg-type]
            return await cur.fetchall() if cur.description else []

        return await self._with_connection(run)

    async def _transaction(self, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        async def run(conn: psycopg.AsyncConnection) -> T:
            async with conn.transaction():
                return await work(conn)

        return await self._with_connection(run)

    async def aclose(self) -> None:
        async with self._lock:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None


class PgTokenStore(PgStore):
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


class PgDailyBudgetStore(PgStore):
    """The daily count on the database's clock: the day is `now() AT TIME ZONE 'UTC'` for every process,
    whatever each host's own clock says (`clock` replaces it in tests that turn the day)."""

    def __init__(self, database_url: str, *, clock: Callable[[], dt.datetime] | None = None) -> None:
        super().__init__(database_url)
        self._clock = clock

    def _now_sql(self) -> tuple[str, tuple]:
        """The SQL for the store's time (a UTC timestamp) and its parameters."""
        if self._clock is None:
            return "now() AT TIME ZONE 'UTC'", ()
        return "%s::timestamp", (self._clock().astimezone(dt.UTC).replace(tzinfo=None),)

    async def reserve(self, organization_id: str, limit: int, want: int) -> tuple[dt.datetime, int]:
        # Today's row is created if missing (and today read, once, from the database's clock), then locked
        # and grown by what is left of that day: two statements, as before the day came from the database.
        now_sql, now_params = self._now_sql()
        rows = await self._execute(
            f"WITH t AS (SELECT {now_sql} AS at), made AS ("  # noqa: S608 - no input in the SQL text
            " INSERT INTO zoho_daily_budget (organization_id, day, calls) SELECT %s, at::date, 0 FROM t"
            " ON CONFLICT (organization_id, day) DO NOTHING) SELECT at FROM t",
            (*now_params, organization_id),
        )
        now = rows[0][0].replace(tzinfo=dt.UTC)
        day = now.date()
        rows = await self._execute(
            "UPDATE zoho_daily_budget b SET calls = b.calls + g.n, updated_at = now()"
            " FROM (SELECT GREATEST(0, LEAST(%s, %s - calls)) AS n FROM zoho_daily_budget"
            " WHERE organization_id = %s AND day = %s AND NOT exhausted FOR UPDATE) g"
            " WHERE b.organization_id = %s AND b.day = %s RETURNING g.n",
            (want, limit, organization_id, day, organization_id, day),
        )
        return now, int(rows[0][0]) if rows else 0

    async def give_back(self, organization_id: str, day: dt.date, calls: int) -> None:
        await self._execute(
            "UPDATE zoho_daily_budget SET calls = GREATEST(0, calls - %s), updated_at = now()"
            " WHERE organization_id = %s AND day = %s",
            (calls, organization_id, day),
        )

    async def spent(self, organization_id: str, day: dt.date) -> tuple[int, bool]:
        rows = await self._execute(
            "SELECT calls, exhausted FROM zoho_daily_budget WHERE organization_id = %s AND day = %s",
            (organization_id, day),
        )
        return (int(rows[0][0]), bool(rows[0][1])) if rows else (0, False)

    async def today(self, organization_id: str) -> tuple[dt.datetime, int, bool]:
        now_sql, now_params = self._now_sql()
        rows = await self._execute(
            f"SELECT t.at, coalesce(b.calls, 0), coalesce(b.exhausted, false)"  # noqa: S608
            f" FROM (SELECT {now_sql} AS at) t LEFT JOIN zoho_daily_budget b"
            " ON b.organization_id = %s AND b.day = t.at::date",
            (*now_params, organization_id),
        )
        at, calls, exhausted = rows[0]
        return at.replace(tzinfo=dt.UTC), int(calls), bool(exhausted)

    async def mark_exhausted(self, organization_id: str) -> None:
        now_sql, now_params = self._now_sql()
        await self._execute(
            "INSERT INTO zoho_daily_budget AS b (organization_id, day, calls, exhausted)"
            f" SELECT %s, ({now_sql})::date, 0, true"  # noqa: S608
            " ON CONFLICT (organization_id, day) DO UPDATE SET exhausted = true, updated_at = now()",
            (organization_id, *now_params),
        )
