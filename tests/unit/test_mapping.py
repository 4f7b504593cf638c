"""Specification of the mapping rules: Zoho payloads, payload hashes and the plan for each event."""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.entities.customers.rules import customer_display_name, customer_payload, is_internal_test
from consumer.entities.customers.spec import SPEC as CUSTOMERS
from consumer.entities.customers.spec import plan_customer
from consumer.entities.invoices.payload import invoice_currency, invoice_payload
from consumer.entities.invoices.spec import SPEC as INVOICES
from consumer.entities.invoices.spec import plan_invoice
from consumer.entities.registry import spec_of
from consumer.model.events import ChangeEvent, EntityType, Op
from consumer.model.plan import (
    Action,
    EntityState,
    MappingConfig,
    MappingError,
    payload_hash,
)
from consumer.pipeline.codec.decode import decode_event

CONFIG = MappingConfig()
FIXTURES = Path(__file__).parent.parent / "fixtures" / "debezium"
CUSTOMER_ID = "11111111-1111-1111-1111-111111111111"
INVOICE_ID = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"


def _fixture_row(stem: str, n: int) -> dict[str, Any]:
    line = json.loads((FIXTURES / f"{stem}.jsonl").read_text().splitlines()[n])
    event = decode_event(
        line["topic"],
        json.dumps(line["key"]).encode(),
        json.dumps(line["value"]).encode(),
        topic_prefix="billing",
    )
    assert event.row is not None
    return dict(event.row)


CUSTOMER_ROW = _fixture_row("events-plain", 0)
INVOICE_ROW = _fixture_row("events-plain", 3)
TOAST_INVOICE_ROW = _fixture_row("events-plain-toast", 2)


def _event(
    entity: EntityType,
    op: Op,
    row: dict[str, Any] | None,
    *,
    unavailable: frozenset[str] = frozenset(),
    entity_id: str | None = None,
) -> ChangeEvent:
    if row is not None:
        row = {k: v for k, v in row.items() if k not in unavailable}
    default_id = CUSTOMER_ID if entity is EntityType.CUSTOMER else INVOICE_ID
    return ChangeEvent(entity, entity_id or default_id, op, row, unavailable, 100, 1, False, 1)


def customer_event(op: Op = Op.UPDATE, row: dict[str, Any] | None = None, **kw: Any) -> ChangeEvent:
    if row is None and op not in (Op.DELETE, Op.TOMBSTONE):
        row = CUSTOMER_ROW
    return _event(EntityType.CUSTOMER, op, row, **kw)


def invoice_event(op: Op = Op.UPDATE, row: dict[str, Any] | None = None, **kw: Any) -> ChangeEvent:
    if row is None and op not in (Op.DELETE, Op.TOMBSTONE):
        row = INVOICE_ROW
    return _event(EntityType.INVOICE, op, row, **kw)


def state(
    zoho_id: str | None = "Z1", payload_hash: str | None = None, status: str | None = "active"
) -> EntityState:
    return EntityState(zoho_id=zoho_id, payload_hash=payload_hash, last_lsn=1, status=status)


# --- customers: payload ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"company_name": " Acme (Pty) Ltd ", "first_name": "Ann", "last_name": "Lee"}, "Acme (Pty) Ltd"),
        ({"company_name": None, "first_name": "Ann", "last_name": "Lee"}, "Ann Lee"),
        ({"company_name": "   ", "first_name": " Ann ", "last_name": None}, "Ann"),
        ({"first_name": None, "last_name": "Lee"}, "Lee"),
        ({"first_name": "", "last_name": " ", "account_number": "CT-1"}, "CT-1"),
        ({"account_number": "CT-2"}, "CT-2"),
    ],
)
def test_display_name_is_company_else_person_else_account_number(row: dict[str, Any], expected: str) -> None:
    assert customer_display_name(row) == expected


def test_customer_payload_from_the_captured_snapshot_row() -> None:
    assert customer_payload(CUSTOMER_ROW, CONFIG) == {
        "display_name": "Ashwyn W",
        "first_name": "Ashwyn",
        "last_name": "W",
        "company_name": "",
        "email": "ashwyn@example.co.za",
        "phone": "+27 21 555 0101",
        "billing_address": {
            "street": "1 Main Rd",
            "city": "Cape Town",
            "zip": "8001",
            "country": "South Africa",
        },
        "currency_code": "ZAR",
        "custom_fields": [{"label": "Account Number", "value": "CT-2025-00002"}],
    }


@pytest.mark.parametrize("email", [None, "", "  "])
def test_customer_without_email_omits_the_email_field(email: str | None) -> None:
    assert "email" not in customer_payload({**CUSTOMER_ROW, "email": email}, CONFIG)


def test_currency_and_custom_field_label_come_from_arguments_and_config() -> None:
    config = MappingConfig(account_number_field="Acct No", default_currency="USD")
    assert customer_payload(CUSTOMER_ROW, config)["currency_code"] == "USD"
    payload = customer_payload(CUSTOMER_ROW, config, currency_code="EUR")
    assert payload["currency_code"] == "EUR"
    assert payload["custom_fields"] == [{"label": "Acct No", "value": "CT-2025-00002"}]


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (None, None),
        ("not an object", None),
        ({}, None),
        (
            {"zip": 8001, "city": " Durban ", "province": "KZN", "state": None},
            {"zip": "8001", "city": "Durban"},
        ),
        (
            {"street": "1 Main", "city": "CT", "state": "WC", "zip": "8001", "country": "ZA", "lat": 1.5},
            {"street": "1 Main", "city": "CT", "state": "WC", "zip": "8001", "country": "ZA"},
        ),
    ],
)
def test_billing_address_keeps_only_known_keys_as_strings(
    address: Any, expected: dict[str, str] | None
) -> None:
    payload = customer_payload({**CUSTOMER_ROW, "billing_address": address}, CONFIG)
    assert payload.get("billing_address") == expected


@pytest.mark.parametrize(
    "column",
    [
        "notes",
        "updated_at",
        "created_at",
        "status",
        "zoho_billing_customer_id",
        "zoho_sync_status",
        "zoho_last_synced_at",
    ],
)
def test_changes_to_unmapped_columns_keep_the_hash_and_plan_noop(column: str) -> None:
    changed = {**CUSTOMER_ROW, column: "x" * 10_000 if column == "notes" else "changed"}
    before = payload_hash(customer_payload(CUSTOMER_ROW, CONFIG))
    assert payload_hash(customer_payload(changed, CONFIG)) == before
    plan = plan_customer(customer_event(row=changed), state(payload_hash=before), CONFIG)
    assert plan.action is Action.NOOP and plan.reason == "unchanged"


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("email", "new@example.com"),
        ("first_name", "Ash"),
        ("last_name", "Watkins"),
        ("company_name", "Acme"),
        ("phone", "+27 82 000 0000"),
        ("account_number", "CT-9"),
        ("billing_address", {"city": "Durban"}),
    ],
)
def test_changes_to_mapped_columns_change_the_hash_and_plan_update(column: str, value: Any) -> None:
    before = payload_hash(customer_payload(CUSTOMER_ROW, CONFIG))
    changed = {**CUSTOMER_ROW, column: value}
    assert payload_hash(customer_payload(changed, CONFIG)) != before
    plan = plan_customer(customer_event(row=changed), state(payload_hash=before), CONFIG)
    assert plan.action is Action.UPDATE_CUSTOMER
    # An update never sends the currency: the Zoho customer keeps the one it was created with.
    expected = {k: v for k, v in customer_payload(changed, CONFIG).items() if k != "currency_code"}
    assert plan.payload == expected
    assert plan.payload_hash == payload_hash(plan.payload)


# --- customers: plans ------------------------------------------------------------------------

_HASH = payload_hash(customer_payload(CUSTOMER_ROW, CONFIG))
_TEST_ROW = {**CUSTOMER_ROW, "account_type": "internal_test"}

CUSTOMER_PLANS: list[tuple[str, ChangeEvent, EntityState | None, Action, str]] = [
    ("new-customer", customer_event(Op.READ), None, Action.CREATE_CUSTOMER, "not yet in Zoho"),
    (
        "known-but-no-zoho-id",
        customer_event(Op.CREATE),
        state(zoho_id=None),
        Action.CREATE_CUSTOMER,
        "not yet",
    ),
    ("unchanged", customer_event(), state(payload_hash=_HASH), Action.NOOP, "unchanged"),
    (
        "unchanged-status-unknown",
        customer_event(),
        state(payload_hash=_HASH, status=None),
        Action.NOOP,
        "unchanged",
    ),
    ("changed", customer_event(), state(payload_hash="old"), Action.UPDATE_CUSTOMER, "changed"),
    (
        "reactivated",
        customer_event(),
        state(payload_hash="old", status="inactive"),
        Action.MARK_CUSTOMER_ACTIVE,
        "react",
    ),
    ("test-never-synced", customer_event(row=_TEST_ROW), None, Action.SKIP, "internal test account"),
    ("test-synced", customer_event(row=_TEST_ROW), state(), Action.MARK_CUSTOMER_INACTIVE, "internal test"),
    (
        "test-inactive",
        customer_event(row=_TEST_ROW),
        state(status="inactive"),
        Action.SKIP,
        "internal test account",
    ),
    (
        "delete-synced",
        customer_event(Op.DELETE),
        state(),
        Action.MARK_CUSTOMER_INACTIVE,
        "deleted in the source",
    ),
    ("delete-inactive", customer_event(Op.DELETE), state(status="inactive"), Action.NOOP, "already inactive"),
    ("delete-never-synced", customer_event(Op.DELETE), None, Action.SKIP, "never synced"),
    ("delete-no-zoho-id", customer_event(Op.DELETE), state(zoho_id=None), Action.SKIP, "never synced"),
    ("tombstone", customer_event(Op.TOMBSTONE), state(), Action.SKIP, "tombstone"),
]


@pytest.mark.parametrize(
    ("event", "entity_state", "action", "reason"),
    [p[1:] for p in CUSTOMER_PLANS],
    ids=[p[0] for p in CUSTOMER_PLANS],
)
def test_plan_customer(
    event: ChangeEvent, entity_state: EntityState | None, action: Action, reason: str
) -> None:
    plan = plan_customer(event, entity_state, CONFIG)
    assert plan.action is action
    assert reason in plan.reason
    if action is Action.CREATE_CUSTOMER:
        assert plan.payload == customer_payload(CUSTOMER_ROW, CONFIG)
        assert plan.payload_hash == payload_hash(plan.payload)
    elif action in (Action.UPDATE_CUSTOMER, Action.MARK_CUSTOMER_ACTIVE):
        # Updates leave the currency out (Zoho keeps the one the customer was created with) and hash
        # the same as the create did.
        full = customer_payload(CUSTOMER_ROW, CONFIG)
        assert plan.payload == {k: v for k, v in full.items() if k != "currency_code"}
        assert plan.payload_hash == payload_hash(plan.payload) == payload_hash(full)
    elif action is not Action.NOOP:
        assert plan.payload is None


def test_plan_customer_passes_the_currency_through() -> None:
    plan = plan_customer(customer_event(Op.CREATE), None, CONFIG, currency_code="USD")
    assert plan.payload is not None and plan.payload["currency_code"] == "USD"


def test_unavailable_mapped_column_gives_partial_update_without_hash() -> None:
    event = customer_event(unavailable=frozenset({"billing_address"}))
    plan = plan_customer(event, state(payload_hash=_HASH), CONFIG)
    assert plan.action is Action.UPDATE_CUSTOMER
    assert plan.payload is not None and "billing_address" not in plan.payload
    assert plan.payload_hash is None
    assert "billing_address unavailable" in plan.reason


def test_unavailable_unmapped_column_still_counts_as_unchanged() -> None:
    event = customer_event(unavailable=frozenset({"notes"}))
    assert plan_customer(event, state(payload_hash=_HASH), CONFIG).action is Action.NOOP


def test_captured_toast_update_plans_an_update_with_full_hash() -> None:
    row = _fixture_row("events-plain-toast", 1)
    event = customer_event(row=row, unavailable=frozenset({"notes"}))
    plan = plan_customer(event, state(payload_hash="old"), CONFIG)
    assert plan.action is Action.UPDATE_CUSTOMER
    assert plan.payload is not None and plan.payload["email"] == "nomvula@example.co.za"
    assert plan.payload_hash == payload_hash(plan.payload)


def test_is_internal_test() -> None:
    assert is_internal_test({"account_type": "internal_test"})
    assert not is_internal_test({"account_type": "business"})
    assert not is_internal_test({})


# --- invoices: payload -----------------------------------------------------------------------


def _zoho_total(payload: dict[str, Any]) -> Decimal:
    items = sum(
        (
            (Decimal(str(i["quantity"])) * Decimal(str(i["price"]))).quantize(Decimal("0.01"), ROUND_HALF_UP)
            for i in payload["invoice_items"]
        ),
        Decimal(0),
    )
    return items + Decimal(str(payload.get("adjustment", 0)))


def test_invoice_payload_from_the_captured_snapshot_row() -> None:
    payload = invoice_payload(INVOICE_ROW, "C-900")
    assert payload == {
        "customer_id": "C-900",
        "invoice_number": "INV-2025-00001",
        "reference_number": INVOICE_ID,
        "date": "2025-11-01",
        "due_date": "2025-11-15",
        "invoice_items": [
            {
                "name": "Fibre 100Mbps - November",
                "description": "Fibre 100Mbps - November",
                "quantity": 1,
                "price": 869.57,
                "rate": 869.57,
                "_item_code": None,
            }
        ],
        "adjustment": 130.43,
        "adjustment_description": "VAT",
    }
    assert json.loads(json.dumps(payload)) == payload  # plain JSON, no Decimal/date objects
    assert _zoho_total(payload) == INVOICE_ROW["total_amount"]
    assert INVOICES.missing_required(payload) == ()


def test_inconsistent_source_totals_still_make_zoho_total_equal_total_amount() -> None:
    # captured row: subtotal 100.00, vat 0.00, total 115.00
    payload = invoice_payload(TOAST_INVOICE_ROW, "C-1")
    assert "due_date" not in payload
    assert payload["adjustment"] == 15.0
    assert payload["adjustment_description"] != "VAT"
    assert _zoho_total(payload) == Decimal("115.00")


def test_invoice_without_line_items_gets_one_item_for_the_subtotal() -> None:
    row = {**INVOICE_ROW, "line_items": [], "subtotal": Decimal("200.00"), "total_amount": Decimal("230.00")}
    payload = invoice_payload(row, "C-1")
    assert payload["invoice_items"] == [
        {
            "name": "Invoice INV-2025-00001",
            "description": "Invoice INV-2025-00001",
            "quantity": 1,
            "price": 200.0,
            "rate": 200.0,
            "_item_code": None,
        }
    ]
    assert _zoho_total(payload) == Decimal("230.00")


def test_invoice_items_carry_quantity_and_price_and_no_adjustment_when_totals_match() -> None:
    items = [
        {"description": "Router", "quantity": 2, "unit_price": 100},
        {"name": "Install", "quantity": 1.5, "price": "10.10"},
        {"quantity": 1, "rate": -5},
    ]
    row = {**INVOICE_ROW, "line_items": items, "total_amount": Decimal("210.15")}
    payload = invoice_payload(row, "C-1")
    assert [(i["name"], i["quantity"], i["price"], i["rate"]) for i in payload["invoice_items"]] == [
        ("Router", 2, 100.0, 100.0),
        ("Install", 1.5, 10.1, 10.1),
        ("Item 3", 1, -5.0, -5.0),
    ]
    assert "adjustment" not in payload
    assert _zoho_total(payload) == Decimal("210.15")


@pytest.mark.parametrize(
    ("line_items", "reason"),
    [
        ({"not": "a list"}, "line_items is not a JSON array"),
        (["x"], "line item 1 is not a JSON object"),
        ([{"description": "x", "quantity": 1}], "line item 1 has no unit_price"),
        ([{"description": "x", "quantity": "many", "unit_price": 1}], "line item 1 quantity is not a number"),
        ([{"description": "x", "unit_price": True}], "line item 1 unit_price is not a number"),
    ],
)
def test_unreadable_line_items_raise_mapping_error(line_items: Any, reason: str) -> None:
    with pytest.raises(MappingError) as info:
        invoice_payload({**INVOICE_ROW, "line_items": line_items}, "C-1")
    assert info.value.reason == reason


@pytest.mark.parametrize(("raw", "expected"), [("ZAR", "ZAR"), ("usd", "USD"), ("EU ", "EU"), (None, "")])
def test_invoice_currency_is_stripped_iso_code(raw: str | None, expected: str) -> None:
    assert invoice_currency({"currency": raw}) == expected


@given(
    items=st.lists(
        st.tuples(
            st.integers(1, 20),
            st.decimals(min_value=Decimal("-1000"), max_value=Decimal("100000"), places=2),
        ),
        max_size=5,
    ),
    total=st.decimals(min_value=Decimal("-1000000"), max_value=Decimal("1000000"), places=2),
    subtotal=st.decimals(min_value=Decimal("0"), max_value=Decimal("1000000"), places=2),
)
def test_zoho_total_always_equals_source_total_amount(
    items: list[tuple[int, Decimal]], total: Decimal, subtotal: Decimal
) -> None:
    line_items = [
        {"description": f"i{n}", "quantity": q, "unit_price": float(p)} for n, (q, p) in enumerate(items)
    ]
    row = {**INVOICE_ROW, "line_items": line_items, "subtotal": subtotal, "total_amount": total}
    payload = invoice_payload(row, "C-1")
    assert _zoho_total(payload) == total
    assert json.loads(json.dumps(payload)) == payload


# --- invoices: plans -------------------------------------------------------------------------

_INV_HASH = payload_hash(invoice_payload(INVOICE_ROW, "C-1"))
_VOID_ROW = {**INVOICE_ROW, "status": "void"}
_PAID_ROW = {**INVOICE_ROW, "status": "paid"}

INVOICE_PLANS: list[tuple[str, ChangeEvent, EntityState | None, str | None, Action, str]] = [
    ("tombstone", invoice_event(Op.TOMBSTONE), state(status="sent"), "C-1", Action.SKIP, "tombstone"),
    ("delete-never-synced", invoice_event(Op.DELETE), None, "C-1", Action.SKIP, "never synced"),
    ("delete-draft", invoice_event(Op.DELETE), state(status="draft"), "C-1", Action.DELETE_INVOICE, "draft"),
    ("delete-sent", invoice_event(Op.DELETE), state(status="sent"), "C-1", Action.VOID_INVOICE, "deleted"),
    ("delete-paid", invoice_event(Op.DELETE), state(status="paid"), "C-1", Action.VOID_INVOICE, "deleted"),
    ("delete-void", invoice_event(Op.DELETE), state(status="void"), "C-1", Action.NOOP, "already void"),
    ("void-never-synced", invoice_event(row=_VOID_ROW), None, "C-1", Action.SKIP, "never synced"),
    (
        "void-synced",
        invoice_event(row=_VOID_ROW),
        state(status="sent"),
        None,
        Action.VOID_INVOICE,
        "void in the",
    ),
    ("void-already", invoice_event(row=_VOID_ROW), state(status="void"), "C-1", Action.NOOP, "already void"),
    (
        "create-needs-customer",
        invoice_event(Op.CREATE),
        None,
        None,
        Action.CREATE_INVOICE,
        "customer not yet",
    ),
    (
        "update-needs-customer",
        invoice_event(),
        state(status="sent"),
        None,
        Action.UPDATE_INVOICE,
        "customer not yet",
    ),
    ("create", invoice_event(Op.READ), None, "C-1", Action.CREATE_INVOICE, "not yet in Zoho"),
    (
        "unchanged",
        invoice_event(),
        state(payload_hash=_INV_HASH, status="sent"),
        "C-1",
        Action.NOOP,
        "unchanged",
    ),
    (
        "unchanged-paid",
        invoice_event(row=_PAID_ROW),
        state(payload_hash=_INV_HASH, status="paid"),
        "C-1",
        Action.NOOP,
        "unchanged",
    ),
    (
        "update-draft",
        invoice_event(),
        state(payload_hash="old", status="draft"),
        "C-1",
        Action.UPDATE_INVOICE,
        "changed",
    ),
    (
        "update-sent",
        invoice_event(),
        state(payload_hash="old", status="sent"),
        "C-1",
        Action.UPDATE_INVOICE,
        "changed",
    ),
    (
        "update-status-unknown",
        invoice_event(),
        state(payload_hash="old", status=None),
        "C-1",
        Action.UPDATE_INVOICE,
        "changed",
    ),
    (
        "paid-not-editable",
        invoice_event(row=_PAID_ROW),
        state(payload_hash="old", status="paid"),
        "C-1",
        Action.SKIP,
        "invoice no longer editable in Zoho (status paid)",
    ),
    (
        "toast-line-items-never-synced",
        invoice_event(unavailable=frozenset({"line_items"})),
        None,
        "C-1",
        Action.SKIP,
        "cannot create: line_items unavailable",
    ),
]


@pytest.mark.parametrize(
    ("event", "entity_state", "customer_zoho_id", "action", "reason"),
    [p[1:] for p in INVOICE_PLANS],
    ids=[p[0] for p in INVOICE_PLANS],
)
def test_plan_invoice(
    event: ChangeEvent,
    entity_state: EntityState | None,
    customer_zoho_id: str | None,
    action: Action,
    reason: str,
) -> None:
    plan = plan_invoice(event, entity_state, customer_zoho_id)
    assert plan.action is action
    assert reason in plan.reason
    if customer_zoho_id is None and action in (Action.CREATE_INVOICE, Action.UPDATE_INVOICE):
        assert plan.payload is None and plan.needs_parent == CUSTOMER_ID
    elif action in (Action.CREATE_INVOICE, Action.UPDATE_INVOICE):
        assert plan.payload == invoice_payload(INVOICE_ROW, "C-1")
        assert plan.payload_hash == payload_hash(plan.payload)
        assert plan.needs_parent is None
    elif action is not Action.NOOP:
        assert plan.payload is None


def test_invoice_unchanged_apart_from_write_back_columns_is_noop() -> None:
    row = {
        **INVOICE_ROW,
        "zoho_billing_invoice_id": "Z9",
        "zoho_sync_status": "synced",
        "updated_at": dt.datetime.now(dt.UTC),
    }
    plan = plan_invoice(invoice_event(row=row), state(payload_hash=_INV_HASH, status="sent"), "C-1")
    assert plan.action is Action.NOOP


def test_invoice_with_unavailable_line_items_updates_without_items_and_without_hash() -> None:
    event = invoice_event(unavailable=frozenset({"line_items"}))
    plan = plan_invoice(event, state(payload_hash=_INV_HASH, status="draft"), "C-1")
    assert plan.action is Action.UPDATE_INVOICE
    assert (
        plan.payload is not None and "invoice_items" not in plan.payload and "adjustment" not in plan.payload
    )
    assert plan.payload_hash is None


def test_missing_required_names_the_empty_fields() -> None:
    assert CUSTOMERS.missing_required({"display_name": ""}) == ("display_name",)
    assert INVOICES.missing_required({"customer_id": "C", "invoice_items": []}) == ("date", "invoice_items")
    assert spec_of(EntityType.INVOICE).missing_required({}) == ("customer_id", "date", "invoice_items")


# --- payload hash ----------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=10)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.dates()
)
_payloads = st.dictionaries(
    st.text(max_size=8),
    st.recursive(
        _scalars,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
        max_leaves=10,
    ),
    max_size=6,
)


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: _shuffled(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


@settings(max_examples=200)
@given(payload=_payloads, seed=st.integers())
def test_payload_hash_is_stable_under_key_order(payload: dict[str, Any], seed: int) -> None:
    assert payload_hash(_shuffled(payload, random.Random(seed))) == payload_hash(payload)


@given(
    column=st.sampled_from(["email", "first_name", "last_name", "company_name", "phone", "account_number"]),
    value=st.text(min_size=1, max_size=20).filter(lambda s: s.strip()),
)
def test_payload_hash_changes_when_a_mapped_field_changes(column: str, value: str) -> None:
    changed = {**CUSTOMER_ROW, column: value}
    a, b = customer_payload(CUSTOMER_ROW, CONFIG), customer_payload(changed, CONFIG)
    changed_value = value.strip() != (CUSTOMER_ROW[column] or "").strip()
    assert (payload_hash(a) != payload_hash(b)) == changed_value


def test_payload_hash_treats_equal_decimals_and_dates_canonically() -> None:
    assert payload_hash({"a": Decimal("1.0")}) == payload_hash({"a": Decimal("1.00")})
    assert payload_hash({"a": Decimal("1.0")}) != payload_hash({"a": Decimal("1.01")})
    assert payload_hash({"d": dt.date(2025, 1, 2)}) == payload_hash({"d": "2025-01-02"})
