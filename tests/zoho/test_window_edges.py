"""The shared window's edges (issue 23 i): a permit counts as long as a call it covers can last, and a
call never goes out later than the block its slot is counted in."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import types

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.zoho import PgDailyBudgetStore, ZohoClient
from connectors.zoho.limits import daily_budget
from connectors.zoho.limits.holding import HeldBlock
from connectors.zoho.limits.window import Block, Member, OrgRate, Reservation, decide, returned_block
from connectors.zoho_sim import SimLimits
from consumer.migrations import migrate
from consumer.service.zoho_config import zoho_config
from tests.fixtures_zoho import settings_for
from tests.zoho.conftest import customer_payload

LEASE = 10.0
CALL_SECONDS = 37.0  # a 30 s read + a 5 s connect + the margin


def _ask(member: str, demand: int, in_flight: int, call_seconds: float = CALL_SECONDS) -> Reservation:
    return Reservation(
        "org",
        member,
        want=0,
        demand=demand,
        in_flight=in_flight,
        max_rate=100,
        window=60,
        guard=0.5,
        concurrency=5,
        member_lease=LEASE,
        call_seconds=call_seconds,
    )


def test_permits_of_a_lapsed_lease_count_until_the_calls_they_cover_can_have_ended():
    # `a` took all 5 permits at 0 and started 5 calls just before its lease ran out (at 10); a read may
    # take 30 s, so those calls may be in flight until 10 + 37
    a = decide(OrgRate(100, 100), [], [], _ask("a", demand=5, in_flight=0), now=0.0).member
    assert a.permits == 5 and a.lease_until == LEASE
    for now in (12.0, 30.0, LEASE + CALL_SECONDS - 0.01):
        assert decide(OrgRate(100, 100), [], [a], _ask("b", 5, 0), now=now).grant.permits == 0
    after = decide(OrgRate(100, 100), [], [a], _ask("b", 5, 0), now=LEASE + CALL_SECONDS + 0.01)
    assert after.grant.permits == 5
    # a lapsed member no longer takes a fair share of the cap (its demand is not live)
    assert decide(OrgRate(100, 100), [], [a], _ask("b", 5, 0), now=12.0).grant.fair_permits == 5


@dataclasses.dataclass
class _Process:
    """One process as `SharedWindow` behaves: it starts calls only within its permits and its lease."""

    name: str
    permits: int = 0
    lease_until: float = 0.0
    calls: list[float] = dataclasses.field(default_factory=list)  # when each call in flight ends


def _in_flight_never_exceeds_the_cap(steps: list[tuple[int, float, float]], call_seconds: float) -> bool:
    procs = [_Process("p0"), _Process("p1"), _Process("p2")]
    members: dict[str, Member] = {}
    now = 0.0
    for who, gap, duration in steps:
        now += gap
        for p in procs:
            p.calls = [end for end in p.calls if end > now]
        p = procs[who]
        req = _ask(p.name, demand=len(p.calls) + 3, in_flight=len(p.calls), call_seconds=call_seconds)
        decision = decide(OrgRate(100, 100), [], list(members.values()), req, now)
        members[p.name] = decision.member
        p.permits, p.lease_until = decision.grant.permits, now + LEASE
        while len(p.calls) < p.permits and now < p.lease_until:
            p.calls.append(now + min(duration, CALL_SECONDS))  # no call outlasts the client's deadline
        if sum(len(q.calls) for q in procs) > 5:
            return False
    return True


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2), st.floats(0.0, 20.0), st.floats(0.1, CALL_SECONDS, allow_subnormal=False)
        ),
        min_size=1,
        max_size=30,
    )
)
def test_processes_never_have_more_calls_in_flight_than_the_concurrency_cap(steps):
    assert _in_flight_never_exceeds_the_cap(steps, CALL_SECONDS)


def test_with_permits_lapsing_at_the_lease_alone_the_cap_is_broken():
    # the finding as it was: permits forgotten 10 s after the lease while 30 s reads are still running
    steps = [(0, 0.0, 30.0), (1, 12.0, 30.0)]
    assert not _in_flight_never_exceeds_the_cap(steps, call_seconds=0.0)
    assert _in_flight_never_exceeds_the_cap(steps, CALL_SECONDS)


def test_a_block_handed_back_while_a_taken_slot_has_not_sent_keeps_its_end():
    # reserved at 0 (store and loop clocks agree here) for 2 s; a slot taken at 0.1 whose intent is still
    # being written when another waiter hands the block back at 0.5: the call may still go out until 2.0
    stored = Block(7, "a", reserved_at=0.0, last_at=2.0, slots=5)
    local = HeldBlock(7, 4, next_at=0.0, spacing=0.0, valid_until=2.0, used=1, last_send=0.1, pending=1)
    kept = returned_block(stored, *local.handed_back(0.5)[1:], now=0.5)
    assert kept.slots == 1 and kept.last_at == 2.0
    local.pending = 0  # sent: then the block ends at its last send, as before
    assert returned_block(stored, *local.handed_back(0.5)[1:], now=0.5).last_at == pytest.approx(0.1)


async def test_a_slow_intent_after_the_slot_is_taken_never_sends_the_call_past_its_block(
    zoho_sim_factory, database_url
):
    """A create's slot is taken (the window was not open, so its intent is written once the slot is
    held), the intent commit outlasts the slot's block, and meanwhile the window is spent by reads. Sent
    late in the old slot, the POST made three calls in Zoho's 2 s window (a 429); now the lapsed slot stays
    counted unsent and the POST waits for a fresh one."""
    limits = SimLimits(per_window=2, window_seconds=2.0, daily=100_000, concurrency=5)
    sim = zoho_sim_factory(limits=limits)
    settings = settings_for(sim, database_url, zoho_rate_guard_seconds=0.1, zoho_rate_block_seconds=0.3)
    async with ZohoClient(zoho_config(settings)) as setup:
        existing = (await setup.create_customer(customer_payload("existing")))["customer_id"]
    await asyncio.sleep(2.5)  # Zoho's window is empty again
    async with ZohoClient(zoho_config(settings)) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        intents: list[float] = []

        async def slow_intent() -> None:
            intents.append(loop.time() - started)
            await asyncio.sleep(1.5)  # a commit that takes its time, well past the slot's 0.3 s block

        async def read_at(offset: float) -> None:
            await asyncio.sleep(max(0.0, started + offset - loop.time()))
            await client.get_customer(existing)

        await asyncio.wait_for(
            asyncio.gather(
                client.create_customer(customer_payload("late"), slow_intent), read_at(1.0), read_at(2.6)
            ),
            20,
        )
        assert len(intents) == 1 and intents[0] < 0.5  # written once, after the slot was taken at once
        assert client.window.metrics.lapsed_slots == 1
    stats = sim.stats()
    assert stats["http_429"] == 0 and stats["max_in_window"] <= 2
    assert sum(stats["by_endpoint"]["POST /customers"].values()) == 2  # the setup's and this one
    requests = stats["requests"]
    await asyncio.sleep(1.0)
    assert sim.stats()["requests"] == requests  # quiet: nothing retries behind the test's back


class _DayAheadDatetime(dt.datetime):
    """This host's calendar clock, a day ahead of everyone else's (a wrong NTP, a VM resumed)."""

    @classmethod
    def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
        return dt.datetime.now(tz) + dt.timedelta(days=1)


async def test_the_daily_budgets_day_is_the_databases_not_the_hosts(database_url, monkeypatch):
    """Another process spent today's 3 calls; a process on a host whose clock says tomorrow would start
    a fresh day of its own and send past the organisation's limit. The day is PostgreSQL's: it waits."""
    migrate(database_url)
    others = PgDailyBudgetStore(database_url)
    on_time = daily_budget.DailyBudget(others, "org-1", 3, poll_seconds=0.05)
    for _ in range(3):
        assert await on_time.spend() == 0.0
    monkeypatch.setattr(
        daily_budget, "dt", types.SimpleNamespace(**{**vars(dt), "datetime": _DayAheadDatetime})
    )
    store = PgDailyBudgetStore(database_url)
    ahead = daily_budget.DailyBudget(store, "org-1", 3, poll_seconds=0.05)
    waiting = asyncio.create_task(ahead.spend())
    await asyncio.sleep(0.5)
    assert not waiting.done()  # today is spent for this host too
    waiting.cancel()
    state = await ahead.state()
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute("SELECT (now() AT TIME ZONE 'UTC')::date")
        (today,) = await cur.fetchone()  # type: ignore[misc]
        cur = await conn.execute("SELECT day, calls FROM zoho_daily_budget WHERE organization_id = 'org-1'")
        rows = await cur.fetchall()
    assert state["day"] == today.isoformat() and state["calls_today"] == 3 and state["paused_until"]
    assert rows == [(today, 3)]  # one day counted, the database's; none opened for the host's tomorrow
    await on_time.close()
    await store.aclose()
    await others.aclose()
