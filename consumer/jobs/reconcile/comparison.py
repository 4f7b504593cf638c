"""The comparison of a reconcile: two snapshots in, findings out; a pure function, no I/O.

Per entity (parents first, so an invoice is checked against its customer's Zoho id) it finds source rows
with no Zoho record (missing), Zoho records sharing one natural key (duplicates), Zoho records whose
mapped fields or status differ from what the mapping sends (drift, `consumer.entities.comparison`), and Zoho
records no source row accounts for (orphans).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from consumer.entities.comparison import ZohoView, drift
from consumer.entities.invoices.status import StatusBackwards, invoice_status_steps, zoho_invoice_stage
from consumer.entities.registry import comparison_of, registered, spec_of
from consumer.jobs.reconcile.findings import (
    Drift,
    Duplicate,
    Missing,
    Orphan,
    ReconcileReport,
    ZohoAheadFinding,
)
from consumer.jobs.reconcile.sides import SourceSnapshot, ZohoSnapshot
from consumer.model.events import EntityType
from consumer.model.plan import MappingConfig


@dataclass
class _Matched:
    """One entity's source rows as matched to its Zoho records."""

    zoho_ids: dict[str, str] = field(default_factory=dict)  # source id -> the Zoho record the sync uses
    unsent: set[str] = field(default_factory=set)  # source ids the sync never sends
    accounted: set[str] = field(default_factory=set)  # Zoho ids some source row accounts for
    checked: int = 0  # source rows the sync sends


def compare(
    source: SourceSnapshot, zoho: ZohoSnapshot, config: MappingConfig, *, list_filter: str
) -> ReconcileReport:
    """Everything that differs between the source and Zoho, as findings."""
    report = ReconcileReport()
    view = ZohoView(config, list_filter)
    matched: dict[EntityType, _Matched] = {}
    for entity_type in registered():  # parents before their children
        records = {comparison_of(entity_type).zoho_id(r): r for r in zoho.records(entity_type)}
        by_key = _by_natural_key(entity_type, records, view)
        done = matched[entity_type] = _match_rows(
            entity_type, source, zoho, records, by_key, view, matched, report
        )
        report.count(entity_type, source=done.checked, zoho=len(zoho.records(entity_type)))
        report.duplicates += _duplicates(entity_type, source, by_key, done)
        report.orphans += _orphans(entity_type, records, done, view)
    return report


def _by_natural_key(
    entity_type: EntityType, records: Mapping[str, Mapping[str, Any]], view: ZohoView
) -> dict[str, list[str]]:
    by_key: dict[str, list[str]] = defaultdict(list)
    for zoho_id, record in records.items():
        key = comparison_of(entity_type).natural_key(record, view)
        if key:
            by_key[key].append(zoho_id)
    return by_key


def _match_rows(
    entity_type: EntityType,
    source: SourceSnapshot,
    zoho: ZohoSnapshot,
    records: Mapping[str, Mapping[str, Any]],
    by_key: Mapping[str, list[str]],
    view: ZohoView,
    matched: Mapping[EntityType, _Matched],
    report: ReconcileReport,
) -> _Matched:
    """Match each source row to its Zoho record; report it missing, or its drift."""
    spec = comparison_of(entity_type)
    done = _Matched()
    for row in source.rows(entity_type):
        key = str(row.get(spec.key_column) or "")
        mapped = source.mapped(entity_type, row)
        zoho_id = _match(mapped, records, by_key.get(key, []))
        done.accounted.update(by_key.get(key, []))
        parent_zoho_id: str | None = None
        link = spec_of(entity_type).parent
        if link is not None:
            parent_type, column = link.entity, link.column
            parent = matched[parent_type]  # KeyError: the parent was not compared first
            if str(row.get(column)) in parent.unsent:
                continue  # never sent: the rows of an entity the sync never sends
            parent_zoho_id = parent.zoho_ids.get(str(row.get(column)))
        sent = spec.sent(row)
        done.checked += sent
        if not sent:
            done.unsent.add(row["id"])
        if zoho_id is None:
            if sent and spec.created(row):
                report.missing.append(
                    Missing(entity_type.value, row["id"], key, mapped[0] if mapped else None)
                )
            continue
        done.accounted.add(zoho_id)
        done.zoho_ids[row["id"]] = zoho_id
        shown = replace(view, detailed=(entity_type, zoho_id) in zoho.detailed)
        fields = drift(comparison_of(entity_type), row, records[zoho_id], shown, parent_zoho_id)
        status = fields.get("status")
        known = source.map_status.get((entity_type.value, row["id"]), (None, None))
        if status is not None and zoho_ahead(entity_type, str(status[0]), str(status[1]), *known):
            report.zoho_ahead.append(
                ZohoAheadFinding(
                    entity_type.value,
                    row["id"],
                    key,
                    zoho_id,
                    str(status[1]),
                    str(status[0]),
                    known[1] is not None,
                )
            )
        elif fields:
            report.drift.append(Drift(entity_type.value, row["id"], key, zoho_id, fields))
    return done


def zoho_ahead(
    entity_type: EntityType, source: str, found: str, map_status: str | None, map_ahead: str | None
) -> bool:
    """True when Zoho's status `found` is one Zoho reached on its own and the source (`source`, the status
    it asks for) has no call back from: the entity map says so, or it holds another status zoho-cdc set
    and Zoho moved past it. Zoho showing what zoho-cdc itself set is the source moving backwards: drift."""
    if map_ahead is not None:
        return map_ahead == found
    if map_status is None or map_status == found:
        return False
    if entity_type is EntityType.INVOICE:
        try:
            invoice_status_steps(zoho_invoice_stage(found) or "draft", source)
        except StatusBackwards:
            return zoho_invoice_stage(map_status) != zoho_invoice_stage(found)
        return False
    return found == "inactive" and source == "active"


def _match(mapped: list[str], by_id: Mapping[str, Any], by_key: list[str]) -> str | None:
    """The mapped record if Zoho still has it, else the oldest record carrying the natural key."""
    for zoho_id in mapped:
        if zoho_id in by_id:
            return zoho_id
    return min(by_key, key=_id_order) if by_key else None


def _id_order(zoho_id: str) -> tuple[int, str]:
    return (int(zoho_id), zoho_id) if zoho_id.isdigit() else (0, zoho_id)


def _duplicates(
    entity_type: EntityType, source: SourceSnapshot, by_key: Mapping[str, list[str]], done: _Matched
) -> list[Duplicate]:
    column = comparison_of(entity_type).key_column
    source_by_key = {str(r.get(column)): r for r in source.rows(entity_type)}
    out = []
    for key, ids in sorted(by_key.items()):
        if len(ids) > 1:
            row = source_by_key.get(key)
            mapped_id = done.zoho_ids.get(row["id"]) if row else None
            ordered = tuple(sorted(ids, key=_id_order))
            out.append(Duplicate(entity_type.value, key, ordered, row and row["id"], mapped_id))
    return out


def _orphans(
    entity_type: EntityType, records: Mapping[str, Mapping[str, Any]], done: _Matched, view: ZohoView
) -> list[Orphan]:
    spec = comparison_of(entity_type)
    return [
        Orphan(
            entity_type.value,
            zoho_id,
            spec.natural_key(record, view),
            str(record.get(spec.name_field) or ""),
            record.get("status"),
        )
        for zoho_id, record in records.items()
        if zoho_id not in done.accounted
    ]
