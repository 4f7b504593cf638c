"""One seed's world: the stand-ins, the zoho-cdc instances, the timeline played on them, then the checks.

`World.run` plays the scenario's steps at their virtual times, then lets the world settle (faults off,
every instance running, until every offset is committed and nothing moves), watches a quiet period in
which nothing may call Zoho or log anything, stops the instances as SIGTERM does, and hands the world
to `simulation.invariants`.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field, replace
from typing import Any, Final

from connectors import clock
from connectors.zoho.stores.memory import MemoryDailyBudgetStore, MemoryRateWindowStore, MemoryTokenStore
from connectors.zoho.wire.protocol import API_PATH
from connectors.zoho_sim.config import SimConfig, SimFaults, SimLimits
from consumer.entities.customers.rules import customer_payload
from consumer.entities.registry import source_topics
from consumer.model.plan import MappingConfig
from consumer.pipeline.effects.dead_letter_topic import letter_id, parse_headers
from consumer.pipeline.intake.kafka_clients import serve_in_process
from consumer.settings import Settings
from simulation.database.source import MemorySource
from simulation.database.store import MemoryDatabase
from simulation.instances import Command, Instance
from simulation.kafka.broker import MemoryBroker
from simulation.loop import CURRENT, current_check
from simulation.scenario import Scenario, Step
from simulation.timeline import Acts
from simulation.zoho import ORIGIN, InProcessZoho

#: How long the world may take to settle after the timeline (virtual seconds) before that is a violation.
SETTLE_LIMIT: Final = 1800.0
#: The quiet period after settling: nothing may call Zoho or write the sync log in it.
QUIET_SECONDS: Final = 150.0
SETTLE_POLL: Final = 5.0
#: How long the `timeout` fault holds a reply: just past the client's 12 s call deadline (connect 2 + read
#: 10), within the 2 s the client keeps counting the call's permit after it. Production's defaults have the
#: same shape (a 35 s deadline, the simulator's 35 s hold, a 37 s permit); a Zoho that went on working on
#: a request longer than that would see one call too many in flight (docs/SIMULATION.md).
TIMEOUT_HOLD: Final = 13.0
GROUP: Final = "zoho-sync"
REPROCESS_GROUP: Final = f"{GROUP}.dlq-reprocess"  # `consumer.jobs.reprocess.reprocess_group`
PREFIX: Final = "zoho-cdc"
SIM: Final = SimConfig()  # the simulated organisation and credentials (the simulator's defaults)


@dataclass
class Shared:
    """What every instance shares through PostgreSQL in production: token, daily budget, rate window."""

    tokens: MemoryTokenStore = field(default_factory=MemoryTokenStore)
    budget: MemoryDailyBudgetStore = field(default_factory=MemoryDailyBudgetStore)
    window: MemoryRateWindowStore = field(default_factory=MemoryRateWindowStore)


@dataclass
class Violation:
    invariant: str
    detail: str


class World:
    def __init__(self, scenario: Scenario, *, trace: bool = False) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed * 7919 + 1)
        self.tracing = trace
        self.lines: list[str] = []
        self.violations: list[Violation] = []
        self.broker = MemoryBroker(
            random.Random(self.rng.random()), session_timeout=10.0, guard=current_check
        )
        self.topics = source_topics(PREFIX)
        for topic in self.topics:
            self.broker.create_topic(topic, scenario.partitions)
        self.settings = _settings(scenario)
        self.broker.create_topic(self.settings.dlq_topic, 1)
        self.source = MemorySource(self.broker, random.Random(self.rng.random()), topic_prefix=PREFIX)
        self.db = MemoryDatabase(self.source, guard=current_check)
        self.zoho = InProcessZoho(_sim_config(scenario, self.rng.randrange(2**31)))
        self.shared = Shared()
        self.instances = [Instance(self, i) for i in range(scenario.instances)]
        self.acts = Acts(self)
        self.settled_at: float | None = None
        self.people_changed: set[tuple[str, str]] = set()  # (entity type, source id) changed in Zoho by hand
        # Customers someone edited in Zoho: source id -> the body its source row mapped to at that moment.
        self.edited_by_hand: dict[str, dict[str, Any] | None] = {}
        self.consumers_of: dict[str, list[Any]] = {}
        self.commands: list[Command] = []
        self.poisoned: set[str] = set()
        self.reprocessed = False  # every dead letter was re-driven once the world had settled
        serve_in_process(self.settings.kafka_bootstrap_servers, self.consumer)  # its address: this broker
        self.broker.on_commit = self._committing

    def consumer(self, bootstrap_servers: str, group_id: str | None, **kw: Any) -> Any:
        """A consumer of the world's broker, for whichever process asks (`kafka_clients.serve_in_process`):
        its process's kill makes it vanish from its group."""
        consumer = self.broker.consumer(bootstrap_servers, group_id, **kw)
        process = CURRENT.get()
        if process is not None:
            self.consumers_of.setdefault(process.name, []).append(consumer)
        return consumer

    def zoho_id(self, entity_type: str, entity_id: str) -> str | None:
        """The Zoho id the entity map holds for a source entity now (what a person would look up)."""
        row = self.db.entity_map.get((self.settings.zoho_organization_id, entity_type, entity_id))
        return row.get("zoho_id") if row else None

    def customer_body(self, customer_id: str) -> dict[str, Any] | None:
        """The Zoho body the source row of a customer maps to now (None: no such row)."""
        row = self.source.row("customers", customer_id)
        return None if row is None else customer_payload(row, MappingConfig.from_settings(self.settings))

    # --- reporting ---------------------------------------------------------------------
    def trace(self, line: str) -> None:
        if self.tracing:
            self.lines.append(f"{clock.monotonic():9.3f} {line}")

    def violation(self, invariant: str, detail: str) -> None:
        self.violations.append(Violation(invariant, detail))
        self.trace(f"VIOLATION {invariant}: {detail}")

    # --- the run ---------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await self._run()
        finally:
            serve_in_process(self.settings.kafka_bootstrap_servers, None)

    async def _run(self) -> None:
        steps = list(self.scenario.steps)
        while steps and steps[0].at == 0.0:  # what exists before go-live
            self._act(steps.pop(0))
        for instance in self.instances:
            instance.start()
        self.zoho.set_faults(SimFaults(**self.scenario.weather.as_faults(), timeout_hold=TIMEOUT_HOLD))
        for step in steps:
            await asyncio.sleep(max(0.0, step.at - clock.monotonic()))
            self._act(step)
        await self.settle()
        if self.settled_at is not None and self.broker.end_offset(self.settings.dlq_topic, 0):
            # The operator's job 3: the cause is gone (calm weather), every dead letter is re-driven.
            self.acts.reprocess()
            self.reprocessed = True
            await self.settle()
        if self.settled_at is not None:
            await self.quiet()
        await self.stop_all()

    def _act(self, step: Step) -> None:
        self.trace(f"step {step.kind} {step.args}")
        getattr(self.acts, step.kind)(*step.args)

    async def settle(self) -> None:
        """Calm weather, every instance up, until every offset is committed and nothing moves."""
        self.settled_at = None
        self.zoho.set_faults(SimFaults())
        self.db.unavailable_until = 0.0
        deadline = clock.monotonic() + SETTLE_LIMIT
        last = None
        while clock.monotonic() < deadline:
            for instance in self.instances:
                instance.start()  # one stopped or still draining when the timeline ended starts again
            await asyncio.sleep(SETTLE_POLL)
            now = self._progress()
            if now == last and self._all_committed() and not any(c.running for c in self.commands):
                self.settled_at = clock.monotonic()
                self.trace("settled")
                return
            last = now
        self.violation("settles", f"not settled {SETTLE_LIMIT:.0f} s after the timeline: {self._lag()}")

    async def quiet(self) -> None:
        before = self._progress()
        await asyncio.sleep(QUIET_SECONDS)
        after = self._progress()
        if after != before:
            self.violation("no loop", f"the world moved in the quiet period: {before} -> {after}")

    async def stop_all(self) -> None:
        for instance in self.instances:
            instance.stop()
        tasks = [i.task for i in self.instances if i.task is not None and not i.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=120.0)

    def _committing(self, group: str, offsets: dict[Any, int]) -> None:
        """At every commit: each record it passes that the log still holds has its durable sync-log row."""
        for tp, offset in offsets.items():
            since = self.broker.committed(group, tp.topic, tp.partition) or 0
            for record in self.broker.records(tp.topic, tp.partition):
                if (
                    since <= record.offset < offset
                    and not self.db.is_logged((group, tp.topic, tp.partition, record.offset))
                    and not self._copy_of_a_redriven_letter(group, record)
                ):
                    self.violation(
                        "outcome before commit",
                        f"{group} committed {tp.topic}/{tp.partition}@{offset}: "
                        f"offset {record.offset} has no durable row",
                    )

    def _copy_of_a_redriven_letter(self, group: str, record: Any) -> bool:
        """A second copy of a dead letter that `dlq reprocess` passed: "`dlq reprocess` re-drives one copy
        only (when both are read in the same run ...)" (README, The guarantee, Dead letters). The letter is
        one refused change event, and its one outcome is the row of the copy before it, durable by then (the
        commit passes only a contiguous prefix): the copy gets no row of its own. Any other record of the
        DLQ, and every record of the source topics, still needs its own row."""
        if group != REPROCESS_GROUP or record.topic != self.settings.dlq_topic:
            return False
        letter = letter_id(parse_headers(record.headers))
        return letter is not None and any(
            earlier.offset < record.offset
            and letter_id(parse_headers(earlier.headers)) == letter
            and self.db.is_logged((group, record.topic, record.partition, earlier.offset))
            for earlier in self.broker.records(record.topic, record.partition)
        )

    # --- what moves ------------------------------------------------------------------------
    def _progress(self) -> tuple[Any, ...]:
        ends = tuple(
            self.broker.end_offset(t, p) for t in self.topics for p in range(self.scenario.partitions)
        )
        dlq = self.broker.end_offset(self.settings.dlq_topic, 0)
        return (
            self.zoho.calls().accepted,
            len(self.db.sync_log),
            ends,
            dlq,
            len(self.db.pending_write_backs),
        )

    def _all_committed(self) -> bool:
        return not self._lag()

    def _lag(self) -> dict[str, int]:
        lag = {}
        for topic in self.topics:
            for partition in range(self.scenario.partitions):
                end = self.broker.end_offset(topic, partition)
                committed = self.broker.committed(GROUP, topic, partition) or 0
                if committed < end:
                    lag[f"{topic}/{partition}"] = end - committed
        return lag


def _settings(scenario: Scenario) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        topic_prefix=PREFIX,
        consumer_group=GROUP,
        kafka_bootstrap_servers=f"simulated-world-{scenario.seed}:9092",  # answered in process
        zoho_api_base=ORIGIN + API_PATH,
        zoho_accounts_url=ORIGIN,
        zoho_client_id=SIM.client_id,
        zoho_client_secret=SIM.client_secret,
        zoho_refresh_token=SIM.refresh_tokens[0],
        zoho_organization_id=SIM.organization_id,
        zoho_rate_per_minute=scenario.per_window,
        zoho_rate_window_seconds=60.0,
        zoho_max_concurrency=5,
        zoho_connect_timeout=2.0,
        zoho_read_timeout=10.0,
        zoho_max_attempts=5,
        zoho_retry_max_seconds=60.0,
        zoho_retry_base_seconds=0.5,
        # The token back-off at its defaults (2 minutes, doubling to 30): Zoho counts refused token
        # requests too, so a back-off under a minute keeps its 10-per-10-minutes block alive for ever.
        commit_interval_seconds=1.0,
        shutdown_timeout_seconds=10.0,
        kafka_session_timeout_ms=10_000,
    )


def _sim_config(scenario: Scenario, seed: int) -> SimConfig:
    return replace(
        SIM,
        seed=seed,
        limits=SimLimits(per_window=scenario.per_window, window_seconds=60.0, daily=100_000, concurrency=5),
    )
