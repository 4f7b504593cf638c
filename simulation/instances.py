"""The zoho-cdc processes of a simulated world: the real `Worker` of `zoho-cdc run`, on in-memory services.

An instance is built as `LiveSync` builds one (a `SyncSession` and its `Worker`), with the session's
PostgreSQL, Kafka and Zoho swapped for the world's stand-ins. What PostgreSQL shares between processes
(the rate window, the daily budget, the cached token, the sync tables) is one object for all of them;
what a process holds alone (its consumer, producer, HTTP pool, caches) is built afresh at each start.
A kill is SIGKILL: every task of the process is cancelled where it stands, its stand-ins refuse to act
for it again, and its consumer vanishes from the group without leaving (the group notices after the
session timeout).

A start while PostgreSQL is down is refused as `zoho-cdc run` refuses it (`check_database`'s one
sentence, exit 1): a documented refusal, not a violation. The process is then brought back as the
deployment's supervisor does (docker-compose.yml: `restart: unless-stopped`), after Docker's backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

import psycopg

from connectors.zoho.client import ZohoClient
from consumer.metrics import Metrics
from consumer.pipeline.durability.organisations import Organisation
from consumer.service.wiring import ServiceUnavailable, SyncSession
from consumer.service.worker import Worker
from consumer.service.zoho_config import zoho_config
from simulation.database.store import MemoryStore
from simulation.loop import CURRENT, Process, ProcessKilled

#: Docker's restart backoff (moby's restart manager): 100 ms after the first exit, doubled at each
#: exit in a row, at most a minute.
RESTART_FIRST_DELAY: Final = 0.1
RESTART_MAX_DELAY: Final = 60.0

if TYPE_CHECKING:
    from consumer.settings import Settings
    from simulation.database.source import MemorySource
    from simulation.database.tables import MemoryDatabase
    from simulation.kafka.broker import MemoryBroker
    from simulation.scenario import Scenario
    from simulation.zoho import InProcessZoho


class World(Protocol):
    """What the world's processes and timeline steps reach (`simulation.world.World`)."""

    scenario: Scenario
    settings: Settings
    rng: random.Random
    broker: MemoryBroker
    db: MemoryDatabase
    source: MemorySource
    zoho: InProcessZoho
    shared: Any  # `simulation.world.Shared`: the stores PostgreSQL shares between processes
    instances: list[Instance]
    topics: tuple[str, ...]
    people_changed: set[tuple[str, str]]
    poisoned: set[str]  # ids of the records no row explains (`Acts.poison`)
    commands: list[Command]  # one-shot commands started beside the live sync
    consumers_of: dict[str, list[Any]]  # each process's Kafka consumers, by process name

    def trace(self, line: str) -> None: ...

    def violation(self, invariant: str, detail: str) -> None: ...

    def zoho_id(self, entity_type: str, entity_id: str) -> str | None: ...


class ProcessSlot:
    """Where the world runs one kind of process: started, killed (SIGKILL), started again."""

    def __init__(self, world: World, label: str) -> None:
        self.world = world
        self.label = label
        self.starts = 0
        self.kills = 0
        self.process: Process | None = None
        self.task: asyncio.Task[Any] | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self) -> None:
        if self.running:
            return
        self.starts += 1
        self.process = Process(f"{self.label}#{self.starts}")
        context = contextvars.copy_context()
        context.run(CURRENT.set, self.process)
        self.task = asyncio.get_running_loop().create_task(self._main(), context=context)
        self.task.add_done_callback(self._ended)

    def kill(self) -> None:
        """SIGKILL: nothing of the process runs again; its consumers leave no goodbye."""
        if not self.running or self.process is None:
            return
        for consumer in self.world.consumers_of.pop(self.process.name, []):
            self.world.broker.kill(consumer)
        self.kills += 1
        self.process.kill()
        self.world.trace(f"killed {self.process.name}")

    async def _main(self) -> Any:
        raise NotImplementedError

    def _ended(self, task: asyncio.Task[Any]) -> None:
        """A process ends by a kill, a stop, or an error: an error on any input is a violation."""
        if task.cancelled():
            return
        error = task.exception()
        if error is None or isinstance(error, ProcessKilled):
            return
        if isinstance(error, ServiceUnavailable):
            return self._refused(error)
        self.world.violation("process exited", f"{self.process.name if self.process else '?'}: {error!r}")

    def _refused(self, error: ServiceUnavailable) -> None:
        """A start refused with the command's one sentence (PostgreSQL away): the operator's to run again."""
        self.world.trace(f"refused {self.process.name if self.process else '?'}: {error}")


class Instance(ProcessSlot):
    """One `zoho-cdc run` process: the live sync's worker in the consumer group."""

    def __init__(self, world: World, index: int) -> None:
        super().__init__(world, f"zoho-cdc-{index}")
        self.worker: Worker | None = None
        self.refusals = 0  # starts refused in a row (the supervisor's backoff grows with them)
        self._supervised: asyncio.TimerHandle | None = None  # the supervisor's pending restart

    def stop(self) -> None:
        """SIGTERM: the worker drains, commits and leaves the group (a stopped process stays stopped)."""
        if self._supervised is not None:
            self._supervised.cancel()
            self._supervised = None
        if self.running and self.worker is not None:
            self.worker.stop("signal")

    def _refused(self, error: ServiceUnavailable) -> None:
        """A start refused with `run`'s one sentence: the supervisor starts the process again later."""
        self.refusals += 1
        delay = min(RESTART_FIRST_DELAY * 2 ** (self.refusals - 1), RESTART_MAX_DELAY)
        name = self.process.name if self.process else "?"
        self.world.trace(f"refused {name}: {error}; the supervisor restarts it in {delay:.1f} s")
        self._supervised = asyncio.get_running_loop().call_later(delay, self._supervised_start)

    def _supervised_start(self) -> None:
        self._supervised = None
        self.start()

    async def _main(self) -> Any:
        async with session(self.world) as opened:
            self.refusals = 0  # Docker resets its backoff after 10 s of running; a start that passes runs on
            self.worker = Worker(opened, opened.run_options(opened.settings.consumer_group))
            return await self.worker.run()


class Command(ProcessSlot):
    """A one-shot command run beside the live sync (`zoho-cdc backfill`), in a process of its own."""

    def __init__(self, world: World, label: str, command: Callable[[SyncSession], Awaitable[Any]]) -> None:
        super().__init__(world, label)
        self.command = command
        self.result: Any = None

    async def _main(self) -> Any:
        async with session(self.world) as opened:
            self.result = await self.command(opened)
            return self.result


@contextlib.asynccontextmanager
async def session(world: World) -> AsyncIterator[SyncSession]:
    """The process's `SyncSession`, as `consumer.service.wiring.sync_session` opens one, on the world's
    stand-ins: its own store handle, HTTP pool and producer; the stores PostgreSQL shares, shared."""
    settings = world.settings
    try:  # `sync_session`'s `check_database`: a start while PostgreSQL is down ends in one sentence
        world.db.check_available()
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable(f"Cannot connect to PostgreSQL at DATABASE_URL: {exc}") from None
    store = MemoryStore(world.db, organization_id=settings.zoho_organization_id)
    client = ZohoClient(
        zoho_config(settings),
        token_store=world.shared.tokens,
        budget_store=world.shared.budget,
        window_store=world.shared.window,
        rng=random.Random(world.rng.random()),
        pool=world.zoho.pool(),
    )
    producer = world.broker.producer()
    await store.open()
    await producer.start()
    organisation = Organisation(settings.zoho_organization_id, live=True)
    try:
        yield SyncSession(settings, store, client, Metrics(), producer, organisation)
    finally:
        await client.aclose()
        await producer.stop()
        await store.close()
