"""One rate window per Zoho organisation, shared by every zoho-cdc process through a `RateWindowStore`.

Invariant: no `window + guard` interval ever holds more than `rate` sends of the organisation, and no
more than `concurrency` calls are in flight at once, whichever processes send them. Each process
reserves *blocks* of a few send slots (one store round trip per block, not per call); a block may be
used from its reservation until its `last_at` and counts against every window that overlaps that
span, so the check made when the newest overlapping block was reserved bounds every window (see
`decide`). Unused slots are handed back with the next reservation. In-flight permits are shared out
among the processes that have work (`fair_shares`), and a process only reports fewer permits once its
own calls have come back, so the permits recorded never undercount the calls in flight.

`burst` (default) spends what is left of the window as fast as the permits allow when calls wait;
`even` spaces the organisation's sends `(window + guard) / rate` apart. A 429 seen by any process
lowers the shared rate (AIMD, as `CallPacer`) and pauses every process; clean calls raise it again.

`decide` and `rate_limited` are pure functions over plain values; the stores only load and save them.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import socket
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

PacingMode = Literal["burst", "even"]


MIN_RATE = 1.0
DECREASE_FACTOR = 0.5
# After a burst of 429s the rate climbs back by this share of the configured rate per window of
# clean calls: back to full within about ten windows (minutes, not hours). The learned ceiling --
# what the server really allows when the budget is shared with other apps -- is probed far more
# cautiously, one call per CEILING_PROBE_WINDOWS clean windows.
RATE_RECOVERY_PER_WINDOW = 0.10
CEILING_PROBE_WINDOWS = 50


# --- the shared state, as plain values --------------------------------------------------------------


@dataclass(frozen=True)
class OrgRate:
    """The organisation's adaptive rate and pause; times are the store's clock (seconds)."""

    rate: float
    ceiling: float
    paused_until: float = 0.0
    last_decrease: float = 0.0
    episodes: int = 0
    next_send_at: float = 0.0


@dataclass(frozen=True)
class Block:
    """`slots` sends reserved by `member`, made between `reserved_at` and `last_at`."""

    id: int
    member: str
    reserved_at: float
    last_at: float
    slots: int


@dataclass(frozen=True)
class Member:
    """A process using the organisation: permits it holds, calls it has waiting or in flight."""

    member: str
    permits: int
    demand: int
    in_flight: int
    lease_until: float
    label: str = ""


@dataclass(frozen=True)
class Reservation:
    """What a process asks for: `want` more send slots, and permits for `demand` calls."""

    organization_id: str
    member: str
    want: int
    demand: int
    in_flight: int
    max_rate: int
    window: float
    guard: float
    concurrency: int
    mode: PacingMode = "burst"
    block_seconds: float = 2.0
    member_lease: float = 10.0
    clean: int = 0  # calls answered without a 429 since the last reservation
    label: str = ""
    # the previous block, handed back: (block id, slots used, seconds since its last send)
    returned: tuple[int, int, float] | None = None


@dataclass(frozen=True)
class Grant:
    """The store's answer; every time is relative to the store's `now` when it decided."""

    block_id: int | None
    slots: int
    start_in: float
    spacing: float
    valid_for: float
    retry_in: float
    permits: int
    fair_permits: int  # this member's share of the cap; more is pointless to ask for
    rate: float
    paused_for: float
    since_decrease: float
    used_in_window: int
    members: int


@dataclass(frozen=True)
class RateLimitedState:
    """The shared rate after a 429, and how long every process now pauses."""

    rate: float
    paused_for: float


@dataclass(frozen=True)
class Decision:
    grant: Grant
    org: OrgRate
    member: Member
    block: Block | None  # to insert (id assigned by the store)


def fair_shares(demands: dict[str, int], concurrency: int) -> dict[str, int]:
    """`concurrency` permits dealt round-robin (by member name) to members with calls to make."""
    shares = dict.fromkeys(demands, 0)
    left = concurrency
    while left > 0:
        hungry = [m for m in sorted(demands) if shares[m] < demands[m]]
        if not hungry:
            break
        for m in hungry:
            if left == 0:
                break
            shares[m] += 1
            left -= 1
    return shares


def recovered(org: OrgRate, max_rate: int, clean: int) -> OrgRate:
    """Additive increase after clean calls, exactly as `CallPacer.on_success` does per call."""
    rate, ceiling = min(org.rate, max_rate), min(org.ceiling, max_rate)
    for _ in range(clean):
        ceiling = min(max_rate, ceiling + 1.0 / (rate * CEILING_PROBE_WINDOWS))
        rate = max(MIN_RATE, min(ceiling, rate + max_rate * RATE_RECOVERY_PER_WINDOW / rate))
    return replace(org, rate=rate, ceiling=ceiling, episodes=0 if clean else org.episodes)


def decide(
    org: OrgRate, blocks: list[Block], members: list[Member], req: Reservation, now: float
) -> Decision:
    """Grant send slots and in-flight permits without breaking the window or the concurrency cap.

    Why one check suffices: take any window and, of the blocks with sends in it, the one reserved last
    (at t). Every other such block has a send inside the window, hence `last_at` > window start >=
    t - span, so the check made at t counted it, and the total stayed <= rate.
    """
    span = req.window + req.guard
    org = recovered(org, req.max_rate, req.clean)
    rate = max(1, math.floor(min(org.rate, req.max_rate)))
    live = [m for m in members if m.member != req.member and m.lease_until > now]
    held = sum(m.permits for m in live)
    shares = fair_shares({**{m.member: m.demand for m in live}, req.member: req.demand}, req.concurrency)
    permits = max(req.in_flight, min(shares[req.member], req.concurrency - held))
    counted = [b for b in blocks if b.last_at > now - span]
    used = sum(b.slots for b in counted)
    free = max(0, rate - used)
    paused_for = max(0.0, org.paused_until - now)
    want = 0 if paused_for > 0 else min(req.want, free)
    block = None
    start_in = spacing = 0.0
    if want > 0:
        start = now
        if req.mode == "even":
            spacing = span / rate
            start = max(now, org.next_send_at)
            want = min(want, max(1, math.floor(req.block_seconds / spacing)))
            org = replace(org, next_send_at=start + want * spacing)
        start_in = start - now
        last_at = start + (want - 1) * spacing + req.block_seconds
        block = Block(0, req.member, now, last_at, want)
    if paused_for > 0:
        retry_in = paused_for
    elif want == 0 and req.want > 0:
        # the earliest moment a counted block stops counting (at least one slot frees then)
        retry_in = min((b.last_at + span - now for b in counted), default=0.05)
    else:
        retry_in = 0.0
    member = Member(req.member, permits, req.demand, req.in_flight, now + req.member_lease, req.label)
    grant = Grant(
        block_id=None,
        slots=want,
        start_in=start_in,
        spacing=spacing,
        valid_for=(block.last_at - now) if block else 0.0,
        retry_in=max(0.01, retry_in) if retry_in else 0.0,
        permits=permits,
        fair_permits=shares[req.member],
        rate=org.rate,
        paused_for=paused_for,
        since_decrease=now - org.last_decrease if org.last_decrease else math.inf,
        used_in_window=used + want,
        members=len(live) + 1,
    )
    return Decision(grant, org, member, block)


def returned_block(block: Block, used: int, idle_for: float, now: float) -> Block:
    """The block after its owner hands back unused slots; its last send was `idle_for` seconds ago."""
    return replace(
        block,
        slots=min(block.slots, used),
        last_at=min(block.last_at, max(block.reserved_at, now - idle_for)),
    )


def rate_limited(
    org: OrgRate,
    blocks: list[Block],
    *,
    now: float,
    sent_age: float,
    retry_after: float | None,
    max_rate: int,
    window: float,
    rng: random.Random,
    member: str = "",
    own_sends: int | None = None,
    reserved_age: float | None = None,
) -> OrgRate:
    """A 429 for a call `member` sent `sent_age` seconds ago, the `own_sends`-th of its sends in the
    window up to that call: pause everyone and lower the shared rate once per episode, the way
    `CallPacer.on_rate_limited` does for one process (other members' blocks count whole)."""
    paused_until = org.paused_until
    if retry_after is not None:
        paused_until = max(paused_until, now + retry_after)
    sent_at = now - sent_age
    # a call whose slot was reserved before the last decrease belongs to that episode, even if it went
    # out later: the slots other processes still held must not halve the rate again and again
    reserved_at = now - reserved_age if reserved_age is not None else sent_at
    if min(sent_at, reserved_at) <= org.last_decrease:
        return replace(org, paused_until=paused_until)
    episodes = org.episodes + 1
    others = [b for b in blocks if own_sends is None or b.member != member]
    inferred = sum(b.slots for b in others if b.reserved_at <= sent_at and b.last_at > sent_at - window)
    inferred += (own_sends or 0) - 1
    rate, ceiling = min(org.rate, max_rate), org.ceiling
    if inferred >= rate * DECREASE_FACTOR:
        ceiling = max(MIN_RATE, min(ceiling, inferred))
        rate = ceiling if episodes == 1 else min(ceiling, rate * DECREASE_FACTOR)
    else:
        rate = rate * DECREASE_FACTOR
    rate = max(MIN_RATE, min(rate, max_rate))
    if retry_after is None:
        backoff = min(window, window / 20 * 2 ** (episodes - 1))
        paused_until = max(paused_until, now + rng.uniform(backoff / 2, backoff))
    return replace(
        org, rate=rate, ceiling=ceiling, paused_until=paused_until, last_decrease=now, episodes=episodes
    )


# --- one process's side -------------------------------------------------------------------------------


def member_name() -> str:
    """Unique per process: host, pid and a random tail (a restarted process is a new member)."""
    return f"{socket.gethostname()[:24]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class _LocalBlock:
    id: int | None
    left: int
    next_at: float
    spacing: float
    valid_until: float
    asked: float = 0.0  # when this block was asked for (the loop's clock)
    used: int = 0
    last_send: float = 0.0


@dataclass
class WindowMetrics:
    reservations: int = 0  # store round trips, refused ones included
    grants: int = 0  # round trips that granted slots
    reserved_slots: int = 0
    wait_seconds: float = 0.0
    rate_limited: int = 0
    last: Grant | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class SharedWindow:
    """This process's gate onto the organisation's shared window: `async with window.send() as sent_at`."""

    PERMIT_POLL_SECONDS = 0.2
    MAX_SLEEP_SECONDS = 1.0
    IDLE_REPORT_SECONDS = 0.2

    def __init__(
        self,
        store: Any,
        organization_id: str,
        *,
        rate_per_window: int,
        window_seconds: float = 60.0,
        guard_seconds: float = 0.5,
        concurrency: int = 5,
        mode: PacingMode = "burst",
        block_size: int = 5,
        block_seconds: float = 2.0,
        member_lease: float = 10.0,
        member: str | None = None,
        label: str = "",
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.organization_id = organization_id
        self.max_rate = rate_per_window
        self.window = window_seconds
        self.guard = guard_seconds
        self.concurrency = concurrency
        self.mode: PacingMode = mode
        # At high rates (paid plans, an unlimited test sink) a block of 5 slots would cost a transaction per
        # 5 calls; up to 1 % of the window is reserved at once instead (never below the configured size).
        self.block_size = max(block_size, min(50, rate_per_window // 100))
        self.block_seconds = block_seconds
        self.member_lease = member_lease
        self.member = member or member_name()
        self.label = label
        self._rng = rng or random.Random()
        self.metrics = WindowMetrics()
        self.rate = float(rate_per_window)
        self._block: _LocalBlock | None = None
        self._returned: tuple[int, int, float] | None = None
        self._permits = 0
        self._fair_permits = concurrency
        self._in_flight = 0
        self._waiting = 0
        self._clean = 0
        self._paused_until = 0.0
        self._last_decrease = -math.inf
        self._slot_refresh_at = 0.0
        self._permit_refresh_at = 0.0
        self._renew_at = 0.0
        self._lease_until = 0.0
        self._refreshing = False
        self._idle_task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._queue = asyncio.Lock()
        self._sent: deque[float] = deque(maxlen=rate_per_window + 1)
        self._reserved_at: dict[float, float] = {}  # send time -> when its block was reserved

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # --- the gate ------------------------------------------------------------------------------------

    @asynccontextmanager
    async def send(self) -> AsyncIterator[float]:
        """Hold one slot of the window and one in-flight permit while the call is made."""
        sent_at = await self.acquire()
        try:
            yield sent_at
        finally:
            self._in_flight -= 1
            self._notify()
            if self._in_flight == 0 and self._waiting == 0 and self._idle_task is None:
                self._idle_task = asyncio.create_task(self._report_idle())

    async def _report_idle(self) -> None:
        """Out of work: hand back our permits and slots soon, so the other processes can use them."""
        try:
            await asyncio.sleep(self.IDLE_REPORT_SECONDS)
            if self._in_flight == 0 and self._waiting == 0 and not self._refreshing and self._permits:
                await self._refresh()
        except Exception:  # noqa: BLE001, S110 - the lease runs out on its own
            pass
        finally:
            self._idle_task = None

    def _usable(self, now: float) -> bool:
        b = self._block
        return b is not None and b.left > 0 and now < b.valid_until

    def _take(self, now: float) -> bool:
        b = self._block
        if not self._usable(now) or now < self._paused_until or now >= self._lease_until:
            return False
        if self._in_flight >= self._permits:
            return False
        assert b is not None
        if now < b.next_at:
            return False
        b.left -= 1
        b.used += 1
        b.last_send = now
        self._sent.append(now)
        self._reserved_at[now] = b.asked
        if len(self._reserved_at) > 4 * self.max_rate + 100:  # calls that ended in other errors
            self._reserved_at.pop(next(iter(self._reserved_at)))
        b.next_at = max(b.next_at + b.spacing, now) if b.spacing else now
        self._in_flight += 1
        return True

    def _wants_refresh(self, now: float) -> bool:
        if now < self._paused_until or self._refreshing:
            return False
        if not self._usable(now) and now >= self._slot_refresh_at:
            return True
        wanted = min(self._fair_permits, self._waiting + self._in_flight)
        if now >= self._permit_refresh_at and self._permits < wanted:
            return True
        return self._waiting > 0 and now >= self._renew_at

    def _next_check(self, now: float) -> float:
        times = [
            now + self.MAX_SLEEP_SECONDS,
            self._paused_until,
            self._slot_refresh_at,
            self._permit_refresh_at,
        ]
        if self._block is not None and self._usable(now):
            times.append(self._block.next_at)
        later = [t for t in times if t > now]
        return min(later) if later else now + 0.005

    async def acquire(self) -> float:
        """Wait for a send slot and a permit; returns the send time (the loop's clock)."""
        started = self._now()
        self._waiting += 1
        try:
            # Waiters queue FIFO and only the first one watches the window: a thousand waiters each woken
            # by every reply would spend the CPU the calls need (measured: 15 calls/s instead of hundreds).
            async with self._queue:
                while True:
                    now = self._now()
                    if self._take(now):
                        self.metrics.wait_seconds += now - started
                        return now
                    if self._wants_refresh(now):
                        await self._refresh()
                        continue
                    changed = self._changed
                    try:
                        await asyncio.wait_for(changed.wait(), max(0.001, self._next_check(now) - now))
                    except TimeoutError:
                        pass
        finally:
            self._waiting -= 1

    async def _refresh(self) -> None:
        self._refreshing = True
        try:
            now = self._now()
            b = self._block
            want = 0
            if self._waiting == 0 and b is not None and b.id is not None:
                self._returned = (b.id, b.used, now - b.last_send if b.used else now)
                self._block = None
            elif not self._usable(now):
                want = min(self.block_size, max(self._waiting, 0))
                if b is not None and b.id is not None:
                    idle = now - b.last_send if b.used else now
                    self._returned = (b.id, b.used, idle)
                self._block = None
            req = Reservation(
                organization_id=self.organization_id,
                member=self.member,
                want=want,
                demand=self._waiting + self._in_flight,
                in_flight=self._in_flight,
                max_rate=self.max_rate,
                window=self.window,
                guard=self.guard,
                concurrency=self.concurrency,
                mode=self.mode,
                block_seconds=self.block_seconds,
                member_lease=self.member_lease,
                clean=self._clean,
                label=self.label,
                returned=self._returned,
            )
            asked = self._now()
            grant: Grant = await self.store.reserve(req)
            self._clean = 0
            self._returned = None
            replied = self._now()
            self.metrics.reservations += 1
            self.metrics.reserved_slots += grant.slots
            self.metrics.grants += 1 if grant.slots else 0
            self.metrics.last = grant
            self.rate = grant.rate
            self._permits = grant.permits
            self._fair_permits = grant.fair_permits
            self._paused_until = replied + grant.paused_for if grant.paused_for else 0.0
            if math.isfinite(grant.since_decrease):
                self._last_decrease = max(self._last_decrease, replied - grant.since_decrease)
            if grant.slots:
                self._block = _LocalBlock(
                    grant.block_id,
                    grant.slots,
                    replied + grant.start_in,
                    grant.spacing,
                    asked + grant.valid_for,
                    asked,
                )
            self._slot_refresh_at = replied + grant.retry_in if want and not grant.slots else replied
            self._permit_refresh_at = replied + self.PERMIT_POLL_SECONDS
            self._renew_at = asked + self.member_lease / 2
            self._lease_until = asked + self.member_lease
        finally:
            self._refreshing = False
            self._notify()

    # --- what the replies teach ------------------------------------------------------------------------

    def on_success(self, sent_at: float) -> None:
        if self._reserved_at.pop(sent_at, sent_at) > self._last_decrease:
            self._clean += 1

    async def on_rate_limited(self, sent_at: float, retry_after: float | None = None) -> None:
        self.metrics.rate_limited += 1
        now = self._now()
        self._last_decrease = max(self._last_decrease, now)
        own = sum(1 for t in self._sent if sent_at - self.window < t <= sent_at)
        reserved = self._reserved_at.pop(sent_at, sent_at)
        b = self._block
        if b is not None and b.id is not None:  # stop spending slots reserved before this 429
            self._returned = (b.id, b.used, now - b.last_send if b.used else now)
            self._block = None
        org = await self.store.rate_limited(
            self.organization_id,
            member=self.member,
            own_sends=own,
            sent_age=now - sent_at,
            reserved_age=now - reserved,
            retry_after=retry_after,
            max_rate=self.max_rate,
            window=self.window,
            rng=self._rng,
        )
        self.rate = org.rate
        self._paused_until = max(self._paused_until, self._now() + max(0.0, org.paused_for))
        self._slot_refresh_at = self._paused_until
        self._notify()

    # --- views and lifecycle ---------------------------------------------------------------------------

    def state(self) -> dict[str, object]:
        now = self._now()
        return {
            "rate_per_window": math.floor(self.rate),
            "rate": round(self.rate, 3),
            "configured_rate_per_window": self.max_rate,
            "window_seconds": self.window,
            "pacing": self.mode,
            "permits": self._permits,
            "in_flight": self._in_flight,
            "paused_for_seconds": round(max(0.0, self._paused_until - now), 3),
            "rate_limited": self.metrics.rate_limited,
        }

    async def shared_state(self) -> dict[str, object]:
        """The organisation's window as every process sees it (calls this window, members, rate)."""
        return await self.store.snapshot(self.organization_id, self.window, self.guard, self.max_rate)

    async def aclose(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
        b = self._block
        returned = None
        if b is not None and b.id is not None:
            returned = (b.id, b.used, self._now() - b.last_send if b.used else self._now())
        try:
            await self.store.leave(self.organization_id, self.member, returned)
        except Exception:  # noqa: BLE001 - a lease left behind expires on its own
            pass
