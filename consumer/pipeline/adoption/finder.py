"""Adoption: before creating, find the Zoho record a source entity already has, made by zoho-cdc or not.

Exactly one match is adopted; several are refused (`AmbiguousMatch`, candidates named), never created; a
record that is another entity's (`NotOurs`, `ClaimedByAnother`) is never adopted. What was decided is
said in one sentence (`Adoption.note`), which the sync log keeps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from consumer.entities.registry import spec_of
from consumer.entities.spec import Record, Row
from consumer.entities.zoho_boundary import as_call_errors
from consumer.model.call_errors import NotInZoho, Refused
from consumer.model.events import EntityType
from consumer.pipeline.adoption.match_index import Listed, MatchIndex

#: How an adopted entity was found, as the sync log names it (a rule is named after the rule).
BY_STORED_ID = "stored id"
CREATED = "created"


class AmbiguousMatch(Refused):
    """Raised when a match rule finds more than one Zoho record for one source entity (none is created)."""


class NotOurs(Refused):
    """Raised when the one record an entity matches carries another source entity's key."""


class ClaimedByAnother(NotOurs):
    """Raised when the one record an entity matches is already adopted by, or mapped to, another entity."""


class Matching(Listed, Protocol):
    """What adoption needs of an entity's calls (`EntityCalls`)."""

    async def read(self, zoho_id: str) -> Record:
        """The whole record; raises the Zoho client's NotFound when Zoho has none by that id (in this
        organisation)."""
        ...

    async def candidates(self, rule: str, entity_id: str, row: Row) -> list[Record] | None:
        """The records rule `rule` matches for the row; None when the rule cannot apply (an empty value)."""
        ...

    async def foreign_key(self, record: Record, entity_id: str, row: Row) -> str | None:
        """The other source entity's key `record` carries (another account number, reference), if any."""
        ...


class Claims(Protocol):
    async def claim(self, entity_type: EntityType, zoho_id: str, entity_id: str, matched_by: str) -> str: ...

    async def holder(self, entity_type: EntityType, zoho_id: str, entity_id: str) -> str | None: ...

    async def refused(self, entity_type: EntityType, entity_id: str) -> frozenset[str]: ...


@dataclass(frozen=True, slots=True)
class Adoption:
    """What to do instead of (or before) a create: adopt `record`, or create when it is None."""

    record: Record | None
    matched_by: str  # BY_STORED_ID, "rule <name>", or CREATED
    note: str  # one sentence for the sync log


async def find_adoptable(
    entity_type: EntityType,
    entity_id: str,
    row: Row,
    calls: Matching,
    claims: Claims,
    rules: Sequence[str],
    index: MatchIndex | None = None,
    *,
    stored_ids: bool = True,
) -> Adoption:
    """The record this entity adopts, or an `Adoption` saying it is created; raises AmbiguousMatch,
    NotOurs or ClaimedByAnother (dead-lettered by the caller) when it must be neither.

    Looked for in order: the Zoho id the source row already holds (one read), then the entity's match rules
    in the order the settings give them (customers: account-number custom field, then e-mail; invoices:
    invoice number). With an `index` (a replay's listing) the records are looked for there instead of with
    a call each. `stored_ids` False (a sync in another organisation than the live one): the source's id
    columns name the live organisation's records, so they are not read."""
    listed = index if index is not None and index.covers(entity_type) else None
    if listed is not None:
        await listed.ensure(entity_type)
    spec = spec_of(entity_type)
    kind = entity_type.value
    lost = ""
    refused = await claims.refused(entity_type, entity_id)  # unlinked by hand: never this entity's again
    stored = _text((row or {}).get(spec.write_back_id_column)) if stored_ids else ""
    if stored in refused:
        lost, stored = f"the stored Zoho id {stored} was unlinked from it by hand, so it is replaced", ""
    if stored:
        try:
            record = await _read(calls, listed, entity_type, stored)
        except NotInZoho:
            lost = (
                f"the stored Zoho id {stored} is not in Zoho (deleted, or of another organisation), so it"
                " is replaced"
            )
        else:
            await _own(entity_type, entity_id, record, row, calls, claims, BY_STORED_ID)
            return Adoption(record, BY_STORED_ID, f"adopted Zoho {kind} {stored} by the id the source held")
    for rule in rules:
        matched = listed.matching(entity_type, rule, row, calls) if listed is not None else None
        if matched is None:
            matched = await calls.candidates(rule, entity_id, row) or []
        found = [r for r in matched if spec.zoho_id_of(r) not in refused]
        if not found:
            continue
        if len(found) > 1:
            names = ", ".join(_described(spec.zoho_id_of(r), r) for r in found)
            raise AmbiguousMatch(
                f"{kind} {entity_id} matches {len(found)} Zoho records by {rule}"
                f" ({_text((row or {}).get(rule))}): {names}; none adopted and none created: link one by"
                f" hand (zoho-cdc adopt link {kind} {entity_id} <zoho id>)"
            )
        record = found[0]
        matched_by = f"rule {rule}"
        await _own(entity_type, entity_id, record, row, calls, claims, matched_by)
        note = f"adopted Zoho {kind} {spec.zoho_id_of(record)} by {rule} ({_text((row or {}).get(rule))})"
        return Adoption(record, matched_by, f"{lost}; {note}" if lost else note)
    tried = ", ".join(rules) or "no rule (none configured)"
    note = f"created: no Zoho record matched by {tried}"
    return Adoption(None, CREATED, f"{lost}; {note}" if lost else note)


async def _read(calls: Matching, listed: MatchIndex | None, entity_type: EntityType, zoho_id: str) -> Record:
    """The record by id: from the replay's listing when there is one (not listed: not found), else read."""
    if listed is None:
        with as_call_errors():
            return await calls.read(zoho_id)
    record = listed.record(entity_type, zoho_id)
    if record is None:
        raise NotInZoho(f"{entity_type.value} {zoho_id} is not in Zoho's listing")
    return record


async def _own(
    entity_type: EntityType,
    entity_id: str,
    record: Record,
    row: Row,
    calls: Matching,
    claims: Claims,
    matched_by: str,
) -> None:
    """Refuse a record that is another entity's; else claim it (the first claimant keeps it)."""
    zoho_id = spec_of(entity_type).zoho_id_of(record)
    assert zoho_id is not None
    kind = entity_type.value
    other_key = await calls.foreign_key(record, entity_id, row)
    if other_key is not None:
        holder = await claims.holder(entity_type, zoho_id, entity_id)
        whose = f"source {kind} {holder}'s" if holder else f"another source {kind}'s"
        raise NotOurs(
            f"{kind} {entity_id} matches Zoho {kind} {zoho_id} by {matched_by}, but that record carries"
            f" {other_key}, {whose} key; it is not adopted and none is created"
        )
    holder = await claims.claim(entity_type, zoho_id, entity_id, matched_by)
    if holder != entity_id:
        raise ClaimedByAnother(
            f"{kind} {entity_id} matches Zoho {kind} {zoho_id} by {matched_by}, which source {kind}"
            f" {holder} adopted first; it is not adopted twice and none is created: link one by hand"
        )


def _described(zoho_id: str | None, record: Mapping[str, Any]) -> str:
    name = record.get("display_name") or record.get("invoice_number") or record.get("number") or ""
    return f"{zoho_id} ({name})" if name else str(zoho_id)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ("" if value is None else str(value))
