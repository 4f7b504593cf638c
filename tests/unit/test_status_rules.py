"""Status rules: which Zoho calls take an invoice or a customer to the source's status (pure, no I/O)."""

from __future__ import annotations

import pytest

from consumer.entities.customers.rules import customer_zoho_status
from consumer.entities.customers.spec import plan_customer
from consumer.entities.invoices.items import with_product_ids
from consumer.entities.invoices.payload import invoice_payload, line_item_code
from consumer.entities.invoices.spec import plan_invoice
from consumer.entities.invoices.status import StatusBackwards, invoice_status_steps, zoho_invoice_stage
from consumer.model.events import ChangeEvent, EntityType, Op
from consumer.model.plan import Action, EntityState, MappingConfig, payload_hash
from tests.unit.test_mapping import CUSTOMER_ROW, INVOICE_ROW

FORWARD = [
    ("draft", "draft", ()),
    ("draft", "sent", ("open",)),
    ("draft", "paid", ("open", "pay")),
    ("draft", "void", ("void",)),
    ("sent", "sent", ()),
    ("sent", "paid", ("pay",)),
    ("sent", "void", ("void",)),
    ("paid", "paid", ()),
    ("paid", "void", ("void",)),
    ("void", "void", ()),
]
BACKWARDS = [
    ("sent", "draft"),
    ("paid", "draft"),
    ("paid", "sent"),
    ("void", "draft"),
    ("void", "sent"),
    ("void", "paid"),
]


@pytest.mark.parametrize(("current", "target", "steps"), FORWARD)
def test_invoice_status_moves_forward_with_these_calls(
    current: str, target: str, steps: tuple[str, ...]
) -> None:
    assert invoice_status_steps(current, target) == steps


@pytest.mark.parametrize(("current", "target"), BACKWARDS)
def test_a_status_going_backwards_is_refused_with_a_sentence_naming_both(current: str, target: str) -> None:
    with pytest.raises(StatusBackwards) as refused:
        invoice_status_steps(current, target, {"invoice_number": "INV-9"})
    assert f"INV-9 is {current} in Zoho but {target} in the source" in refused.value.reason
    assert "dlq reprocess" in refused.value.reason


@pytest.mark.parametrize(
    ("zoho", "stage"),
    [
        ("draft", "draft"),
        ("sent", "sent"),
        ("overdue", "sent"),
        ("partially_paid", "sent"),
        ("paid", "paid"),
        ("void", "void"),
        (None, None),
    ],
)
def test_zoho_statuses_fold_into_the_source_stages(zoho: str | None, stage: str | None) -> None:
    assert zoho_invoice_stage(zoho) == stage


def _invoice(status: str) -> ChangeEvent:
    return ChangeEvent(
        EntityType.INVOICE,
        str(INVOICE_ROW["id"]),
        Op.UPDATE,
        {**INVOICE_ROW, "status": status},
        frozenset(),
        100,
        1,
        False,
        1,
    )


def _state(status: str | None, payload_hash: str | None = None) -> EntityState:
    return EntityState(zoho_id="Z1", payload_hash=payload_hash, last_lsn=1, status=status)


_HASH = payload_hash(invoice_payload(INVOICE_ROW, "C-1"))


@pytest.mark.parametrize(
    ("source", "zoho", "action"),
    [
        ("draft", "draft", Action.NOOP),
        ("sent", "sent", Action.NOOP),
        ("sent", "overdue", Action.NOOP),
        ("paid", "paid", Action.NOOP),
        ("sent", "draft", Action.OPEN_INVOICE),
        ("paid", "sent", Action.RECORD_PAYMENT),
        ("paid", "draft", Action.RECORD_PAYMENT),
        ("void", "paid", Action.VOID_INVOICE),
    ],
)
def test_an_unchanged_invoice_costs_a_call_only_when_its_status_differs(
    source: str, zoho: str, action: Action
) -> None:
    plan = plan_invoice(_invoice(source), _state(zoho, _HASH), "C-1")
    assert plan.action is action
    assert plan.payload is None  # content is unchanged: only the status call is made


def test_a_new_paid_invoice_is_created_then_opened_and_paid() -> None:
    plan = plan_invoice(_invoice("paid"), None, "C-1")
    assert plan.action is Action.CREATE_INVOICE and plan.status == "paid"
    assert "draft -> paid" in plan.reason


def test_a_paid_invoice_going_back_to_sent_is_a_mapping_refusal() -> None:
    with pytest.raises(StatusBackwards):
        plan_invoice(_invoice("sent"), _state("paid", _HASH), "C-1")


def test_a_deleted_invoice_is_voided_unless_it_is_a_draft_in_zoho() -> None:
    deleted = ChangeEvent(EntityType.INVOICE, "I1", Op.DELETE, None, frozenset(), 100, 1, False, 1)
    assert plan_invoice(deleted, _state("draft"), "C-1").action is Action.DELETE_INVOICE
    for status in ("sent", "overdue", "paid", None):
        assert plan_invoice(deleted, _state(status), "C-1").action is Action.VOID_INVOICE


def test_an_invoice_voided_while_its_create_is_unresolved_is_voided_in_zoho_not_skipped() -> None:
    """A process died after sending the create (an intent left, no Zoho id in the map), then the source
    voided the invoice: the create may be in Zoho, open, so it is looked up and voided (found by the
    simulation, seed 351 and others: the invoice stayed open in Zoho)."""
    creating = EntityState(zoho_id=None, payload_hash=None, last_lsn=None, status=None, pending_create=True)
    plan = plan_invoice(_invoice("void"), creating, "C-1")
    assert plan.action is Action.VOID_INVOICE and plan.status == "void"
    assert "create was unresolved" in plan.reason
    assert plan_invoice(_invoice("void"), None, "C-1").action is Action.SKIP  # never sent: nothing to void


def _customer(status: str, **extra: object) -> ChangeEvent:
    row = {**CUSTOMER_ROW, "status": status, **extra}
    return ChangeEvent(
        EntityType.CUSTOMER, str(CUSTOMER_ROW["id"]), Op.UPDATE, row, frozenset(), 100, 1, False, 1
    )


@pytest.mark.parametrize(
    ("status", "suspended", "expected"),
    [
        ("active", "active", "active"),
        ("closed", "active", "inactive"),
        ("suspended", "active", "active"),
        ("suspended", "inactive", "inactive"),
    ],
)
def test_customer_status_follows_the_source(status: str, suspended: str, expected: str) -> None:
    assert customer_zoho_status({"status": status}, MappingConfig(suspended_status=suspended)) == expected


def test_a_closed_customer_is_marked_inactive_and_reopened_active_without_a_put_when_unchanged() -> None:
    config = MappingConfig()
    digest = plan_customer(_customer("active"), None, config).payload_hash
    closing = plan_customer(_customer("closed"), _state("active", digest), config)
    assert closing.action is Action.MARK_CUSTOMER_INACTIVE and closing.payload is None
    reopening = plan_customer(_customer("active"), _state("inactive", digest), config)
    assert reopening.action is Action.MARK_CUSTOMER_ACTIVE and reopening.payload is None
    assert plan_customer(_customer("closed"), _state("inactive", digest), config).action is Action.NOOP
    assert plan_customer(_customer("suspended"), _state("active", digest), config).action is Action.NOOP


def test_a_closed_customer_changed_while_inactive_is_updated_and_stays_inactive() -> None:
    plan = plan_customer(
        _customer("closed", phone="+27 11 000 0000"), _state("inactive", "old"), MappingConfig()
    )
    assert plan.action is Action.UPDATE_CUSTOMER and plan.status == "inactive"


def test_a_customer_made_a_test_account_while_its_create_is_unresolved_is_marked_inactive() -> None:
    """As a delete: the create a dead process sent may be in Zoho, active; it is found and made inactive."""
    creating = EntityState(zoho_id=None, payload_hash=None, last_lsn=None, status=None, pending_create=True)
    test_account = _customer("active", account_type="internal_test")
    plan = plan_customer(test_account, creating, MappingConfig())
    assert plan.action is Action.MARK_CUSTOMER_INACTIVE and "create was unresolved" in plan.reason
    assert plan_customer(test_account, None, MappingConfig()).action is Action.SKIP  # never sent


def test_line_codes_become_product_ids_and_uncoded_lines_the_default_item() -> None:
    row = {
        **INVOICE_ROW,
        "line_items": [
            {"description": "Fibre", "quantity": 1, "unit_price": "100.00", "sku": "FIBRE-100"},
            {"description": "Router", "quantity": 1, "unit_price": "50.00", "item_code": "RTR"},
            {"description": "Install", "quantity": 1, "unit_price": "10.00"},
        ],
    }
    payload = invoice_payload(row, "C-1")
    sent = with_product_ids(payload, {"FIBRE-100": "I-1", "RTR": "I-2"}, "I-DEF")
    assert [line["product_id"] for line in sent["invoice_items"]] == ["I-1", "I-2", "I-DEF"]
    assert all("_item_code" not in line for line in sent["invoice_items"])
    adhoc = with_product_ids(payload, {"FIBRE-100": "I-1", "RTR": "I-2"}, None)
    assert "product_id" not in adhoc["invoice_items"][2]


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ({"sku": " A1 "}, "A1"),
        ({"item_code": "B2"}, "B2"),
        ({"sku": "", "item_code": "C3"}, "C3"),
        ({}, None),
        ({"sku": True}, None),
    ],
)
def test_a_line_code_is_sku_else_item_code(line: dict[str, object], code: str | None) -> None:
    assert line_item_code(line) == code
