"""The shared window's AIMD on a fake clock: a burst of scripted 429s (refusals that have nothing to do
with our count, as `make chaos` serves them) costs a few windows, not the rest of the run, while a real
limit of N calls per window still holds the organisation near N. Pure rules only: no store, no sleep."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.zoho.limits.window import Block, OrgRate, RateLimitReport, Reservation, decide, rate_limited

RATE, WINDOW, GUARD = 3000, 60.0, 0.5
REQ = Reservation(
    "org", "a", want=30, demand=100, in_flight=0, max_rate=RATE, window=WINDOW, guard=GUARD, concurrency=5
)


class Org:
    """One member with more work than the window holds, spending burst-paced blocks at one call per `gap`
    seconds; `refused(now)` plays the server. Blocks are dropped on a 429, clean calls reported on the
    next reservation, as `SharedWindow` does."""

    def __init__(self, refused: Callable[[float], bool], gap: float = 0.02) -> None:
        self.org = OrgRate(float(RATE), float(RATE))
        self.blocks: list[Block] = []
        self.refused = refused
        self.gap = gap
        self.now = 0.0
        self.left = 0
        self.valid_until = 0.0
        self.reserved_at = 0.0
        self.clean = 0
        self.sent: deque[float] = deque()  # our sends (the member's own count)
        self.accepted: list[float] = []  # what the server took
        self.rejections = 0
        self.ids = 0

    def run(self, until: float) -> None:
        while self.now < until:
            if (self.left == 0 or self.now >= self.valid_until) and not self._reserve():
                continue
            self._send()

    def _reserve(self) -> bool:
        d = decide(self.org, self.blocks, [], replace(REQ, clean=self.clean), self.now)
        self.org, self.clean = d.org, 0
        if d.block is None:
            self.now += max(d.grant.retry_in, 0.01)
            return False
        self.ids += 1
        self.blocks = [b for b in self.blocks if b.last_at > self.now - 2 * WINDOW]
        self.blocks.append(replace(d.block, id=self.ids))
        self.left, self.reserved_at = d.grant.slots, self.now
        self.valid_until = self.now + d.grant.valid_for
        return True

    def _send(self) -> None:
        sent_at = self.now
        self.left -= 1
        self.sent.append(sent_at)
        while self.sent[0] <= sent_at - WINDOW:
            self.sent.popleft()
        self.now += self.gap
        if not self.refused(sent_at):
            self.accepted.append(sent_at)
            if self.reserved_at > self.org.last_decrease:
                self.clean += 1
            return
        self.rejections += 1
        report = RateLimitReport(
            "org",
            sent_age=self.now - sent_at,
            retry_after=None,
            max_rate=RATE,
            window=WINDOW,
            rng=random.Random(self.rejections),
            member="a",
            own_sends=len(self.sent),
            reserved_age=self.now - self.reserved_at,
        )
        self.org = rate_limited(self.org, self.blocks, report, self.now)
        self.left = 0  # the block is dropped on a 429

    def accepted_between(self, start: float, end: float) -> int:
        return sum(1 for t in self.accepted if start <= t < end)


def scripted_bursts(every: float, size: int, until: float) -> Callable[[float], bool]:
    """Like the simulator's `burst_429`: every `every` s the next `size` requests are refused, whatever
    the count; the refusals wait for requests (they land on the first calls after a quiet spell)."""
    state = {"next": every, "pending": 0}

    def refused(now: float) -> bool:
        while now >= state["next"] and state["next"] < until:
            state["pending"], state["next"] = size, state["next"] + every
        if now >= until:
            state["pending"] = 0
        if state["pending"]:
            state["pending"] -= 1
            return True
        return False

    return refused


@settings(max_examples=12, deadline=None)
@given(
    every=st.sampled_from([8.0, 20.0, 30.0]),
    size=st.integers(min_value=1, max_value=20),
    gap=st.sampled_from([0.004, 0.02]),
)
def test_after_scripted_429_bursts_the_rate_returns_to_the_configured_rate_within_five_windows(
    every: float, size: int, gap: float
) -> None:
    faults_until = 120.0
    org = Org(scripted_bursts(every, size, faults_until), gap=gap)
    org.run(faults_until + 5 * (WINDOW + GUARD) + 10.0)
    assert org.org.rate == RATE, org.org  # the ceiling a burst taught is forgotten
    # and the window is used: the last window of the five holds the configured rate
    end = org.now
    assert org.accepted_between(end - WINDOW - GUARD - 2.5, end) >= RATE * 0.97


def test_the_chaos_pattern_settles_at_the_configured_rate() -> None:
    """15 refusals every 20 s for two minutes (`make chaos`), then clean: the former rules kept the
    organisation at ~2 % of its rate for good (a ceiling ratcheted down episode after episode)."""
    org = Org(scripted_bursts(20.0, 15, 120.0), gap=0.02)
    org.run(120.0)
    org.run(120.0 + 3 * (WINDOW + GUARD))
    late = org.accepted_between(org.now - 2 * (WINDOW + GUARD), org.now)
    assert late >= 2 * RATE * 0.9, late  # burst pacing waits for blocks to age out: ~62.5 s per window


def test_a_real_limit_still_holds_the_organisation_near_it() -> None:
    """A server taking at most 1000 calls per sliding window, for fifteen windows: every window gets about
    1000 calls, with few refusals (the ceiling fades back, so each window probes once and is refused)."""
    limit = 1000
    log: deque[float] = deque()

    def refused(now: float) -> bool:
        while log and log[0] <= now - WINDOW:
            log.popleft()
        if len(log) >= limit:
            return True
        log.append(now)
        return False

    org = Org(refused, gap=0.02)
    org.run(15 * WINDOW)
    per_window = [org.accepted_between(k * WINDOW, (k + 1) * WINDOW) for k in range(2, 15)]
    assert all(0.9 * limit <= n <= limit for n in per_window), per_window
    assert org.org.ceiling < 1.5 * limit
    assert org.rejections <= 15 * 10, org.rejections  # a handful per window at most
