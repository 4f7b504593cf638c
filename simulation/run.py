"""Run seeds: one world per seed on a fresh virtual loop, its violations, and a digest of its history.

The digest covers what the world ends with (sync log, Zoho's records, committed offsets, the calls Zoho
accepted, the virtual time it took), so running one seed twice and comparing digests shows the run is
a function of the seed (`tests/simulation/test_seeds.py` does, and `--check-determinism` here).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog

from connectors import clock
from simulation import invariants
from simulation.loop import SimulationStalled
from simulation.loop import run as run_on_virtual_time
from simulation.scenario import Scenario, draw
from simulation.world import GROUP, World

#: The seeds CI runs (`tests/simulation/test_seeds.py`, benchmark 12), in this many processes.
CI_SEEDS = 2000
CI_JOBS = 2
#: Real seconds one seed may take before it counts as hung (a world takes well under one).
HUNG_SECONDS = 60.0


@dataclass
class SeedResult:
    seed: int
    scenario: str
    violations: list[tuple[str, str]]
    digest: str
    virtual_seconds: float
    zoho_calls: int
    records: int
    trace: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def replay_command(self) -> str:
        return f"make simulate SEED={self.seed}"


def run_seed(seed: int, *, trace: bool = False) -> SeedResult:
    scenario = draw(seed)
    world = World(scenario, trace=trace)
    _quiet_logs(world if trace else None)
    elapsed = 0.0
    unhandled: list[str] = []

    async def main() -> None:
        nonlocal elapsed
        try:
            await world.run()
        finally:
            elapsed = clock.monotonic()

    try:
        with _watchdog(seed):
            run_on_virtual_time(main(), unhandled)
    except Exception as exc:  # noqa: BLE001 - a stalled or broken world is the finding itself
        world.violation("runs to the end", f"{type(exc).__name__}: {exc}")
    for error in unhandled:
        world.violation("no task dies unseen", error)
    if world.settled_at is not None:
        invariants.check(world)
    return SeedResult(
        seed=seed,
        scenario=scenario.describe(),
        violations=[(v.invariant, v.detail) for v in world.violations],
        digest=_digest(world),
        virtual_seconds=elapsed,
        zoho_calls=world.zoho.calls().accepted,
        records=len(world.db.sync_log),
        trace=world.lines,
    )


@contextlib.contextmanager
def _watchdog(seed: int) -> Iterator[None]:
    """A loop that never awaits (a busy wait) stops virtual time and the loop's own livelock check with
    it: a real-time alarm turns it into the seed's violation instead of a hung search."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def hung(_signum: int, _frame: Any) -> None:
        raise SimulationStalled(f"seed {seed} ran {HUNG_SECONDS:.0f} s of real time: code that never awaits")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, HUNG_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_seeds(seeds: Iterable[int]) -> Iterator[SeedResult]:
    for seed in seeds:
        yield run_seed(seed)


def _digest(world: World) -> str:
    state: list[Any] = [
        [(r.topic, r.partition, r.offset, r.entity_id, str(r.outcome), r.zoho_id) for r in world.db.sync_log],
        [sorted(r.items()) for r in world.zoho.records("customers")],
        [sorted(r.items()) for r in world.zoho.records("invoices")],
        [world.broker.committed(GROUP, t, p) for t in world.topics for p in range(world.scenario.partitions)],
        world.zoho.calls().accepted,
    ]
    return hashlib.sha256(repr(state).encode()).hexdigest()[:16]


def _quiet_logs(world: World | None) -> None:
    """The pipeline's log lines: dropped (thousands of seeds), or kept in the trace of a replayed seed."""
    if world is None:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
        return

    def keep(_logger: Any, method: str, event: dict[str, Any]) -> str:
        message = event.pop("event", "")
        world.trace(f"  log {method} {message} {event}")
        raise structlog.DropEvent

    structlog.configure(
        processors=[keep],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=False,
    )


def timed(seeds: Iterable[int]) -> tuple[list[SeedResult], float]:
    started = time.perf_counter()
    results = list(run_seeds(seeds))
    return results, time.perf_counter() - started


__all__ = ["Scenario", "SeedResult", "run_seed", "run_seeds", "timed"]
