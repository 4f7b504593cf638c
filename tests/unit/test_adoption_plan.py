"""The switch-over plan's decisions (`adoption_plan.decide`): pure, table-driven and by property."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.jobs.adoption_plan import (
    AMBIGUOUS,
    ANOTHERS,
    BY_RULE,
    BY_STORED_ID,
    CREATE,
    MAPPED,
    NEVER,
    _Records,
    decide,
)
from consumer.model.events import EntityType
from consumer.model.plan import MappingConfig


def _records(items: list[dict[str, Any]]) -> _Records:
    return _Records(
        {i["customer_id"]: i for i in items},
        key_of=lambda r: r.get("cf_account_number", ""),
        value_of=lambda r, rule: str(r.get("cf_account_number" if rule == "account_number" else rule) or ""),
        own_key=lambda row: row["account_number"],
    )


def _row(account: str, email: str | None = None, stored: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "account_number": account,
        "email": email,
        "zoho_billing_customer_id": stored,
        **extra,
    }


def _decide(rows: list[dict[str, Any]], items: list[dict[str, Any]], mapped: dict | None = None) -> list[Any]:
    return decide(
        EntityType.CUSTOMER,
        rows,
        mapped or {},
        _records(items),
        ("account_number", "email"),
        MappingConfig(),
        never_sent=lambda row: row.get("account_type") == "internal_test",
        payload=lambda row, _: {"email": row.get("email") or ""},
        same=lambda record, want: record.get("email") == want["email"],
        create_writes=lambda row: 1,
    )


def test_each_verdict_of_the_switch_over() -> None:
    zoho = [
        {"customer_id": "Z1", "email": "one@x"},  # held by a stored id
        {"customer_id": "Z2", "email": "two@x", "cf_account_number": "CT-2"},  # ours by account number
        {"customer_id": "Z3", "email": "dup@x"},
        {"customer_id": "Z4", "email": "DUP@x"},
        {"customer_id": "Z5", "email": "shared@x"},
        {"customer_id": "Z6", "email": "other@x", "cf_account_number": "CT-OTHER"},
    ]
    rows = [
        _row("CT-1", "one@x", stored="Z1"),
        _row("CT-2", "elsewhere@x"),
        _row("CT-3", "dup@x"),
        _row("CT-4", "shared@x"),
        _row("CT-5", "shared@x"),
        _row("CT-6", "other@x"),
        _row("CT-7", "new@x", stored="GONE"),
        _row("CT-8", "qa@x", account_type="internal_test"),
        _row("CT-9", None),
    ]
    verdicts = [(d.verdict, d.zoho_id) for d in _decide(rows, zoho)]
    assert verdicts == [
        (BY_STORED_ID, "Z1"),
        (f"{BY_RULE} account_number", "Z2"),
        (AMBIGUOUS, None),
        (f"{BY_RULE} email", "Z5"),
        (ANOTHERS, "Z5"),  # the later claimant of one record
        (ANOTHERS, "Z6"),  # carries another entity's account number
        (CREATE, None),
        (NEVER, None),
        (CREATE, None),  # no e-mail: an empty value matches nothing
    ]
    decisions = _decide(rows, zoho)
    assert decisions[2].candidates == ("Z3", "Z4")
    assert decisions[6].note.startswith("stored id GONE is not in Zoho")
    assert decisions[0].same and decisions[0].writes == 0  # every mapped field matches: no PUT going live
    assert not decisions[1].same and decisions[1].writes == 1


def test_an_entity_already_mapped_is_left_and_its_record_is_nobody_elses() -> None:
    row, other = _row("CT-1", "a@x"), _row("CT-2", "a@x")
    decisions = _decide(
        [row, other], [{"customer_id": "Z1", "email": "a@x"}], {("customer", row["id"]): "Z1"}
    )
    assert [d.verdict for d in decisions] == [MAPPED, ANOTHERS]


emails = st.sampled_from(["a@x", "b@x", "c@x", None])


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(emails, st.sampled_from([None, "Z0", "Z1", "Z9"])), max_size=8),
    zoho=st.lists(st.tuples(emails, st.sampled_from(["", "CT-0", "CT-1", "CT-X"])), max_size=6),
)
def test_one_decision_per_row_and_no_record_adopted_twice_or_against_its_key(rows, zoho) -> None:
    items = [
        {"customer_id": f"Z{n}", "email": e or "", **({"cf_account_number": k} if k else {})}
        for n, (e, k) in enumerate(zoho)
    ]
    source = [_row(f"CT-{n}", e, stored=s) for n, (e, s) in enumerate(rows)]
    decisions = _decide(source, items)
    assert [d.entity_id for d in decisions] == [r["id"] for r in source]
    adopted = [d for d in decisions if d.verdict == BY_STORED_ID or d.verdict.startswith(BY_RULE)]
    assert len({d.zoho_id for d in adopted}) == len(adopted)
    by_id = {i["customer_id"]: i for i in items}
    for d in adopted:
        assert by_id[d.zoho_id].get("cf_account_number", d.natural_key) in ("", d.natural_key)
    for d in decisions:
        if d.verdict == AMBIGUOUS:
            assert len(d.candidates) >= 2 and d.writes == 0
        if d.verdict == CREATE:
            assert d.writes == 1
