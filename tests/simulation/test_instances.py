"""A simulated zoho-cdc process starts, is refused and comes back as the deployed service does."""

from __future__ import annotations

import asyncio

from connectors import clock
from simulation.loop import run as run_on_virtual_time
from simulation.scenario import draw
from simulation.world import World


def test_a_start_while_postgresql_is_down_is_refused_and_the_supervisor_brings_it_back() -> None:
    world = World(draw(5))
    instance = world.instances[0]

    async def main() -> None:
        world.db.unavailable_until = clock.monotonic() + 5.0
        instance.start()
        await asyncio.sleep(1.0)
        assert not instance.running and instance.refusals == 4  # at 0, 0.1, 0.3 and 0.7 s
        await asyncio.sleep(10.0)  # the outage ends at 5 s; the supervisor's next start is at 6.3 s
        assert instance.running and instance.starts == 7 and instance.refusals == 0
        instance.stop()
        assert instance.task is not None
        await asyncio.wait([instance.task], timeout=60.0)
        assert not instance.running

    run_on_virtual_time(main())
    assert not world.violations, world.violations


def test_a_process_stopped_while_its_restart_is_pending_stays_stopped() -> None:
    world = World(draw(5))
    instance = world.instances[0]

    async def main() -> None:
        world.db.unavailable_until = clock.monotonic() + 5.0
        instance.start()
        await asyncio.sleep(0.05)  # refused; the supervisor would start it again at 0.1 s
        instance.stop()
        await asyncio.sleep(10.0)
        assert not instance.running and instance.starts == 1

    run_on_virtual_time(main())
    assert not world.violations, world.violations
