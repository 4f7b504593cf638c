"""A replay re-reading a record already in the dead-letter topic publishes no second letter (README, Dead
letters: "one letter per refused record"), for every refusal the replay meets again whatever its group.

Found by the simulation (seeds 264, 427, ...): an invoice whose customer does not exist in the source was
dead-lettered by the live sync, then again by a `backfill` beside it, so `dlq reprocess` met two copies.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from consumer.metrics import Metrics
from consumer.model.events import EntityType
from consumer.model.outcomes import SyncOutcome
from consumer.pipeline.durability.recording import OutcomeRecorder
from consumer.pipeline.durability.rows import EntityUpdate
from consumer.pipeline.effects.dead_letter_topic import DeadLetter
from consumer.pipeline.effects.dead_lettering import DeadLetterDesk, Refusal
from consumer.pipeline.intake.scheduler import InboundRecord, WorkItem
from simulation.database.source import MemorySource
from simulation.database.store import MemoryStore
from simulation.database.tables import MemoryDatabase
from tests.simulation.test_source import FakeBroker

INVOICES = "zoho-cdc.public.customer_invoices"
DLQ = "zoho-sync.dlq"
MISSING_CUSTOMER = Refusal(
    "customer c1 of invoice i1 does not exist in the source", "source", "MissingCustomer"
)


class Letters:
    """The DLQ topic: what was produced to it."""

    def __init__(self) -> None:
        self.published: list[DeadLetter] = []

    async def publish(self, letter: DeadLetter) -> None:
        self.published.append(letter)


@pytest.fixture
def db() -> MemoryDatabase:
    return MemoryDatabase(MemorySource(FakeBroker(), random.Random(1)))


@pytest.fixture
async def store(db: MemoryDatabase) -> AsyncIterator[MemoryStore]:
    async with MemoryStore(db, organization_id="org-1", pauses=False) as opened:
        yield opened


def desk(store: MemoryStore, group: str, letters: Letters) -> DeadLetterDesk:
    recorder = OutcomeRecorder(store, group, Metrics())
    return DeadLetterDesk(letters, recorder, DLQ, max_reprocess=3, topic_prefix="zoho-cdc")  # type: ignore[arg-type]


def invoice_record(topic: str = INVOICES) -> WorkItem:
    return WorkItem(InboundRecord(topic, 0, 7, b'{"id": "i1"}', b"{}"), None, None)


@pytest.mark.parametrize("refusal", [MISSING_CUSTOMER, Refusal("unknown op 'x'", "decode", "DecodeError")])
async def test_a_replay_meeting_the_same_refusal_publishes_no_second_letter(
    store: MemoryStore, db: MemoryDatabase, refusal: Refusal
) -> None:
    letters = Letters()
    await desk(store, "zoho-sync", letters).dead_letter(invoice_record(), refusal)
    await desk(store, "zoho-sync.backfill.1", letters).dead_letter(invoice_record(), refusal)
    assert len(letters.published) == 1
    rows = [(r.consumer_group, r.outcome) for r in db.sync_log]
    assert rows == [("zoho-sync", SyncOutcome.DEAD_LETTERED), ("zoho-sync.backfill.1", SyncOutcome.SKIPPED)]
    assert "already in the dead-letter topic (dead-lettered by zoho-sync)" in (db.sync_log[1].error or "")


async def test_a_letter_re_driven_and_refused_again_is_a_new_letter(store: MemoryStore) -> None:
    """`dlq reprocess` re-drives on purpose: refused again, the letter goes back with its count raised."""
    letters = Letters()
    await desk(store, "zoho-sync", letters).dead_letter(invoice_record(), MISSING_CUSTOMER)
    await desk(store, "zoho-sync.dlq-reprocess", letters).dead_letter(invoice_record(DLQ), MISSING_CUSTOMER)
    assert [letter.reprocess_count for letter in letters.published] == [0, 1]


async def test_a_replay_meeting_zoho_unavailable_again_publishes_no_second_letter_but_remembers_it(
    store: MemoryStore, db: MemoryDatabase
) -> None:
    """Simulation seed 3980: the live sync dead-lettered a customer while Zoho was unavailable (retries
    exhausted), and a backfill beside it, meeting Zoho unavailable again, published a second copy. One
    letter is enough: `dlq reprocess` re-drives it against the row as it is then. The replay still remembers
    the refused state in the entity map, as its own letter would have."""
    letters = Letters()
    exhausted = Refusal("create_customer: retries exhausted (503)", "exhausted", "Unavailable")
    refused = EntityUpdate(EntityType.INVOICE, "i1", None, None, 7, None, "INV-1", rejected_digest="d1")
    await desk(store, "zoho-sync", letters).dead_letter(invoice_record(), exhausted)
    await desk(store, "zoho-sync.backfill.1", letters).dead_letter(
        invoice_record(), exhausted, entity=refused
    )
    assert len(letters.published) == 1
    rows = [(r.consumer_group, r.outcome) for r in db.sync_log]
    assert rows == [("zoho-sync", SyncOutcome.DEAD_LETTERED), ("zoho-sync.backfill.1", SyncOutcome.SKIPPED)]
    assert db.entity_map[("org-1", "invoice", "i1")]["rejected_digest"] == "d1"
