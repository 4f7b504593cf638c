"""Where the connector keeps state shared across processes: the access token, the daily call count
and the organisation's rate window.

Each store is a small protocol with an in-memory implementation (tests, one-shot commands) and a
PostgreSQL one (tables of migration 0002). The daily count is reserved atomically in one statement,
so several processes sharing an organisation never spend more than the limit between them; the rate
window (migration 0004) is decided in one transaction per block of slots, on the organisation's row.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import math
import random
import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import psycopg

from connectors.zoho.window import (
    Block,
    Grant,
    Member,
    OrgRate,
    RateLimitedState,
    Reservation,
    decide,
    rate_limited,
    returned_block,
)


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

    async def reserve(self, organization_id: str, day: dt.date, limit: int, want: int) -> int:
        """Reserve up to `want` calls at once; returns how many were granted (0 when the day is spent)."""
        ...

    async def give_back(self, organization_id: str, day: dt.date, calls: int) -> None:
        """Return reserved calls that were never sent (a process closing with part of a block left)."""
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

    async def reserve(self, organization_id: str, day: dt.date, limit: int, want: int) -> int:
        row = self._days.setdefault((organization_id, day), [0, False])
        if row[1]:
            return 0
        granted = max(0, min(want, limit - row[0]))
        row[0] += granted
        return granted

    async def give_back(self, organization_id: str, day: dt.date, calls: int) -> None:
        row = self._days.get((organization_id, day))
        if row is not None:
            row[0] = max(0, row[0] - calls)

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

    async def reserve(self, organization_id: str, day: dt.date, limit: int, want: int) -> int:
        # The row is created if missing, then locked and grown by what is left of the day, in one statement.
        await self._execute(
            "INSERT INTO zoho_daily_budget (organization_id, day, calls) VALUES (%s, %s, 0)"
            " ON CONFLICT (organization_id, day) DO NOTHING",
            (organization_id, day),
        )
        rows = await self._execute(
            "UPDATE zoho_daily_budget b SET calls = b.calls + g.n, updated_at = now()"
            " FROM (SELECT GREATEST(0, LEAST(%s, %s - calls)) AS n FROM zoho_daily_budget"
            " WHERE organization_id = %s AND day = %s AND NOT exhausted FOR UPDATE) g"
            " WHERE b.organization_id = %s AND b.day = %s RETURNING g.n",
            (want, limit, organization_id, day, organization_id, day),
        )
        return int(rows[0][0]) if rows else 0

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

    async def mark_exhausted(self, organization_id: str, day: dt.date) -> None:
        await self._execute(
            "INSERT INTO zoho_daily_budget AS b (organization_id, day, calls, exhausted)"
            " VALUES (%s, %s, 0, true)"
            " ON CONFLICT (organization_id, day) DO UPDATE SET exhausted = true, updated_at = now()",
            (organization_id, day),
        )


# --- the organisation's shared rate window (connectors.zoho.window) ---------------------------------


class RateWindowStore(Protocol):
    """Where every process of an organisation reserves its send slots and permits (one clock: the store's)."""

    async def reserve(self, req: Reservation) -> Grant: ...

    async def rate_limited(
        self,
        organization_id: str,
        *,
        member: str = "",
        own_sends: int | None = None,
        reserved_age: float | None = None,
        sent_age: float,
        retry_after: float | None,
        max_rate: int,
        window: float,
        rng: random.Random,
    ) -> RateLimitedState: ...

    async def snapshot(self, organization_id: str, window: float, guard: float, max_rate: int) -> dict: ...
    async def leave(
        self, organization_id: str, member: str, returned: tuple[int, int, float] | None
    ) -> None: ...
    async def aclose(self) -> None: ...


def _snapshot(
    org: OrgRate | None, blocks: list[Block], members: list[Member], now: float, span: float, max_rate: int
) -> dict:
    org = org or OrgRate(float(max_rate), float(max_rate))
    live = sorted((m for m in members if m.lease_until > now), key=lambda m: m.member)
    return {
        "org_calls_this_window": sum(b.slots for b in blocks if b.last_at > now - span),
        "org_rate_per_window": math.floor(min(org.rate, max_rate)),
        "org_paused_for_seconds": round(max(0.0, org.paused_until - now), 3),
        "org_members": [
            {
                "member": m.member,
                "label": m.label,
                "permits": m.permits,
                "in_flight": m.in_flight,
                "demand": m.demand,
            }
            for m in live
        ],
    }


class MemoryRateWindowStore:
    """The shared window of one process only (tests, one-shot commands without PostgreSQL)."""

    def __init__(self) -> None:
        self._orgs: dict[str, OrgRate] = {}
        self._blocks: dict[str, list[Block]] = {}
        self._members: dict[str, dict[str, Member]] = {}
        self._ids = 0

    @staticmethod
    def _now() -> float:
        return time.monotonic()

    def _prune(self, organization_id: str, now: float, span: float) -> list[Block]:
        blocks = [b for b in self._blocks.get(organization_id, []) if b.last_at > now - span - 1.0]
        self._blocks[organization_id] = blocks
        return blocks

    async def reserve(self, req: Reservation) -> Grant:
        now = self._now()
        org_id = req.organization_id
        blocks = self._prune(org_id, now, req.window + req.guard)
        if req.returned is not None:
            block_id, used, idle = req.returned
            blocks[:] = [returned_block(b, used, idle, now) if b.id == block_id else b for b in blocks]
        org = self._orgs.get(org_id) or OrgRate(float(req.max_rate), float(req.max_rate))
        members = self._members.setdefault(org_id, {})
        decision = decide(org, blocks, list(members.values()), req, now)
        self._orgs[org_id] = decision.org
        members[req.member] = decision.member
        grant = decision.grant
        if decision.block is not None:
            self._ids += 1
            blocks.append(replace(decision.block, id=self._ids))
            grant = replace(grant, block_id=self._ids)
        return grant

    async def rate_limited(
        self,
        organization_id: str,
        *,
        member: str = "",
        own_sends: int | None = None,
        reserved_age: float | None = None,
        sent_age: float,
        retry_after: float | None,
        max_rate: int,
        window: float,
        rng: random.Random,
    ) -> RateLimitedState:
        now = self._now()
        org = self._orgs.get(organization_id) or OrgRate(float(max_rate), float(max_rate))
        org = rate_limited(
            org,
            self._blocks.get(organization_id, []),
            now=now,
            member=member,
            own_sends=own_sends,
            reserved_age=reserved_age,
            sent_age=sent_age,
            retry_after=retry_after,
            max_rate=max_rate,
            window=window,
            rng=rng,
        )
        self._orgs[organization_id] = org
        return RateLimitedState(org.rate, max(0.0, org.paused_until - now))

    async def snapshot(self, organization_id: str, window: float, guard: float, max_rate: int) -> dict:
        now = self._now()
        return _snapshot(
            self._orgs.get(organization_id),
            self._blocks.get(organization_id, []),
            list(self._members.get(organization_id, {}).values()),
            now,
            window + guard,
            max_rate,
        )

    async def leave(self, organization_id: str, member: str, returned: tuple[int, int, float] | None) -> None:
        now = self._now()
        self._members.get(organization_id, {}).pop(member, None)
        if returned is not None:
            block_id, used, idle = returned
            self._blocks[organization_id] = [
                returned_block(b, used, idle, now) if b.id == block_id else b
                for b in self._blocks.get(organization_id, [])
            ]

    async def aclose(self) -> None:
        return None


_NOW = "extract(epoch FROM clock_timestamp())::float8"


class PgRateWindowStore(_PgStore):
    """The shared window in PostgreSQL (migration 0004): each reservation is one short transaction that
    locks the organisation's row, so concurrent processes decide one after the other."""

    async def _transaction(self, work: Any) -> Any:
        async with self._lock:
            for attempt in (1, 2):
                if self._conn is None or self._conn.closed:
                    self._conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                try:
                    async with self._conn.transaction():
                        return await work(self._conn)
                except psycopg.OperationalError:
                    await self._conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise
        return None  # unreachable

    @staticmethod
    async def _load(
        conn: psycopg.AsyncConnection, organization_id: str, max_rate: int, span: float
    ) -> tuple[float, OrgRate, list[Block], list[Member]]:
        await conn.execute(
            "INSERT INTO zoho_rate_org (organization_id, rate, ceiling) VALUES (%s, %s, %s)"
            " ON CONFLICT (organization_id) DO NOTHING",
            (organization_id, float(max_rate), float(max_rate)),
        )
        cur = await conn.execute(
            f"SELECT {_NOW}, rate, ceiling, paused_until, last_decrease, episodes, next_send_at"  # noqa: S608
            " FROM zoho_rate_org WHERE organization_id = %s FOR UPDATE",
            (organization_id,),
        )
        row = await cur.fetchone()
        assert row is not None
        now = float(row[0])
        org = OrgRate(*(float(v) for v in row[1:5]), int(row[5]), float(row[6]))
        await conn.execute(
            "DELETE FROM zoho_rate_block WHERE organization_id = %s AND last_at < %s",
            (organization_id, now - span - 1.0),
        )
        await conn.execute(
            "DELETE FROM zoho_rate_member WHERE organization_id = %s AND lease_until < %s",
            (organization_id, now - 60.0),
        )
        cur = await conn.execute(
            "SELECT id, member, reserved_at, last_at, slots FROM zoho_rate_block WHERE organization_id = %s",
            (organization_id,),
        )
        blocks = [Block(int(i), m, float(r), float(la), int(s)) for i, m, r, la, s in await cur.fetchall()]
        cur = await conn.execute(
            "SELECT member, permits, demand, in_flight, lease_until, label FROM zoho_rate_member"
            " WHERE organization_id = %s",
            (organization_id,),
        )
        members = [
            Member(m, int(p), int(d), int(f), float(lu), lb) for m, p, d, f, lu, lb in await cur.fetchall()
        ]
        return now, org, blocks, members

    @staticmethod
    async def _save_org(conn: psycopg.AsyncConnection, organization_id: str, org: OrgRate) -> None:
        await conn.execute(
            "UPDATE zoho_rate_org SET rate = %s, ceiling = %s, paused_until = %s, last_decrease = %s,"
            " episodes = %s, next_send_at = %s, updated_at = now() WHERE organization_id = %s",
            (
                org.rate,
                org.ceiling,
                org.paused_until,
                org.last_decrease,
                org.episodes,
                org.next_send_at,
                organization_id,
            ),
        )

    @staticmethod
    async def _return(
        conn: psycopg.AsyncConnection, blocks: list[Block], returned: tuple[int, int, float], now: float
    ) -> None:
        block_id, used, idle = returned
        for b in blocks:
            if b.id == block_id:
                after = returned_block(b, used, idle, now)
                await conn.execute(
                    "UPDATE zoho_rate_block SET slots = %s, last_at = %s WHERE id = %s",
                    (after.slots, after.last_at, block_id),
                )
                blocks[blocks.index(b)] = after

    async def reserve(self, req: Reservation) -> Grant:
        async def work(conn: psycopg.AsyncConnection) -> Grant:
            now, org, blocks, members = await self._load(
                conn, req.organization_id, req.max_rate, req.window + req.guard
            )
            if req.returned is not None:
                await self._return(conn, blocks, req.returned, now)
            decision = decide(org, blocks, members, req, now)
            if decision.org != org:
                await self._save_org(conn, req.organization_id, decision.org)
            m = decision.member
            await conn.execute(
                "INSERT INTO zoho_rate_member AS t (organization_id, member, permits, demand, in_flight,"
                " lease_until, label) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (organization_id, member) DO UPDATE SET permits = EXCLUDED.permits,"
                " demand = EXCLUDED.demand, in_flight = EXCLUDED.in_flight,"
                " lease_until = EXCLUDED.lease_until,"
                " label = EXCLUDED.label",
                (req.organization_id, m.member, m.permits, m.demand, m.in_flight, m.lease_until, m.label),
            )
            grant = decision.grant
            if decision.block is not None:
                b = decision.block
                cur = await conn.execute(
                    "INSERT INTO zoho_rate_block (organization_id, member, reserved_at, last_at, slots)"
                    " VALUES (%s, %s, %s, %s, %s) RETURNING id",
                    (req.organization_id, b.member, b.reserved_at, b.last_at, b.slots),
                )
                row = await cur.fetchone()
                assert row is not None
                grant = replace(grant, block_id=int(row[0]))
            return grant

        return await self._transaction(work)

    async def rate_limited(
        self,
        organization_id: str,
        *,
        member: str = "",
        own_sends: int | None = None,
        reserved_age: float | None = None,
        sent_age: float,
        retry_after: float | None,
        max_rate: int,
        window: float,
        rng: random.Random,
    ) -> RateLimitedState:
        async def work(conn: psycopg.AsyncConnection) -> RateLimitedState:
            now, org, blocks, _ = await self._load(conn, organization_id, max_rate, window)
            after = rate_limited(
                org,
                blocks,
                now=now,
                member=member,
                own_sends=own_sends,
                reserved_age=reserved_age,
                sent_age=sent_age,
                retry_after=retry_after,
                max_rate=max_rate,
                window=window,
                rng=rng,
            )
            await self._save_org(conn, organization_id, after)
            return RateLimitedState(after.rate, max(0.0, after.paused_until - now))

        return await self._transaction(work)

    async def snapshot(self, organization_id: str, window: float, guard: float, max_rate: int) -> dict:
        async def work(conn: psycopg.AsyncConnection) -> dict:
            cur = await conn.execute(
                f"SELECT {_NOW}, rate, ceiling, paused_until, last_decrease, episodes, next_send_at"  # noqa: S608
                " FROM zoho_rate_org WHERE organization_id = %s",
                (organization_id,),
            )
            row = await cur.fetchone()
            if row is None:
                cur = await conn.execute(f"SELECT {_NOW}")  # noqa: S608
                now_row = await cur.fetchone()
                assert now_row is not None
                now, org = float(now_row[0]), None
            else:
                now = float(row[0])
                org = OrgRate(*(float(v) for v in row[1:5]), int(row[5]), float(row[6]))
            cur = await conn.execute(
                "SELECT id, member, reserved_at, last_at, slots FROM zoho_rate_block"
                " WHERE organization_id = %s",
                (organization_id,),
            )
            blocks = [
                Block(int(i), m, float(r), float(la), int(s)) for i, m, r, la, s in await cur.fetchall()
            ]
            cur = await conn.execute(
                "SELECT member, permits, demand, in_flight, lease_until, label FROM zoho_rate_member"
                " WHERE organization_id = %s",
                (organization_id,),
            )
            members = [
                Member(m, int(p), int(d), int(f), float(lu), lb)
                for m, p, d, f, lu, lb in await cur.fetchall()
            ]
            return _snapshot(org, blocks, members, now, window + guard, max_rate)

        return await self._transaction(work)

    async def leave(self, organization_id: str, member: str, returned: tuple[int, int, float] | None) -> None:
        async def work(conn: psycopg.AsyncConnection) -> None:
            await conn.execute(
                "DELETE FROM zoho_rate_member WHERE organization_id = %s AND member = %s",
                (organization_id, member),
            )
            if returned is not None:
                block_id, used, idle = returned
                await conn.execute(
                    f"UPDATE zoho_rate_block SET slots = LEAST(slots, %s),"  # noqa: S608
                    f" last_at = LEAST(last_at, GREATEST(reserved_at, {_NOW} - %s)) WHERE id = %s",
                    (used, idle, block_id),
                )

        await self._transaction(work)
