"""Zoho's records as listed once, so a replay matches many entities without a lookup call for each.

The listing costs one call per 200 records, not a lookup per match rule and entity. Records zoho-cdc
creates during the run are added, so a later entity sharing a value with one is refused as the live sync
refuses it; one someone else creates in Zoho meanwhile is not in it (the live sync looks each up).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Protocol

import orjson

from consumer.entities.registry import spec_of
from consumer.entities.spec import Record, Row
from consumer.model.events import EntityType


class Listed(Protocol):
    """What the index needs of an entity's calls."""

    def listing(self) -> AsyncIterator[Record]: ...

    def listed(self, record: Record, rule: str) -> str | None:
        """The value `record` shows for `rule`, normalised as the rule compares it; None: not shown."""
        ...

    def wanted(self, rule: str, row: Row) -> str:
        """The row's value for `rule`, normalised the same way ("" matches nothing)."""
        ...


class MatchIndex:
    """Each listed entity's Zoho records by id, read at the first match the replay needs (a replay that
    creates nothing reads nothing).

    Records are kept as their JSON text until a match first hands one out (then as that one dict, so what a
    caller learns about it stays with it): 15,000 created records as dicts held ~30 MB, as text a third."""

    def __init__(
        self, client: Any, calls_of: Callable[[EntityType], Listed], entity_types: Iterable[EntityType]
    ) -> None:
        self._client, self._calls_of = client, calls_of
        self._wanted = tuple(entity_types)
        self._records: dict[EntityType, dict[str, _Kept]] = {}
        # Per entity and rule, the records by the value they show (built at the rule's first use, kept up
        # to date by `add`), so a match is a lookup, not a scan of the listing: a backfill creating N
        # entities would otherwise compare N x N records.
        self._by_value: dict[tuple[EntityType, str], _ValueTable] = {}
        self._lock = asyncio.Lock()
        self.reads = 0  # list pages read

    async def ensure(self, entity_type: EntityType) -> None:
        """Read the entity's listing once, page by page (concurrent first uses wait for the one read)."""
        if entity_type in self._records:
            return  # read already: no lock to take (it is asked before every create of a backfill)
        async with self._lock:
            if entity_type in self._records:
                return
            spec = spec_of(entity_type)
            records: dict[str, _Kept] = {}
            with self._client.tracking() as tracker:
                async for record in self._calls_of(entity_type).listing():
                    records[str(spec.zoho_id_of(record))] = _kept(record)
            self.reads += tracker.attempts
            self._records[entity_type] = records

    def covers(self, entity_type: EntityType) -> bool:
        return entity_type in self._wanted

    def record(self, entity_type: EntityType, zoho_id: str) -> Record | None:
        records = self._records.get(entity_type, {})
        kept = records.get(zoho_id)
        if not isinstance(kept, bytes):
            return kept
        record: Record = orjson.loads(kept)
        records[zoho_id] = record  # handed out: from now on this dict, as a caller may complete it
        return record

    def matching(self, entity_type: EntityType, rule: str, row: Row, calls: Listed) -> list[Record] | None:
        """The listed records rule `rule` matches; None when a record does not show the rule's value (the
        rule is then asked of Zoho, record by record)."""
        want = calls.wanted(rule, row)
        if not want:
            return []
        key = (entity_type, rule)
        if key not in self._by_value:
            self._by_value[key] = _ValueTable.of(self._records.get(entity_type, {}), rule, calls)
        found = self._by_value[key].matching(want)
        if found is None:
            return None
        return [record for zoho_id in found if (record := self.record(entity_type, zoho_id)) is not None]

    def add(self, entity_type: EntityType, record: Record) -> None:
        """A record zoho-cdc just created (kept only once the listing was read: it lists it otherwise)."""
        if entity_type not in self._records:
            return
        zoho_id = str(spec_of(entity_type).zoho_id_of(record))
        self._records[entity_type][zoho_id] = _kept(record)
        for (kind, _), table in self._by_value.items():
            if kind is entity_type:
                table.add(zoho_id, record)


# A record as the index keeps it: its JSON text until a match hands it out, then the dict handed out.
_Kept = bytes | Record


def _kept(record: Record) -> _Kept:
    try:
        text = orjson.dumps(record)
    except (TypeError, orjson.JSONEncodeError):  # a value JSON text cannot give back as it is
        return record
    return bytes(memoryview(text))  # orjson's own buffer is a few kB whatever the text's length: copied


class _ValueTable:
    """One rule's listed records (their Zoho ids) by the value each shows for it (normalised by the calls'
    `listed`), and the records that show none: while there are any, the rule cannot be answered from the
    listing."""

    def __init__(self, rule: str, calls: Listed) -> None:
        self._rule, self._calls = rule, calls
        self._by_value: dict[str, dict[str, None]] = {}  # value -> Zoho ids, in the order added
        self._value_of: dict[str, str] = {}
        self._unshown: set[str] = set()

    @classmethod
    def of(cls, records: dict[str, _Kept], rule: str, calls: Listed) -> _ValueTable:
        table = cls(rule, calls)
        for zoho_id, kept in records.items():
            table.add(zoho_id, orjson.loads(kept) if isinstance(kept, bytes) else kept)
        return table

    def add(self, zoho_id: str, record: Record) -> None:
        """Index `record` (again: a record added anew replaces what it showed before)."""
        old = self._value_of.pop(zoho_id, None)
        if old is not None:
            self._by_value[old].pop(zoho_id, None)
        self._unshown.discard(zoho_id)
        shown = self._calls.listed(record, self._rule)
        if shown is None:
            self._unshown.add(zoho_id)
            return
        self._value_of[zoho_id] = shown
        self._by_value.setdefault(shown, {})[zoho_id] = None

    def matching(self, want: str) -> list[str] | None:
        """The Zoho ids of the records showing `want`; None while some record shows no value for the rule."""
        return None if self._unshown else list(self._by_value.get(want, {}))
