"""What a reconcile finds: missing, duplicated, drifted and orphaned records, and what a repair did.

Plain data only; `ReconcileReport.as_dict` is the `zoho-cdc reconcile --json` document.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Final

from consumer.entities.comparison import FieldDrift
from consumer.model.events import EntityType


@dataclass(frozen=True)
class Missing:
    """A source row that should be in Zoho but has no Zoho record (by mapped id or natural key)."""

    entity_type: str
    entity_id: str
    natural_key: str
    mapped_zoho_id: str | None  # the id we once had, now gone from Zoho


@dataclass(frozen=True)
class Duplicate:
    """Several Zoho records carrying one natural key; a human decides which to keep."""

    entity_type: str
    natural_key: str
    zoho_ids: tuple[str, ...]
    entity_id: str | None  # the source row with that key, if any
    mapped_zoho_id: str | None  # the record the sync writes to


@dataclass(frozen=True)
class Drift:
    """A Zoho record whose mapped fields differ from what the mapping sends for the source row."""

    entity_type: str
    entity_id: str
    natural_key: str
    zoho_id: str
    fields: dict[str, FieldDrift]  # field -> (expected from the source, found in Zoho)

    @property
    def status(self) -> FieldDrift | None:
        """(the status the source asks for, Zoho's status) when the status drifted, else None."""
        return self.fields.get("status")


@dataclass(frozen=True)
class ZohoAheadFinding:
    """A record Zoho moved on its own (paid in the portal, voided or made inactive by hand) past what
    zoho-cdc last set and what the source says: accepted, not repaired (Zoho has no call back)."""

    entity_type: str
    entity_id: str
    natural_key: str
    zoho_id: str
    zoho_status: str
    source_status: str
    recorded: bool  # the live sync already recorded it (the entity map says Zoho is ahead)


@dataclass(frozen=True)
class Orphan:
    """A Zoho record that no source row accounts for (by mapped id or natural key)."""

    entity_type: str
    zoho_id: str
    natural_key: str | None
    name: str
    status: str | None


@dataclass
class RepairResult:
    """What the pipeline did with the entities handed to it, as recorded in the sync log."""

    consumer_group: str
    submitted: int
    outcomes: dict[str, int]
    rows: list[dict[str, Any]]


#: The report's counters of each entity: (source rows checked, Zoho records listed).
_COUNTERS: Final = {
    EntityType.CUSTOMER: ("source_customers", "zoho_customers"),
    EntityType.INVOICE: ("source_invoices", "zoho_invoices"),
}


@dataclass
class ReconcileReport:
    source_customers: int = 0
    source_invoices: int = 0
    zoho_customers: int = 0
    zoho_invoices: int = 0
    zoho_calls: int = 0
    missing: list[Missing] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)
    zoho_ahead: list[ZohoAheadFinding] = field(default_factory=list)  # reported, never repaired
    repair: RepairResult | None = None

    def count(self, entity_type: EntityType, *, source: int, zoho: int) -> None:
        """Record how many source rows of the entity were checked and how many Zoho records were listed."""
        source_field, zoho_field = _COUNTERS[entity_type]
        setattr(self, source_field, source)
        setattr(self, zoho_field, zoho)

    @property
    def in_sync(self) -> bool:
        """True when nothing is missing, drifted or duplicated (orphans and Zoho ahead are reported, not
        counted: neither is a fault of the sync)."""
        return not (self.missing or self.drift or self.duplicates)

    @property
    def status_drift(self) -> list[Drift]:
        """The drift findings whose Zoho status differs from the source's (other fields may differ too)."""
        return [d for d in self.drift if d.status is not None]

    def ids_to_repair(self, entity_type: EntityType) -> list[str]:
        found = [m.entity_id for m in self.missing if m.entity_type == entity_type.value]
        found += [d.entity_id for d in self.drift if d.entity_type == entity_type.value]
        return list(dict.fromkeys(found))

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["in_sync"] = self.in_sync
        out["summary"] = {
            "missing": len(self.missing),
            "duplicates": len(self.duplicates),
            "drift": len(self.drift),
            "status_drift": len(self.status_drift),
            "orphans": len(self.orphans),
            "zoho_ahead": len(self.zoho_ahead),
        }
        return out
