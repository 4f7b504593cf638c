"""The virtual-time loop reaches the instant of every timer it runs.

Found by the simulation (seed 1160, a "livelock" at the end of a run): asyncio runs every timer due within
its clock resolution (1 ns) of `time()`. Two consumers polled until deadlines a few ulps (6e-13 s) past the
instant the clock had jumped to; their timers ran at once, but the virtual clock stayed short of the
deadlines, so each found its deadline still ahead and waited again, each keeping the other's wake-up in the
ready queue: 200,000 iterations at one instant. A real clock is past such a deadline by the time the
callback runs (an iteration takes microseconds), so the product never sees this.
"""

from __future__ import annotations

import asyncio

import pytest

from simulation.loop import SPIN_LIMIT, SimulationStalled, run

INSTANT = 729.669  # where the clock jumps first, to another timer
AHEAD = 6e-13  # how far past it the deadlines are: within asyncio's 1 ns clock resolution


async def _poll_until(deadline: float) -> float:
    """Wait on timers until the loop's clock reaches `deadline`, as a fetch with a timeout does."""
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        waiter = loop.create_future()
        loop.call_at(deadline, waiter.set_result, None)
        await waiter
    return loop.time()


async def _late_poller() -> float:
    """Wakes at the instant, and polls one loop iteration later than the other: from then on each one's
    wake-up is in the ready queue when the other's timer is found due."""
    await asyncio.sleep(INSTANT)
    await asyncio.sleep(0)
    return await _poll_until(INSTANT + 2 * AHEAD)


async def _two_pollers() -> list[float]:
    return await asyncio.gather(_poll_until(INSTANT + AHEAD), _late_poller())


def test_deadlines_within_the_clock_resolution_are_reached_not_spun_on() -> None:
    assert run(_two_pollers()) == [INSTANT + AHEAD, INSTANT + 2 * AHEAD]


def test_a_busy_loop_of_sub_nanosecond_waits_is_still_a_livelock() -> None:
    """Reaching a timer's instant is not the clock moving for the livelock watch: on a real clock such a
    loop burns a core."""

    async def busy() -> None:
        for _ in range(4 * SPIN_LIMIT):  # bounded: a watch that misses it fails the test, not hangs it
            await asyncio.sleep(AHEAD)

    with pytest.raises(SimulationStalled, match="livelock"):
        run(busy())
