"""`zoho-cdc adopt`: what going live would do with the records Zoho already holds, decided before it does it.

Reads the source tables, the entity map and Zoho's listings of the entities the source has rows of (200
records a call; a customer in full only where its list item does not show the account number, an invoice
only where a source invoice has its number, to see its reference). Each source entity gets the live sync's
own verdict (`consumer.pipeline.adoption.finder`): adopted by the id the source holds, adopted by which match
rule, created, or refused (several matches; a record another entity holds or whose key is another's).
Makes no write to Zoho; the decisions are pure (`decide`), the reading is `read_plan`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from connectors.zoho.resources.customers import account_number_of
from consumer.entities.customers.calls import differs
from consumer.entities.customers.rules import customer_payload, customer_zoho_status
from consumer.entities.invoices.status import zoho_invoice_stage
from consumer.entities.registry import spec_of
from consumer.jobs.reconcile.sides import SourceSnapshot, ZohoSnapshot, read_source
from consumer.model.events import EntityType
from consumer.model.plan import MappingConfig, as_text, payload_hash
from consumer.pipeline.effects.apply_options import rules_of

#: The verdicts, in the order a plan lists them.
MAPPED: Final = "already mapped"
BY_STORED_ID: Final = "adopted by stored id"
BY_RULE: Final = "adopted by rule"  # followed by the rule's name
CREATE: Final = "created"
AMBIGUOUS: Final = "ambiguous"
ANOTHERS: Final = "another entity's record"
NEVER: Final = "never sent"

#: Writes a create makes by the status the source asks for (the status tables in the README).
_CREATE_WRITES: Final = {"inactive": 2, "draft": 1, "sent": 2, "paid": 3, "void": 0}


@dataclass(frozen=True)
class Decision:
    """What going live does with one source entity."""

    entity_type: str
    entity_id: str
    natural_key: str
    verdict: str
    zoho_id: str | None = None
    candidates: tuple[str, ...] = ()
    note: str = ""
    writes: int = 0  # Zoho writes going live makes for it (a PUT where a mapped field differs, a create)
    reads: int = 0  # Zoho lookups going live makes first (the match rules of an entity not linked)
    same: bool = False  # adopted: every mapped field already matches (no PUT)
    payload_hash: str | None = None  # adopted and the same: the hash the entity map keeps (an echo is free)
    zoho_status: str | None = None  # adopted: the record's status, where the listing shows it


@dataclass
class AdoptionPlan:
    """The verdicts, what the plan itself cost, and what going live will cost."""

    decisions: list[Decision]
    plan_calls: int  # Zoho calls reading this plan made (listing pages, full reads)
    rate_per_minute: int
    daily_limit: int
    listing_pages: int = 0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.decisions:
            out[d.verdict] = out.get(d.verdict, 0) + 1
        return out

    @property
    def going_live_calls(self) -> int:
        """Calls the live sync makes for these entities once the plan's adoptions are recorded."""
        return sum(d.writes + d.reads for d in self.decisions)

    @property
    def going_live_writes(self) -> int:
        return sum(d.writes for d in self.decisions)

    @property
    def minutes(self) -> float:
        return round(self.going_live_calls / self.rate_per_minute, 1)

    @property
    def days(self) -> int:
        return max(1, math.ceil(self.going_live_calls / self.daily_limit)) if self.going_live_calls else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts(),
            "decisions": [asdict(d) for d in self.decisions],
            "plan_calls": self.plan_calls,
            "listing_pages": self.listing_pages,
            "going_live": {
                "calls": self.going_live_calls,
                "writes": self.going_live_writes,
                "minutes_at_rate": self.minutes,
                "rate_per_minute": self.rate_per_minute,
                "days_at_daily_limit": self.days,
                "daily_limit": self.daily_limit,
            },
        }


@dataclass
class _Records:
    """One entity's Zoho records as listed (or read in full), with what the rules look them up by."""

    by_id: dict[str, dict[str, Any]]
    key_of: Callable[
        [Mapping[str, Any]], str | None
    ]  # the source key a record carries ("" none, None unknown)
    value_of: Callable[[Mapping[str, Any], str], str]  # the value a record shows for a rule
    own_key: Callable[[Mapping[str, Any]], str]  # the key a source row's own record carries
    taken: dict[str, str] = field(default_factory=dict)  # zoho id -> the entity holding it


def decide(
    entity_type: EntityType,
    rows: Sequence[Mapping[str, Any]],
    entity_map: Mapping[tuple[str, str], str],
    records: _Records,
    rules: Sequence[str],
    mapping: MappingConfig,
    *,
    never_sent: Callable[[Mapping[str, Any]], bool],
    payload: Callable[[Mapping[str, Any], str], Mapping[str, Any]],
    same: Callable[[Mapping[str, Any], Mapping[str, Any]], bool],
    create_writes: Callable[[Mapping[str, Any]], int],
    stored_ids: bool = True,
) -> list[Decision]:
    """The verdict of each row, in row order (the first claimant of a record keeps it). Pure.
    `stored_ids` False: the source's id columns are another organisation's, so they are not used."""
    kind = entity_type.value
    for (mapped_type, entity_id), zoho_id in entity_map.items():
        if mapped_type == kind:
            records.taken.setdefault(zoho_id, entity_id)
    spec = spec_of(entity_type)
    deciding = _Deciding(spec, kind, entity_map, records, rules, never_sent, payload, same, create_writes)
    return [deciding.verdict(row, stored_ids=stored_ids) for row in rows]


@dataclass(frozen=True)
class _Deciding:
    """What `decide` decides one entity type's rows by."""

    spec: Any
    kind: str
    entity_map: Mapping[tuple[str, str], str]
    records: _Records
    rules: Sequence[str]
    never_sent: Callable[[Mapping[str, Any]], bool]
    payload: Callable[[Mapping[str, Any], str], Mapping[str, Any]]
    same: Callable[[Mapping[str, Any], Mapping[str, Any]], bool]
    create_writes: Callable[[Mapping[str, Any]], int]

    def verdict(self, row: Mapping[str, Any], *, stored_ids: bool) -> Decision:
        """Never sent, already mapped, adopted by the id the source holds (when `stored_ids`), else by
        the match rules."""
        spec, records = self.spec, self.records
        entity_id, key = str(row["id"]), as_text(row.get(spec.natural_key))
        base = {"entity_type": self.kind, "entity_id": entity_id, "natural_key": key}
        if self.never_sent(row):
            return Decision(**base, verdict=NEVER)
        mapped = self.entity_map.get((self.kind, entity_id))
        if mapped:
            return Decision(**base, verdict=MAPPED, zoho_id=mapped)
        lost = ""
        stored = as_text(row.get(spec.write_back_id_column)) if stored_ids else ""
        if stored and stored not in records.by_id:
            lost = f"stored id {stored} is not in Zoho; "
        elif stored:
            return self._adopt(base, records.by_id[stored], BY_STORED_ID, row)
        return self._by_rules(base, row, lost)

    def _by_rules(self, base: dict[str, Any], row: Mapping[str, Any], lost: str) -> Decision:
        """The first rule the row has a value for and a record matches decides: adopted, or ambiguous
        when several match; created when none does."""
        spec, records = self.spec, self.records
        reads = 0
        for rule in self.rules:
            want = as_text(row.get(rule))
            if not want:
                continue
            reads += 1
            found = [r for r in records.by_id.values() if records.value_of(r, rule).lower() == want.lower()]
            if not found:
                continue
            if len(found) > 1:
                ids = tuple(str(spec.zoho_id_of(r)) for r in found)
                return Decision(
                    **base, verdict=AMBIGUOUS, candidates=ids, note=f"{lost}by {rule}", reads=reads
                )
            return self._adopt(base, found[0], f"{BY_RULE} {rule}", row, lost)
        return Decision(
            **base, verdict=CREATE, note=lost.rstrip("; "), reads=reads, writes=self.create_writes(row)
        )

    def _adopt(
        self,
        base: dict[str, Any],
        record: Mapping[str, Any],
        verdict: str,
        row: Mapping[str, Any],
        lost: str = "",
    ) -> Decision:
        """The record is the row's unless another entity holds it or it carries another's key."""
        records = self.records
        zoho_id = str(self.spec.zoho_id_of(record))
        holder = records.taken.get(zoho_id)
        carried = records.key_of(record)
        if holder not in (None, base["entity_id"]) or (carried and carried != records.own_key(row)):
            why = f"held by {base['entity_type']} {holder}" if holder else f"carries {carried}"
            return Decision(**base, verdict=ANOTHERS, zoho_id=zoho_id, note=f"{lost}{verdict}: {why}")
        records.taken[zoho_id] = base["entity_id"]
        want = self.payload(row, zoho_id)
        unchanged = self.same(record, want)
        return Decision(
            payload_hash=payload_hash(want) if unchanged and want else None,
            zoho_status=record.get("status"),
            **base,
            verdict=verdict,
            zoho_id=zoho_id,
            note=lost.rstrip("; "),
            writes=0 if unchanged else 1,
            same=unchanged,
        )


# --- reading ------------------------------------------------------------------------------------


#: The steps of reading a plan, as a progress bar shows them.
STEPS: Final = ("source rows and entity map", "Zoho listings", "invoices a number matches", "decisions")


async def read_plan(
    settings: Any, client: Any, on_step: Callable[[str], None] = lambda step: None
) -> AdoptionPlan:
    """Read both sides and decide (no writes anywhere); `on_step` is told as each of `STEPS` is done."""
    mapping = MappingConfig.from_settings(settings)
    source = await read_source(settings.database_url, settings.zoho_organization_id)
    on_step(STEPS[0])
    label, column = client.config.account_number_field, client.config.account_number_list_filter
    with client.tracking() as tracker:
        zoho = await _read_zoho(client, source)
        pages = tracker.attempts - len(zoho.detailed)
        on_step(STEPS[1])
        await _read_invoices_in_full(client, source, zoho)
        on_step(STEPS[2])
    rules = rules_of(settings)
    customer_ids = {str(c["customer_id"]): c for c in zoho.customers}
    customers = _Records(
        customer_ids,
        key_of=lambda r: account_number_of(dict(r), label, column),
        value_of=lambda r, rule: as_text(
            account_number_of(dict(r), label, column) if rule == "account_number" else r.get(rule)
        ),
        own_key=lambda row: as_text(row.get("account_number")),
    )
    decisions = decide(
        EntityType.CUSTOMER,
        source.customers,
        source.entity_map,
        customers,
        rules.get(EntityType.CUSTOMER, ()),
        mapping,
        never_sent=lambda row: spec_of(EntityType.CUSTOMER).never_synced(row) is not None,
        payload=lambda row, _: customer_payload(row, mapping),
        same=lambda record, want: not differs(record, want, label, column),
        create_writes=lambda row: (
            _CREATE_WRITES["inactive"] if customer_zoho_status(row, mapping) == "inactive" else 1
        ),
        stored_ids=source.source_ids,
    )
    invoices = _Records(
        {str(i["invoice_id"]): i for i in zoho.invoices},
        key_of=lambda r: as_text(r.get("reference_number")) if "reference_number" in r else None,
        value_of=lambda r, rule: as_text(r.get(rule, r.get("number"))),
        own_key=lambda row: str(row["id"]),
    )
    decisions += decide(
        EntityType.INVOICE,
        source.invoices,
        source.entity_map,
        invoices,
        rules.get(EntityType.INVOICE, ()),
        mapping,
        never_sent=lambda row: as_text(row.get("status")) == "void",
        payload=lambda row, zoho_id: {},
        # An adopted draft or sent invoice is brought up to the source with one PUT; paid or void: none.
        same=lambda record, _: zoho_invoice_stage(record.get("status")) not in ("draft", "sent"),
        create_writes=lambda row: _CREATE_WRITES.get(as_text(row.get("status")), 1),
        stored_ids=source.source_ids,
    )
    on_step(STEPS[3])
    return AdoptionPlan(
        decisions,
        plan_calls=tracker.attempts,
        rate_per_minute=settings.zoho_rate_per_minute,
        daily_limit=settings.zoho_daily_limit,
        listing_pages=pages,
    )


async def _read_zoho(client: Any, source: SourceSnapshot) -> ZohoSnapshot:
    """Zoho's listing of each entity the source has rows of (an empty table costs no call), a customer
    read in full where its list item does not show the account number."""
    label, column = client.config.account_number_field, client.config.account_number_list_filter
    customers = [c async for c in client.iter_customers()] if source.customers else []
    invoices = [i async for i in client.iter_invoices()] if source.invoices else []
    zoho = ZohoSnapshot(customers, invoices)
    for index, item in enumerate(zoho.customers):
        if account_number_of(item, label, column) is None:
            zoho.customers[index] = await client.get_customer(str(item["customer_id"]))
            zoho.detailed.add((EntityType.CUSTOMER, str(item["customer_id"])))
    return zoho


async def _read_invoices_in_full(client: Any, source: SourceSnapshot, zoho: ZohoSnapshot) -> None:
    """An invoice list item shows no reference number: read in full the ones a source invoice's number
    could match, to tell a record made by others (no reference) from another source invoice's."""
    numbers = {as_text(i.get("invoice_number")) for i in source.invoices}
    mapped = set(source.entity_map.values())
    for index, item in enumerate(zoho.invoices):
        number = as_text(item.get("invoice_number", item.get("number")))
        if number in numbers and str(item["invoice_id"]) not in mapped and "reference_number" not in item:
            zoho.invoices[index] = {**item, **await client.get_invoice(str(item["invoice_id"]))}
            zoho.detailed.add((EntityType.INVOICE, str(item["invoice_id"])))


def adoptions(plan: AdoptionPlan) -> Iterable[Decision]:
    """The decisions that adopt a record."""
    return (d for d in plan.decisions if d.verdict == BY_STORED_ID or d.verdict.startswith(BY_RULE))
