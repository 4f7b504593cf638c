"""`MatchIndex.matching` answers by lookup what a scan of the listing would answer (issue 22 adoption in a
backfill: a scan per entity made a backfill creating N entities compare N x N records)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.entities.spec import Record, Row
from consumer.model.events import EntityType
from consumer.pipeline.adoption.match_index import MatchIndex


class _Client:
    def tracking(self) -> Any:
        class _Tracker:
            attempts = 1

            def __enter__(self) -> _Tracker:
                return self

            def __exit__(self, *exc: object) -> None:
                return None

        return _Tracker()


class _Calls:
    """Listing and normalisation as the customer calls do it, over plain records (e-mail, any case)."""

    def __init__(self, records: list[Record]) -> None:
        self.records = records

    async def _iter(self) -> AsyncIterator[Record]:
        for record in self.records:
            yield record

    def listing(self) -> AsyncIterator[Record]:
        return self._iter()

    def listed(self, record: Record, rule: str) -> str | None:
        value = record.get(rule)
        return None if value is None else str(value).lower()

    def wanted(self, rule: str, row: Row) -> str:
        return str((row or {}).get(rule) or "").lower()


def _scan(records: dict[str, Record], rule: str, row: Row, calls: _Calls) -> list[Record] | None:
    want = calls.wanted(rule, row)
    if not want:
        return []
    found = []
    for record in records.values():
        shown = calls.listed(record, rule)
        if shown is None:
            return None
        if shown == want:
            found.append(record)
    return found


_emails = st.sampled_from(["a@x.io", "A@x.io", "b@x.io", "c@x.io", None])
_records = st.lists(st.tuples(st.integers(1, 30), _emails), max_size=25)


@settings(max_examples=200)
@given(
    listed=_records, added=_records, asked=st.lists(_emails, min_size=1, max_size=6), ask_first=st.booleans()
)
def test_matching_by_lookup_equals_a_scan_of_the_listing_and_of_what_was_added(
    listed: list[tuple[int, str | None]], added: list[tuple[int, str | None]], asked: list[str | None],
    ask_first: bool,
) -> None:  # fmt: skip
    def record(zoho_id: int, email: str | None) -> Record:
        return {"customer_id": str(zoho_id), **({"email": email} if email is not None else {})}

    calls = _Calls([record(i, e) for i, e in listed])
    index = MatchIndex(_Client(), lambda _: calls, [EntityType.CUSTOMER])
    asyncio.run(index.ensure(EntityType.CUSTOMER))
    truth: dict[str, Record] = {str(i): record(i, e) for i, e in listed}
    if ask_first:  # the rule's table is built before the additions, then kept up to date by them
        index.matching(EntityType.CUSTOMER, "email", {"email": asked[0]}, calls)
    for i, e in added:
        index.add(EntityType.CUSTOMER, record(i, e))
        truth[str(i)] = record(i, e)
    for email in asked:
        row = {"email": email}
        got = index.matching(EntityType.CUSTOMER, "email", row, calls)
        want = _scan(truth, "email", row, calls)
        if want is None:
            assert got is None
        else:
            assert got is not None
            assert sorted(r["customer_id"] for r in got) == sorted(r["customer_id"] for r in want)


def test_a_record_handed_out_is_what_was_added_and_keeps_what_a_caller_completes() -> None:
    """Records are kept as JSON text until a match hands one out; from then on that one dict, so a
    caller that reads the whole record into it (`customer_calls._account_number`) reads it once."""
    calls = _Calls([])
    index = MatchIndex(_Client(), lambda _: calls, [EntityType.CUSTOMER])
    asyncio.run(index.ensure(EntityType.CUSTOMER))
    created = {"customer_id": "9", "email": "a@x.io", "balance": 12.5, "name": "Zoë", "tags": [{"a": None}]}
    index.add(EntityType.CUSTOMER, created)

    [found] = index.matching(EntityType.CUSTOMER, "email", {"email": "A@x.io"}, calls) or []
    assert found == created
    found.update({"custom_fields": [{"label": "Account Number", "value": "CT-9"}]})

    [again] = index.matching(EntityType.CUSTOMER, "email", {"email": "a@x.io"}, calls) or []
    assert again is found and index.record(EntityType.CUSTOMER, "9") is found
