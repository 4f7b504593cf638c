"""What the pipeline knows of one synced entity: its table, columns, mapping rules and Zoho calls.

One `EntitySpec` per source table, kept in `consumer.entities.registry`. The pipeline reads specs and
never branches on which entity it holds, so adding a table is one spec module, its client calls, its
simulator routes and its SQL. `missing_parts` is what the registry test checks of every spec.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol

from consumer.model.events import ChangeEvent, ColumnKind, EntityType
from consumer.model.plan import EntityState, MappingConfig, Plan

if TYPE_CHECKING:
    from consumer.entities.comparison import EntityComparison


@dataclass(frozen=True, slots=True)
class ParentLink:
    """This entity needs another one in Zoho first (an invoice needs its customer)."""

    entity: EntityType  # the parent entity
    column: str  # the column of this entity's row that holds the parent's source id


@dataclass(frozen=True, slots=True)
class ParentRecord:
    """What a child needs of its parent's Zoho record."""

    zoho_id: str
    currency_code: str | None = None


@dataclass(frozen=True, slots=True)
class PlanInput:
    """Everything a plan function decides from: pure data, read before it is called."""

    event: ChangeEvent
    state: EntityState | None
    config: MappingConfig
    parent: ParentRecord | None = None  # the parent's Zoho record, when the spec has a parent and it exists
    facts: Mapping[str, Any] = field(default_factory=dict)  # what the spec's `plan_facts` read


class SourceLookups(Protocol):
    """The reads of the source database a spec's `plan_facts` may make."""

    async def first_child_value(
        self, child: EntityType, parent_column: str, value_column: str, parent_id: str
    ) -> str | None: ...


Row = Mapping[str, Any] | None  # a decoded source row (None for a delete)
Record = dict[str, Any]  # a Zoho record, as Zoho answers it


class EntityCalls(Protocol):
    """One entity's Zoho calls: what a plan's action does, and how a record is found again."""

    async def carry_out(
        self, plan: Plan, entity_id: str, row: Row, zoho_id: str | None
    ) -> tuple[str | None, str | None]:
        """Make the plan's calls; returns the Zoho id and status the record ends with."""
        ...

    async def find(self, natural_key: str, entity_id: str, row: Row) -> Record | None:
        """The Zoho record a create may have made (after a crash or a lost reply), by natural key."""
        ...

    async def create(self, payload: Record, natural_key: str, row: Row) -> Record:
        """Create the record (idempotently: a lost reply is resolved by natural key). The caller's claim
        runs before each of its writes (`connectors.zoho.send_guard.before_each_write`)."""
        ...

    async def adopt(self, existing: Record, payload: Record) -> Record:
        """Bring a record found by its natural key up to `payload`; returns Zoho's answer."""
        ...


class ApplyContext(Protocol):
    """What an entity's calls may use: the client, the store, the options and the shared create path."""

    client: Any
    store: Any  # the pipeline's store: intents, items
    options: Any  # ApplyOptions: the settings the calls read

    async def create(
        self, entity_type: EntityType, entity_id: str, payload: dict[str, Any], row: Mapping[str, Any] | None
    ) -> tuple[str | None, dict[str, Any]]: ...

    async def created_before(self, entity_type: EntityType, entity_id: str) -> str | None: ...

    async def intent(self, entity_type: EntityType, entity_id: str) -> Any: ...


PlanFacts = Callable[[SourceLookups, ChangeEvent, EntityState | None], Awaitable[Mapping[str, Any]]]


async def no_facts(
    lookups: SourceLookups, event: ChangeEvent, state: EntityState | None
) -> Mapping[str, Any]:
    return {}


def never_skipped(row: Mapping[str, Any]) -> str | None:
    return None


def nothing_created(plan: Plan) -> str | None:
    return None


@dataclass(frozen=True)
class EntitySpec:
    """One synced source table, as the pipeline sees it."""

    entity: EntityType
    columns: Mapping[str, ColumnKind]  # every column of the source table, by how Debezium sends it
    natural_key: str  # the column that finds the record in Zoho again (no duplicates after a lost reply)
    zoho_id_field: str  # the field of a Zoho record that holds its id
    mapped_columns: frozenset[str]  # columns that feed the Zoho body or the plan
    remembered_columns: frozenset[str]  # the image kept to fill unavailable (TOAST) values later
    required_fields: tuple[str, ...]  # fields Zoho requires on create
    plan: Callable[[PlanInput], Plan]  # pure: which Zoho call an event needs
    calls: Callable[[ApplyContext], EntityCalls] | None  # None only for specs driven by a stub applier
    parent: ParentLink | None = None
    plan_facts: PlanFacts = no_facts  # source reads a plan needs beyond the row
    never_synced: Callable[[Mapping[str, Any]], str | None] = never_skipped  # why a row never goes to Zoho
    created_currency: Callable[[Plan], str | None] = nothing_created  # the currency a create gives the record
    comparison: EntityComparison | None = None  # how reconcile and a resync compare it with Zoho
    # The source column zoho-cdc writes the Zoho id to; by the source schema's convention
    # `zoho_billing_<zoho_id_field>` (zoho_billing_customer_id, zoho_billing_invoice_id).
    write_back_id_column: str = ""

    def __post_init__(self) -> None:
        if not self.write_back_id_column:
            object.__setattr__(self, "write_back_id_column", f"zoho_billing_{self.zoho_id_field}")

    def natural_key_of(self, row: Mapping[str, Any] | None) -> str | None:
        value = row.get(self.natural_key) if row else None
        return str(value) if value else None

    def zoho_id_of(self, record: Mapping[str, Any]) -> str | None:
        value = record.get(self.zoho_id_field)
        return str(value) if value is not None else None

    def parent_id(self, row: Mapping[str, Any] | None) -> str | None:
        if self.parent is None or not row:
            return None
        value = row.get(self.parent.column)
        return str(value) if value else None

    def missing_required(self, payload: Mapping[str, Any]) -> tuple[str, ...]:
        """Fields Zoho requires on create that the payload lacks or has empty."""
        return tuple(f for f in self.required_fields if payload.get(f) in (None, "", []))

    def missing_parts(self) -> list[str]:
        """What keeps this spec from working end to end (empty when it is complete)."""
        missing = [f.name for f in fields(self) if getattr(self, f.name) in (None, "", (), frozenset())]
        missing = [name for name in missing if name not in ("parent", "calls", "comparison")]
        for column in (self.natural_key, self.write_back_id_column, "id", *sorted(self.mapped_columns)):
            if column not in self.columns:
                missing.append(f"column {column!r} (not in columns)")
        if self.parent is not None and self.parent.column not in self.columns:
            missing.append(f"parent column {self.parent.column!r} (not in columns)")
        return missing
