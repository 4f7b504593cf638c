"""The rules of one organisation's rate window, shared by every zoho-cdc process, as pure functions.

Invariant: no `window + guard` interval holds more than `rate` sends and no more than `concurrency` calls
are in flight, whichever processes send them. Slots are reserved in blocks that count against every window
they overlap, so the check made for the newest block bounds every window (`decide`); permits go to the
processes with work (`fair_shares`) and never undercount calls in flight. Stores only load and save these.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Literal

from connectors.zoho.limits.aimd import MIN_RATE, decrease, next_episode, pause_seconds, recover

PacingMode = Literal["burst", "even"]


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
    # the longest one call can last once sent (the client's whole-call deadline): a member starts calls
    # only while its lease runs, so its permits stay counted this much longer, until its calls have ended
    call_seconds: float = 0.0
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
class RateLimitReport:
    """A 429 one process saw, as it reports it to the store: which call, how old, what it knew."""

    organization_id: str
    sent_age: float  # seconds since the refused call was sent
    retry_after: float | None
    max_rate: int
    window: float
    rng: random.Random = field(compare=False, repr=False)
    member: str = ""
    own_sends: int | None = None  # the refused call was the n-th this member sent in its window
    reserved_age: float | None = None  # seconds since the refused call's slot was reserved


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
    """Additive increase after `clean` clean calls (`aimd.recover` once per call, as `CallPacer` does)."""
    rate, ceiling = min(org.rate, max_rate), min(org.ceiling, max_rate)
    for _ in range(clean):
        rate, ceiling = recover(rate, ceiling, max_rate)
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
    others = [m for m in members if m.member != req.member]
    live = [m for m in others if m.lease_until > now]
    # A lapsed member starts no call, but one it started just before its lease ran out may still be in
    # flight (a read waits up to its timeout): its permits count until such a call has ended.
    held = sum(m.permits for m in others if m.lease_until + req.call_seconds > now)
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
        # the earliest moment a counted block stops counting (at least one slot frees then); never 0: a
        # block counted at `now` can still give `last_at + span - now == 0.0` in floating point, and a
        # retry of 0 reads as "no retry needed", so the waiter would ask again at once, for ever
        # (found by the simulation: a livelock on virtual time, a busy loop on a real clock)
        retry_in = max(0.01, min((b.last_at + span - now for b in counted), default=0.05))
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


def rate_limited(org: OrgRate, blocks: list[Block], report: RateLimitReport, now: float) -> OrgRate:
    """A 429 for a call `report.member` sent `report.sent_age` seconds ago, the `own_sends`-th of its
    sends in the window up to that call: pause everyone and lower the shared rate once per episode, by
    the `aimd` rule `CallPacer` applies in one process (other members' blocks count whole)."""
    paused_until = org.paused_until
    if report.retry_after is not None:
        paused_until = max(paused_until, now + report.retry_after)
    sent_at = now - report.sent_age
    # a call whose slot was reserved before the last decrease belongs to that episode, even if it went
    # out later: the slots other processes still held must not halve the rate again and again
    reserved_at = now - report.reserved_age if report.reserved_age is not None else sent_at
    if min(sent_at, reserved_at) <= org.last_decrease:
        return replace(org, paused_until=paused_until)
    own_sends, window = report.own_sends, report.window
    episodes = next_episode(org.episodes, now - org.last_decrease, window)
    others = [b for b in blocks if own_sends is None or b.member != report.member]
    inferred = sum(b.slots for b in others if b.reserved_at <= sent_at and b.last_at > sent_at - window)
    inferred += (own_sends or 0) - 1
    rate, ceiling = decrease(min(org.rate, report.max_rate), org.ceiling, inferred, episodes)
    rate = max(MIN_RATE, min(rate, report.max_rate))
    if report.retry_after is None:
        paused_until = max(paused_until, now + pause_seconds(window, episodes, report.rng))
    return replace(
        org, rate=rate, ceiling=ceiling, paused_until=paused_until, last_decrease=now, episodes=episodes
    )


def shared_view(
    org: OrgRate | None, blocks: list[Block], members: list[Member], now: float, span: float, max_rate: int
) -> dict:
    """The organisation's window as every process sees it: calls in the span, rate, pause, live members."""
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
