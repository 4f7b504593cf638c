"""The organisation's shared rate window in PostgreSQL (migration 0004), one row lock per decision.

Each reservation, 429 report or departure is one short transaction that locks the organisation's row,
so concurrent processes decide one after the other, on the database's clock; the decisions themselves
are the pure rules of `connectors.zoho.limits.window`, so this module only loads and saves their values.
"""

from __future__ import annotations

from dataclasses import replace

import psycopg

from connectors.zoho.limits import window as rules
from connectors.zoho.stores.postgres import PgStore

_NOW = "extract(epoch FROM clock_timestamp())::float8"
_ORG_ROW = (
    f"SELECT {_NOW}, rate, ceiling, paused_until, last_decrease, episodes, next_send_at"  # noqa: S608
    " FROM zoho_rate_org WHERE organization_id = %s"
)


async def _read_org(
    conn: psycopg.AsyncConnection, organization_id: str, *, lock: bool
) -> tuple[float, rules.OrgRate | None]:
    """The database's now, and the organisation's rate row (locked for this transaction when `lock`)."""
    cur = await conn.execute(_ORG_ROW + (" FOR UPDATE" if lock else ""), (organization_id,))
    row = await cur.fetchone()
    if row is None:
        cur = await conn.execute(f"SELECT {_NOW}")  # noqa: S608
        now_row = await cur.fetchone()
        assert now_row is not None
        return float(now_row[0]), None
    return float(row[0]), rules.OrgRate(
        float(row[1]), float(row[2]), float(row[3]), float(row[4]), int(row[5]), float(row[6])
    )


async def _read_blocks_and_members(
    conn: psycopg.AsyncConnection, organization_id: str
) -> tuple[list[rules.Block], list[rules.Member]]:
    cur = await conn.execute(
        "SELECT id, member, reserved_at, last_at, slots FROM zoho_rate_block WHERE organization_id = %s",
        (organization_id,),
    )
    blocks = [rules.Block(int(i), m, float(r), float(la), int(s)) for i, m, r, la, s in await cur.fetchall()]
    cur = await conn.execute(
        "SELECT member, permits, demand, in_flight, lease_until, label FROM zoho_rate_member"
        " WHERE organization_id = %s",
        (organization_id,),
    )
    members = [
        rules.Member(m, int(p), int(d), int(f), float(lu), lb) for m, p, d, f, lu, lb in await cur.fetchall()
    ]
    return blocks, members


class PgRateWindowStore(PgStore):
    """The shared window in PostgreSQL (migration 0004): each reservation is one short transaction that
    locks the organisation's row, so concurrent processes decide one after the other."""

    @staticmethod
    async def _load(
        conn: psycopg.AsyncConnection,
        organization_id: str,
        max_rate: int,
        span: float,
        call_seconds: float = 0.0,
    ) -> tuple[float, rules.OrgRate, list[rules.Block], list[rules.Member]]:
        await conn.execute(
            "INSERT INTO zoho_rate_org (organization_id, rate, ceiling) VALUES (%s, %s, %s)"
            " ON CONFLICT (organization_id) DO NOTHING",
            (organization_id, float(max_rate), float(max_rate)),
        )
        now, org = await _read_org(conn, organization_id, lock=True)
        assert org is not None  # the row was inserted above
        await conn.execute(
            "DELETE FROM zoho_rate_block WHERE organization_id = %s AND last_at < %s",
            (organization_id, now - span - 1.0),
        )
        await conn.execute(
            "DELETE FROM zoho_rate_member WHERE organization_id = %s AND lease_until < %s",
            (organization_id, now - max(60.0, call_seconds)),  # kept while its permits still count
        )
        blocks, members = await _read_blocks_and_members(conn, organization_id)
        return now, org, blocks, members

    @staticmethod
    async def _save_org(conn: psycopg.AsyncConnection, organization_id: str, org: rules.OrgRate) -> None:
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
        conn: psycopg.AsyncConnection, blocks: list[rules.Block], returned: tuple[int, int, float], now: float
    ) -> None:
        block_id, used, idle = returned
        for b in blocks:
            if b.id == block_id:
                after = rules.returned_block(b, used, idle, now)
                await conn.execute(
                    "UPDATE zoho_rate_block SET slots = %s, last_at = %s WHERE id = %s",
                    (after.slots, after.last_at, block_id),
                )
                blocks[blocks.index(b)] = after

    async def reserve(self, req: rules.Reservation) -> rules.Grant:
        async def work(conn: psycopg.AsyncConnection) -> rules.Grant:
            now, org, blocks, members = await self._load(
                conn, req.organization_id, req.max_rate, req.window + req.guard, req.call_seconds
            )
            if req.returned is not None:
                await self._return(conn, blocks, req.returned, now)
            decision = rules.decide(org, blocks, members, req, now)
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

    async def rate_limited(self, report: rules.RateLimitReport) -> rules.RateLimitedState:
        async def work(conn: psycopg.AsyncConnection) -> rules.RateLimitedState:
            now, org, blocks, _ = await self._load(
                conn, report.organization_id, report.max_rate, report.window
            )
            after = rules.rate_limited(org, blocks, report, now)
            await self._save_org(conn, report.organization_id, after)
            return rules.RateLimitedState(after.rate, max(0.0, after.paused_until - now))

        return await self._transaction(work)

    async def snapshot(self, organization_id: str, window: float, guard: float, max_rate: int) -> dict:
        async def work(conn: psycopg.AsyncConnection) -> dict:
            now, org = await _read_org(conn, organization_id, lock=False)
            blocks, members = await _read_blocks_and_members(conn, organization_id)
            return rules.shared_view(org, blocks, members, now, window + guard, max_rate)

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
