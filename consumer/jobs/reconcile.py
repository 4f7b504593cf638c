"""Reconcile: compare the source tables with what Zoho holds, and repair what is missing or drifted.

What this module guarantees:

- Zoho is read only through the `ZohoClient` listings (paginated), so every call spends the same
  limiter, concurrency slots and daily budget as the live sync. A report makes no write call to
  Zoho and writes nothing to PostgreSQL.
- The comparison (`compare`) is a pure function of two snapshots: the source rows with the entity
  map, and the Zoho records. It finds source rows with no Zoho record (missing), Zoho records
  sharing one natural key (duplicates), Zoho records whose mapped fields or status differ from what
  the mapping would send (drift; status drift is a `status` field: an invoice's stage, a customer's
  active/inactive), and Zoho records no source row accounts for (orphans).
- `repair` never calls Zoho itself: it feeds the current source rows of the missing and drifted
  entities to the live `SyncEngine` as snapshot reads with `resync` on, so decoding, mapping,
  idempotent creates (intent + natural-key lookup), the sync log, the entity map, the write-back
  and the dead-letter topic are exactly the live sync's. Customers go first, then invoices, so an
  invoice always finds its customer. Duplicates are only reported: nothing is ever deleted in Zoho.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import psycopg
from psycopg.rows import dict_row

from connectors.zoho.customers import account_number_of, disambiguated_name
from consumer.entities.customers import customer_payload, customer_zoho_status, is_internal_test
from consumer.entities.invoice_status import invoice_source_stage, zoho_invoice_stage
from consumer.pipeline.apply import ApplyOptions, ZohoApplier
from consumer.pipeline.dead_letters import DeadLetterPublisher
from consumer.pipeline.encode import encode_event
from consumer.pipeline.engine import EngineOptions, SyncEngine
from consumer.pipeline.events import EntityType
from consumer.pipeline.plan import MappingConfig
from consumer.pipeline.scheduler import InboundRecord
from consumer.settings import Settings

_CENT = Decimal("0.01")
#: Sync-log partition of the events a repair feeds to the engine: they come from the source tables,
#: not from a Kafka partition, and -1 says so wherever the row is shown.
RECONCILE_PARTITION = -1
_CUSTOMER_TEXT_FIELDS = ("first_name", "last_name", "company_name", "phone")


class ReconcileError(Exception):
    """The reconcile could not run to the end; the message is one sentence for the operator."""


# --- findings -------------------------------------------------------------------------------


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
    fields: dict[str, tuple[str, str]]  # field -> (expected from the source, found in Zoho)

    @property
    def status(self) -> tuple[str, str] | None:
        """(the status the source asks for, Zoho's status) when the status drifted, else None."""
        return self.fields.get("status")


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
    repair: RepairResult | None = None

    @property
    def in_sync(self) -> bool:
        """True when nothing is missing, drifted or duplicated (orphans are reported, not counted)."""
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
        }
        return out


# --- snapshots ------------------------------------------------------------------------------


@dataclass
class SourceSnapshot:
    customers: list[dict[str, Any]]
    invoices: list[dict[str, Any]]
    entity_map: dict[tuple[str, str], str]  # (entity_type, entity_id) -> zoho_id


@dataclass
class ZohoSnapshot:
    customers: list[dict[str, Any]]  # list items, replaced by the full record where it was read
    invoices: list[dict[str, Any]]
    detailed: set[str] = field(default_factory=set)  # customer ids whose full record was read


async def read_source(database_url: str) -> SourceSnapshot:
    """Every source customer and invoice, and the entity map's Zoho ids."""
    async with await psycopg.AsyncConnection.connect(database_url, connect_timeout=5) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT * FROM customers ORDER BY account_number")
        customers = [_plain(r) for r in await cur.fetchall()]
        await cur.execute("SELECT * FROM customer_invoices ORDER BY invoice_number")
        invoices = [_plain(r) for r in await cur.fetchall()]
        await cur.execute(
            "SELECT entity_type, entity_id, zoho_id FROM zoho_entity_map WHERE zoho_id IS NOT NULL"
        )
        mapped = {(r["entity_type"], r["entity_id"]): r["zoho_id"] for r in await cur.fetchall()}
    return SourceSnapshot(customers, invoices, mapped)


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in row.items()}


async def read_zoho(client: Any, source: SourceSnapshot, *, details: bool = True) -> ZohoSnapshot:
    """List every customer and invoice; read a customer's full record when the list does not show
    its account number, or (with `details`) when it stands for a source row, to compare the
    fields the list leaves out (billing address)."""
    label = client.config.account_number_field
    column = client.config.account_number_list_filter
    customers = [c async for c in client.iter_customers()]
    invoices = [i async for i in client.iter_invoices()]
    snapshot = ZohoSnapshot(customers, invoices)
    wanted_keys = {str(c.get("account_number")) for c in source.customers}
    wanted_ids = {z for (kind, _), z in source.entity_map.items() if kind == EntityType.CUSTOMER.value}
    wanted_ids |= {
        str(c["zoho_billing_customer_id"]) for c in source.customers if c.get("zoho_billing_customer_id")
    }
    for index, item in enumerate(customers):
        zoho_id = str(item["customer_id"])
        shown = account_number_of(item, label, column)
        if shown is None or (details and (shown in wanted_keys or zoho_id in wanted_ids)):
            customers[index] = await client.get_customer(zoho_id)
            snapshot.detailed.add(zoho_id)
    return snapshot


# --- the comparison (pure) ------------------------------------------------------------------


def compare(
    source: SourceSnapshot, zoho: ZohoSnapshot, config: MappingConfig, *, list_filter: str
) -> ReconcileReport:
    """Everything that differs between the source and Zoho, as findings."""
    report = ReconcileReport(zoho_customers=len(zoho.customers), zoho_invoices=len(zoho.invoices))
    label = config.account_number_field

    # customers
    by_id = {str(c["customer_id"]): c for c in zoho.customers}
    by_key: dict[str, list[str]] = defaultdict(list)
    for zoho_id, record in by_id.items():
        key = account_number_of(record, label, list_filter)
        if key:
            by_key[key].append(zoho_id)
    accounted: set[str] = set()
    customer_zoho: dict[str, str] = {}  # source customer id -> its Zoho customer id
    for row in source.customers:
        key = str(row.get("account_number") or "")
        mapped = _mapped(source, EntityType.CUSTOMER, row, "zoho_billing_customer_id")
        zoho_id = _match(mapped, by_id, by_key.get(key, []))
        accounted.update(by_key.get(key, []))
        if zoho_id is None:
            if not is_internal_test(row):
                report.missing.append(Missing("customer", row["id"], key, mapped[0] if mapped else None))
            continue
        accounted.add(zoho_id)
        customer_zoho[row["id"]] = zoho_id
        fields = _customer_drift(row, by_id[zoho_id], config, list_filter, zoho_id in zoho.detailed)
        if fields:
            report.drift.append(Drift("customer", row["id"], key, zoho_id, fields))
    report.source_customers = sum(1 for row in source.customers if not is_internal_test(row))
    source_by_key = {str(r.get("account_number")): r for r in source.customers}
    for key, ids in sorted(by_key.items()):
        if len(ids) > 1:
            row = source_by_key.get(key)
            mapped_id = customer_zoho.get(row["id"]) if row else None
            report.duplicates.append(
                Duplicate("customer", key, tuple(sorted(ids, key=_id_order)), row and row["id"], mapped_id)
            )
    for zoho_id, record in by_id.items():
        if zoho_id not in accounted:
            report.orphans.append(
                Orphan(
                    "customer",
                    zoho_id,
                    account_number_of(record, label, list_filter),
                    str(record.get("display_name") or ""),
                    record.get("status"),
                )
            )

    # invoices
    internal = {r["id"] for r in source.customers if is_internal_test(r)}
    inv_by_id = {str(i["invoice_id"]): i for i in zoho.invoices}
    inv_by_key: dict[str, list[str]] = defaultdict(list)
    for zoho_id, record in inv_by_id.items():
        number = _invoice_number(record)
        if number:
            inv_by_key[number].append(zoho_id)
    inv_accounted: set[str] = set()
    invoice_zoho: dict[str, str] = {}
    checked = 0
    for row in source.invoices:
        key = str(row.get("invoice_number") or "")
        mapped = _mapped(source, EntityType.INVOICE, row, "zoho_billing_invoice_id")
        zoho_id = _match(mapped, inv_by_id, inv_by_key.get(key, []))
        inv_accounted.update(inv_by_key.get(key, []))
        if str(row.get("customer_id")) in internal:
            continue  # never sent: internal test accounts' invoices
        checked += 1
        if zoho_id is None:
            if row.get("status") != "void":  # a void invoice is never created just to be voided
                report.missing.append(Missing("invoice", row["id"], key, mapped[0] if mapped else None))
            continue
        inv_accounted.add(zoho_id)
        invoice_zoho[row["id"]] = zoho_id
        fields = _invoice_drift(row, inv_by_id[zoho_id], customer_zoho.get(str(row.get("customer_id"))))
        if fields:
            report.drift.append(Drift("invoice", row["id"], key, zoho_id, fields))
    report.source_invoices = checked
    inv_source_by_key = {str(r.get("invoice_number")): r for r in source.invoices}
    for key, ids in sorted(inv_by_key.items()):
        if len(ids) > 1:
            row = inv_source_by_key.get(key)
            mapped_id = invoice_zoho.get(row["id"]) if row else None
            report.duplicates.append(
                Duplicate("invoice", key, tuple(sorted(ids, key=_id_order)), row and row["id"], mapped_id)
            )
    for zoho_id, record in inv_by_id.items():
        if zoho_id not in inv_accounted:
            report.orphans.append(
                Orphan(
                    "invoice",
                    zoho_id,
                    _invoice_number(record),
                    str(record.get("customer_name") or ""),
                    record.get("status"),
                )
            )
    return report


def _mapped(
    source: SourceSnapshot, entity_type: EntityType, row: Mapping[str, Any], column: str
) -> list[str]:
    """The Zoho ids the entity map and the source write-back column give for a row, in that order."""
    ids = [source.entity_map.get((entity_type.value, row["id"])), row.get(column)]
    return [str(i) for i in dict.fromkeys(ids) if i]


def _match(mapped: list[str], by_id: Mapping[str, Any], by_key: list[str]) -> str | None:
    """The mapped record if Zoho still has it, else the oldest record carrying the natural key."""
    for zoho_id in mapped:
        if zoho_id in by_id:
            return zoho_id
    return min(by_key, key=_id_order) if by_key else None


def _id_order(zoho_id: str) -> tuple[int, str]:
    return (int(zoho_id), zoho_id) if zoho_id.isdigit() else (0, zoho_id)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _customer_drift(
    row: Mapping[str, Any], record: Mapping[str, Any], config: MappingConfig, list_filter: str, detailed: bool
) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    status = _text(record.get("status")) or "active"
    if is_internal_test(row):  # never synced; one that once was must be inactive
        if status != "inactive":
            out["status"] = ("inactive", status)
        return out
    expected = customer_payload(row, config)
    key = _text(row.get("account_number"))
    name = _text(record.get("display_name"))
    if name not in (expected["display_name"], disambiguated_name(expected["display_name"], key)):
        out["display_name"] = (expected["display_name"], name)
    for column in _CUSTOMER_TEXT_FIELDS:
        if column in expected and _text(record.get(column)) != expected[column]:
            out[column] = (expected[column], _text(record.get(column)))
    if "email" in expected and _text(record.get("email")).lower() != expected["email"].lower():
        out["email"] = (expected["email"], _text(record.get("email")))
    shown = account_number_of(dict(record), config.account_number_field, list_filter)
    if shown is not None and shown != key:
        out["account_number"] = (key, shown)
    if detailed:
        address = record.get("billing_address") or {}
        address = address if isinstance(address, Mapping) else {}
        for part, value in (expected.get("billing_address") or {}).items():
            if _text(address.get(part)) != value:
                out[f"billing_address.{part}"] = (value, _text(address.get(part)))
    wanted = customer_zoho_status(row, config)  # closed: inactive; suspended as configured
    if status != wanted:
        out["status"] = (wanted, status)
    return out


def _invoice_number(record: Mapping[str, Any]) -> str | None:
    value = record.get("invoice_number", record.get("number"))
    return str(value) if value else None


def _invoice_drift(
    row: Mapping[str, Any], record: Mapping[str, Any], customer_zoho_id: str | None
) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    number = _text(row.get("invoice_number"))
    if _text(_invoice_number(record)) != number:
        out["invoice_number"] = (number, _text(_invoice_number(record)))
    for column, zoho_field in (("invoice_date", "date"), ("due_date", "due_date")):
        value = row.get(column)
        if isinstance(value, dt.date):
            shown = _text(
                record.get(zoho_field) or (record.get("invoice_date") if zoho_field == "date" else None)
            )
            if shown != value.isoformat():
                out[zoho_field] = (value.isoformat(), shown)
    expected_total, shown_total = _cents(row.get("total_amount")), _cents(record.get("total"))
    if expected_total is not None and expected_total != shown_total:
        out["total"] = (str(expected_total), "" if shown_total is None else str(shown_total))
    status = _text(record.get("status"))
    wanted = invoice_source_stage(row)  # draft, sent, paid or void
    if zoho_invoice_stage(status or None) != wanted:  # overdue and partially paid count as sent
        out["status"] = (wanted, status)
    shown_customer = _text(record.get("customer_id"))
    if customer_zoho_id and shown_customer and shown_customer != customer_zoho_id:
        out["customer_id"] = (customer_zoho_id, shown_customer)
    return out


def _cents(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value)).quantize(_CENT, ROUND_HALF_UP)
    except InvalidOperation:
        return None


# --- repair through the pipeline ------------------------------------------------------------


def snapshot_event(entity_type: EntityType, row: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) of the Debezium snapshot read (`op: r`) the connector would write for `row`."""
    return encode_event(entity_type, "r", row, key_id=str(row["id"]), snapshot="true")


async def _current_rows(
    database_url: str, entity_type: EntityType, ids: Iterable[str]
) -> list[dict[str, Any]]:
    wanted = [uuid.UUID(i) for i in ids]
    if not wanted:
        return []
    async with await psycopg.AsyncConnection.connect(database_url, connect_timeout=5) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            f"SELECT * FROM {entity_type.table} WHERE id = ANY(%s) ORDER BY id",  # noqa: S608 - fixed names
            (wanted,),
        )
        return [_plain(r) for r in await cur.fetchall()]


async def repair(session: Any, report: ReconcileReport) -> RepairResult:
    """Sync the missing and drifted entities through the live pipeline (see the module docstring)."""
    settings: Settings = session.settings
    group = f"{settings.consumer_group}.reconcile.{int(time.time() * 1000)}"
    from consumer.pipeline.wiring import mapping_config

    engine = SyncEngine(
        options=EngineOptions(
            consumer_group=group,
            topic_prefix=settings.topic_prefix,
            mapping=mapping_config(settings),
            resync=True,  # check against Zoho, never trust the stored payload hash
            ignore_stale=True,
            dlq_topic=settings.dlq_topic,
            reprocess_max_attempts=settings.reprocess_max_attempts,
        ),
        store=session.store,
        applier=ZohoApplier(session.client, session.store, ApplyOptions.from_settings(settings)),
        dead_letters=DeadLetterPublisher(session.producer, settings.dlq_topic),
        on_done=lambda _record: None,
        metrics=session.metrics,
    )
    submitted = 0
    try:
        for entity_type in (EntityType.CUSTOMER, EntityType.INVOICE):
            rows = await _current_rows(settings.database_url, entity_type, report.ids_to_repair(entity_type))
            topic = f"{settings.topic_prefix}.public.{entity_type.table}"
            for row in rows:
                key, value = snapshot_event(entity_type, row)
                engine.submit(InboundRecord(topic, RECONCILE_PARTITION, submitted, key, value))
                submitted += 1
            await engine.wait_idle()
            if engine.fatal is not None:
                raise ReconcileError(f"the repair stopped: {engine.fatal}")
    finally:
        await engine.close()
    rows = await _logged(settings.database_url, group)
    outcomes: dict[str, int] = defaultdict(int)
    for row in rows:
        outcomes[row["outcome"]] += 1
    return RepairResult(group, submitted, dict(outcomes), rows)


async def _logged(database_url: str, group: str) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(database_url, connect_timeout=5) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT entity_type, entity_id, outcome, operation, zoho_id, error FROM zoho_sync_log"
            " WHERE consumer_group = %s ORDER BY kafka_offset",
            (group,),
        )
        return list(await cur.fetchall())


# --- the whole run --------------------------------------------------------------------------


async def inspect(settings: Settings, client: Any, *, details: bool = True) -> ReconcileReport:
    """Read both sides and compare them (no writes anywhere)."""
    from consumer.pipeline.wiring import mapping_config

    source = await read_source(settings.database_url)
    with client.tracking() as tracker:
        zoho = await read_zoho(client, source, details=details)
    report = compare(
        source, zoho, mapping_config(settings), list_filter=client.config.account_number_list_filter
    )
    report.zoho_calls = tracker.attempts
    return report


async def reconcile(settings: Settings, *, fix: bool = False, details: bool = True) -> ReconcileReport:
    """Compare the source with Zoho; with `fix`, repair missing and drifted entities, then report.

    Raises `consumer.pipeline.wiring.ServiceUnavailable` when PostgreSQL (or, to fix, Kafka) cannot be
    reached, and the Zoho client's errors when Zoho cannot be read.
    """
    from consumer.migrations import migrate
    from consumer.pipeline.wiring import check_database, sync_session, zoho_client

    check_database(settings)
    migrate(settings.database_url)
    if not fix:
        client = zoho_client(settings)
        try:
            return await inspect(settings, client, details=details)
        finally:
            await client.aclose()
    async with sync_session(settings) as session:
        report = await inspect(settings, session.client, details=details)
        if report.ids_to_repair(EntityType.CUSTOMER) or report.ids_to_repair(EntityType.INVOICE):
            with session.client.tracking() as tracker:
                report.repair = await repair(session, report)
            report.zoho_calls += tracker.attempts
        else:
            report.repair = RepairResult("", 0, {}, [])
        return report
