"""One seed's history, drawn before anything runs: the world's size, Zoho's weather and a timeline.

The timeline mixes what the application does to the source tables, what happens to the zoho-cdc
processes (kills at any moment, restarts, a member joining, a graceful stop), what people do in Zoho
(portal payments, customers made inactive by hand, records made before the tool), and what the
infrastructure does (PostgreSQL briefly gone, topic compaction). Drawing it all up front from one
`random.Random(seed)` makes the history a function of the seed, whatever the pipeline does with it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Final

#: Virtual seconds during which the timeline's steps happen; the world then settles and is checked.
ACTIVE_SECONDS: Final = 120.0

CUSTOMER_STATUSES: Final = ("active", "active", "active", "suspended", "closed")
#: The order an invoice's status moves in the source (void may come from any of them).
INVOICE_FORWARD: Final = ("draft", "sent", "paid")


@dataclass(frozen=True)
class Weather:
    """Zoho's faults for the active part of a run (probabilities per accepted request, as `SimFaults`)."""

    error_500: float = 0.0
    error_503: float = 0.0
    lost_response: float = 0.0
    applied_502: float = 0.0
    timeout: float = 0.0
    drop_request: float = 0.0
    latency: float = 0.0
    burst_429: int = 0
    token_refusal_seconds: float = 0.0  # every token refresh refused from the start, this long

    def as_faults(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v}


@dataclass(frozen=True)
class Step:
    """One thing that happens at virtual second `at`; `kind` names the world's handler."""

    at: float
    kind: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Scenario:
    seed: int
    instances: int  # zoho-cdc processes started at 0 (1-3), in one consumer group
    partitions: int  # per source topic
    per_window: int  # Zoho's calls per 60 s window (and the client's setting)
    weather: Weather
    made_before: int  # customers already in Zoho, made by an older integration (adoption)
    steps: tuple[Step, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        kinds: dict[str, int] = {}
        for step in self.steps:
            kinds[step.kind] = kinds.get(step.kind, 0) + 1
        return (
            f"seed {self.seed}: {self.instances} instance(s), {self.partitions} partition(s), "
            f"{self.per_window}/window, faults {self.weather.as_faults() or 'none'}, "
            f"{self.made_before} made before, steps {kinds}"
        )


def draw(seed: int) -> Scenario:
    rng = random.Random(seed)
    instances = rng.choice((1, 1, 2, 3))
    timeline = _Timeline(rng, instances)
    timeline.draw()
    return Scenario(
        seed=seed,
        instances=instances,
        partitions=rng.choice((1, 2, 3)),
        per_window=rng.choice((8, 20, 100)),
        weather=_weather(rng),
        made_before=timeline.made_before,
        steps=tuple(sorted(timeline.steps + _edits_by_hand(seed, timeline), key=lambda s: s.at)),
    )


def _edits_by_hand(seed: int, timeline: _Timeline) -> list[Step]:
    """A person editing a customer's email in Zoho. Drawn from a stream of its own, so the rest of every
    seed's world stays what it was before these were drawn."""
    rng = random.Random(f"edits-by-hand-{seed}")  # a str seed: the same in every process
    edits = []
    for _ in range(rng.choice((0, 0, 0, 1, 2))):
        at = round(rng.uniform(0.0, ACTIVE_SECONDS), 3)
        edits.append(Step(at, "edit_by_hand", (rng.randrange(len(timeline.customers)),)))
    return edits


def _weather(rng: random.Random) -> Weather:
    if rng.random() < 0.35:
        return Weather()
    p = rng.choice((0.02, 0.05, 0.1))
    return Weather(
        error_500=p * rng.random(),
        error_503=p * rng.random(),
        lost_response=p * rng.random(),
        applied_502=p * rng.random(),
        timeout=p * rng.random() * 0.3,
        drop_request=p * rng.random(),
        latency=rng.choice((0.0, 0.05, 0.4)),
        burst_429=rng.choice((0, 0, 3)),
        token_refusal_seconds=rng.choice((0.0, 0.0, 0.0, 10.0, 30.0)),  # drawn last: the rest stays as it was
    )


class _Timeline:
    """Draws the steps, keeping a model of what exists so every source change is a valid one."""

    def __init__(self, rng: random.Random, instances: int) -> None:
        self.rng = rng
        self.instances = instances
        self.steps: list[Step] = []
        self.customers: list[float] = []  # when each customer is inserted
        self.invoices: list[tuple[float, str]] = []  # when each invoice is inserted, its status as drawn
        self.made_before = 0

    def at(self, after: float = 0.0) -> float:
        return round(self.rng.uniform(after, ACTIVE_SECONDS), 3)

    def add(self, at: float, kind: str, *args: Any) -> None:
        self.steps.append(Step(at, kind, args))

    def draw(self) -> None:
        rng = self.rng
        self.made_before = rng.choice((0, 0, 1, 2))
        for _ in range(rng.randint(2, 5)):
            self.customer()
        for _ in range(rng.randint(4, 16)):
            self.change()
        self.processes()
        self.outside()

    def customer(self) -> None:
        index = len(self.customers)
        # Customers the older integration made first are inserted at once (they exist before go-live).
        at = 0.0 if index < self.made_before else round(self.at() / 2, 3)
        self.customers.append(at)
        large = self.rng.random() < 0.2  # notes past TOAST's threshold: updates carry the placeholder
        self.add(at, "insert_customer", index, self.rng.choice(CUSTOMER_STATUSES[:4]), large)

    def change(self) -> None:
        rng = self.rng
        roll = rng.random()
        customer = rng.randrange(len(self.customers))
        at = self.at(self.customers[customer])  # a change comes after its row's insert
        if roll < 0.35 or not self.invoices:
            self.invoice(customer, at)
        elif roll < 0.6:
            self.add(at, "update_customer", customer, rng.choice(("email", "name", "notes")))
        elif roll < 0.7:
            self.add(at, "customer_status", customer, rng.choice(CUSTOMER_STATUSES))
        else:
            self.advance_invoice()

    def invoice(self, customer: int, at: float) -> None:
        index = len(self.invoices)
        status = self.rng.choice(("draft", "draft", "sent", "paid"))
        self.invoices.append((at, status))
        self.add(at, "insert_invoice", index, customer, status)

    def advance_invoice(self) -> None:
        index = self.rng.randrange(len(self.invoices))
        born, status = self.invoices[index]
        if status == "void":
            return
        if self.rng.random() < 0.15:
            new = "void"
        elif status == "paid":
            return
        else:
            new = INVOICE_FORWARD[INVOICE_FORWARD.index(status) + 1]
        at = self.at(born)  # after the insert or the previous move of the same invoice
        self.invoices[index] = (at, new)
        self.add(at, "invoice_status", index, new)

    def processes(self) -> None:
        rng = self.rng
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            who = rng.randrange(self.instances)
            at = self.at()
            self.add(at, "kill", who)
            self.add(round(at + rng.choice((0.5, 3.0, 15.0)), 3), "restart", who)
        if rng.random() < 0.25:
            self.add(self.at(), "join")  # one more member: a rebalance (two in a row if a kill is near)
        if rng.random() < 0.15:
            self.add(self.at(), "stop", rng.randrange(self.instances))  # SIGTERM: drained and committed

    def outside(self) -> None:
        rng = self.rng
        if self.invoices and rng.random() < 0.3:
            self.add(self.at(), "portal_payment", rng.randrange(len(self.invoices)))
        if rng.random() < 0.2:
            self.add(self.at(), "inactive_by_hand", rng.randrange(len(self.customers)))
        if rng.random() < 0.2:
            self.add(self.at(), "db_outage", rng.choice((1.0, 8.0)))
        if rng.random() < 0.2:
            self.add(self.at(), "compact")
        if rng.random() < 0.15:
            self.add(self.at(), "backfill")  # `zoho-cdc backfill` beside the live sync
        if rng.random() < 0.15:
            self.add(self.at(), "poison", rng.choice(("huge_numeric", "unknown_op", "not_json")))
        if rng.random() < 0.1:
            self.add(self.at(), "reprocess")  # `zoho-cdc dlq reprocess` beside it, faults still on
