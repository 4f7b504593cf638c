"""A full rate window always tells a waiter when to ask again (found by the simulation, `make simulate`).

A block reserved at t stops counting after t + window + guard; at the instant it does, floating point can
give `last_at + span - now == 0.0` while the block still counts, and a retry of 0 reads as "no retry
needed": the waiter asked again at once, for ever (seed 3 hung on virtual time; a busy loop on a real one).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connectors.zoho.limits.window import Block, OrgRate, Reservation, decide


def _ask(want: int, rate: int) -> Reservation:
    return Reservation(
        "org", "me", want=want, demand=want, in_flight=0, max_rate=rate, window=60.0, guard=0.5, concurrency=5
    )


def test_the_block_that_stops_counting_right_now_still_gives_a_retry():
    # the very blocks and instant of the seed that hung: the oldest block is counted at 80.859 (its last
    # send is later than now - span by one rounding) while last_at + span - now rounds to 0.0
    times = [20.358999999999998, 20.409, 25.743, 25.793, 26.041033482459852, 26.09303348245985]
    blocks = [Block(i, "other", t, t, 1) for i, t in enumerate([*times, 26.143033482459852, 80.809], 1)]
    assert blocks[0].last_at + 60.5 - 80.859 == 0.0 and blocks[0].last_at > 80.859 - 60.5
    grant = decide(OrgRate(8, 8), blocks, [], _ask(want=3, rate=8), now=80.859).grant
    assert grant.slots == 0
    assert grant.retry_in >= 0.01


@given(
    st.lists(st.floats(min_value=0.0, max_value=200.0, allow_nan=False), min_size=1, max_size=12),
    st.floats(min_value=0.0, max_value=300.0, allow_nan=False),
)
def test_a_waiter_refused_a_slot_always_waits_a_while(sends, now):
    blocks = [Block(i, "other", t, t, 1) for i, t in enumerate(sends, 1)]
    rate = len(sends)
    grant = decide(OrgRate(rate, rate), blocks, [], _ask(want=2, rate=rate), now=now).grant
    if grant.slots == 0:
        assert grant.retry_in >= 0.01 or grant.paused_for > 0
