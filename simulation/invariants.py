"""The guarantee, checked on a settled world (`World.run` checks settling and the quiet period itself).

- every record below a partition's committed offset has its durable sync-log row, and everything is
  committed;
- Zoho holds one record per source entity in its latest mapped state and status: `zoho-cdc reconcile`'s
  own comparison of the two sides finds nothing missing, duplicated or drifted, except for entities whose
  newest outcome parks them (dead-lettered: the letter is waiting for an operator) and records people
  changed in Zoho (reported Zoho ahead, as designed);
- at most one payment per invoice made by zoho-cdc;
- never more calls accepted in one rate window than the limit, and no call refused for the window or
  the concurrency limit (zoho-cdc must stay under both, not lean on Zoho's refusals);
- one dead letter per record (a copy is allowed only from a kill between its produce and its row).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from consumer.jobs.reconcile.comparison import compare
from consumer.jobs.reconcile.sides import SourceSnapshot, ZohoSnapshot
from consumer.model.outcomes import SyncOutcome
from consumer.model.plan import MappingConfig
from consumer.pipeline.decision.parents import REFUSED_BEFORE
from consumer.pipeline.effects.dead_letter_topic import H_OFFSET, H_PARTITION, H_REPROCESS_COUNT, H_TOPIC

if TYPE_CHECKING:
    from simulation.world import World

PARKED = frozenset({SyncOutcome.DEAD_LETTERED, SyncOutcome.FAILED})


def check(world: World) -> None:
    _offsets(world)
    _zoho_matches_source(world)
    _one_payment_per_invoice(world)
    _within_limits(world)
    _one_letter_per_record(world)


def _offsets(world: World) -> None:
    from simulation.world import GROUP

    logged = {(r.topic, r.partition, r.offset) for r in world.db.sync_log if r.consumer_group == GROUP}
    for topic in world.topics:
        for partition in range(world.scenario.partitions):
            committed = world.broker.committed(GROUP, topic, partition) or 0
            for record in world.broker.records(topic, partition):
                if record.offset < committed and (topic, partition, record.offset) not in logged:
                    world.violation(
                        "outcome before commit", f"{topic}/{partition}@{record.offset} committed, no row"
                    )


def parked(world: World) -> set[tuple[str, str]]:
    """Entities whose newest sync-log row parks them until an operator acts (a dead letter).

    The same refused state seen again (the echo of its `failed` write-back, a replay) is recorded
    `skipped` with no call and no second letter (README, "a refused state is tried once"): the first
    letter still waits, so such a row leaves the entity as parked as before it.

    A child dead-lettered for its parent and still waiting for it (`zoho_waiting_for_parent`) is parked
    only while that parent has no Zoho record: once the parent is synced the child is sent without an
    operator (README, Invoices: "once the customer is synced ... the waiting invoices are sent")."""
    newest: dict[tuple[str, str], Any] = {}
    for row in world.db.sync_log:
        if row.entity_id is not None and not _refused_again(row):
            newest[(row.entity_type, row.entity_id)] = row.outcome
    waiting = {(kind, entity_id): parent for (_, kind, entity_id), parent in world.db.waiting.items()}
    return {
        key
        for key, outcome in newest.items()
        if outcome in PARKED
        and key[1] not in world.poisoned
        and not (key in waiting and world.zoho_id(*waiting[key]) is not None)
    }


def _refused_again(row: Any) -> bool:
    return row.outcome == SyncOutcome.SKIPPED and row.error == REFUSED_BEFORE


def _zoho_matches_source(world: World) -> None:
    organisation = world.settings.zoho_organization_id
    entity_map = {
        (t, i): row["zoho_id"]
        for (org, t, i), row in world.db.entity_map.items()
        if org == organisation and row.get("zoho_id")
    }
    map_status = {
        (t, i): (row.get("zoho_status"), row.get("zoho_ahead"))
        for (org, t, i), row in world.db.entity_map.items()
        if org == organisation and row.get("zoho_id")
    }
    source = SourceSnapshot(
        customers=world.source.rows("customers"),
        invoices=world.source.rows("customer_invoices"),
        entity_map=entity_map,
        map_status=map_status,
    )
    customers, invoices = world.zoho.records("customers"), world.zoho.records("invoices")
    zoho = ZohoSnapshot(customers=customers, invoices=invoices)
    zoho.detailed = {(t, r[f"{t.value}_id"]) for t, rs in _typed(customers, invoices) for r in rs}
    report = compare(
        source, zoho, MappingConfig.from_settings(world.settings), list_filter=_list_filter(world)
    )
    still_parked = parked(world)
    if world.reprocessed:  # re-driven in calm weather with valid rows: nothing may stay parked
        for entity_type, entity_id in sorted(still_parked):
            world.violation(
                "dead letters re-driven reach Zoho", f"{entity_type} {entity_id} still dead-lettered"
            )
        still_parked = set()
    excused = still_parked | world.people_changed | edited_by_hand_since(world)
    for found, name in ((report.missing, "missing"), (report.drift, "drift")):
        for finding in found:
            if (finding.entity_type, finding.entity_id) not in excused:
                world.violation("one record per entity in its latest state", f"{name}: {finding}")
    for duplicate in report.duplicates:
        world.violation("one record per entity", f"duplicate in Zoho: {duplicate}")
    for ahead in report.zoho_ahead:
        if (ahead.entity_type, ahead.entity_id) not in world.people_changed:
            world.violation("zoho ahead only when people changed Zoho", str(ahead))


def edited_by_hand_since(world: World) -> set[tuple[str, str]]:
    """Customers someone edited in Zoho whose mapped source state has not changed since: the sync does
    not watch Zoho for edits, so the person's edit stands until the source changes what it maps to."""
    return {
        ("customer", customer_id)
        for customer_id, at_edit in world.edited_by_hand.items()
        if world.customer_body(customer_id) == at_edit
    }


def _typed(customers: list[dict[str, Any]], invoices: list[dict[str, Any]]) -> Any:
    from consumer.model.events import EntityType

    return ((EntityType.CUSTOMER, customers), (EntityType.INVOICE, invoices))


def _list_filter(world: World) -> str:
    from consumer.service.zoho_config import zoho_config

    return zoho_config(world.settings).account_number_list_filter


def _one_payment_per_invoice(world: World) -> None:
    paid: Counter[str] = Counter()
    for payment in world.zoho.records("payments"):
        if payment.get("reference_number"):  # made by zoho-cdc (the portal's carry none)
            for applied in payment.get("invoices", []):
                paid[str(applied["invoice_id"])] += 1
    for invoice_id, payments in paid.items():
        if payments > 1:
            world.violation(
                "at most one payment per paid invoice", f"invoice {invoice_id}: {payments} payments"
            )


def _within_limits(world: World) -> None:
    calls = world.zoho.calls()
    if calls.max_in_window > world.scenario.per_window:
        world.violation(
            "rate window", f"{calls.max_in_window} calls in one window > {world.scenario.per_window}"
        )
    refused = {limit: n for limit, n in calls.refusals.items() if limit != "burst"}
    if refused:
        world.violation("stay under Zoho's limits", f"429s zoho-cdc ran into (not injected): {refused}")


def _one_letter_per_record(world: World) -> None:
    letters: Counter[tuple[str, ...]] = Counter()
    for record in world.broker.records(world.settings.dlq_topic, 0):
        headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in (record.headers or ())}
        # a letter re-driven and refused again is a new letter, with its reprocess count one higher
        where = (H_TOPIC, H_PARTITION, H_OFFSET, H_REPROCESS_COUNT)
        letters[tuple(str(headers.get(h, "")) for h in where)] += 1
    copies = sum(n - 1 for n in letters.values())
    kills = sum(i.kills for i in world.instances)
    if copies > kills:
        world.violation("one dead letter per record", f"{copies} copies with {kills} kills: {dict(letters)}")
