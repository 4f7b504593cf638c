"""Status drift in `reconcile.compare`: the Zoho status each source status asks for (pure, no services)."""

from __future__ import annotations

import pytest

from consumer.jobs.reconcile.comparison import compare, zoho_ahead
from consumer.jobs.reconcile.sides import SourceSnapshot, ZohoSnapshot
from consumer.model.events import EntityType
from consumer.model.plan import MappingConfig

CUSTOMER_ID = "00000000-0000-0000-0000-00000000000c"
INVOICE_ID = "00000000-0000-0000-0000-00000000000i"


def _world(
    customer_status: str, zoho_customer: str, invoice_status: str, zoho_invoice: str
) -> tuple[SourceSnapshot, ZohoSnapshot]:
    customer = {
        "id": CUSTOMER_ID,
        "account_number": "CT-1",
        "first_name": "Ann",
        "last_name": "Lee",
        "account_type": "personal",
        "status": customer_status,
    }
    invoice = {
        "id": INVOICE_ID,
        "customer_id": CUSTOMER_ID,
        "invoice_number": "INV-1",
        "total_amount": "115.00",
        "status": invoice_status,
    }
    zoho_c = {
        "customer_id": "1",
        "display_name": "Ann Lee",
        "first_name": "Ann",
        "last_name": "Lee",
        "status": zoho_customer,
        "custom_fields": [{"label": "Account Number", "value": "CT-1"}],
    }
    zoho_i = {"invoice_id": "2", "number": "INV-1", "customer_id": "1", "total": 115, "status": zoho_invoice}
    mapped = {("customer", CUSTOMER_ID): "1", ("invoice", INVOICE_ID): "2"}
    return SourceSnapshot([customer], [invoice], mapped), ZohoSnapshot([zoho_c], [zoho_i])


def _status_drift(*world: str, suspended: str = "active") -> dict[str, tuple[str, str]]:
    source, zoho = _world(*world)
    report = compare(source, zoho, MappingConfig(suspended_status=suspended), list_filter="cf_account_number")
    return {d.entity_type: d.fields["status"] for d in report.status_drift}


@pytest.mark.parametrize(
    ("source_invoice", "zoho_invoice", "drift"),
    [
        ("draft", "draft", None),
        ("sent", "sent", None),
        ("sent", "overdue", None),  # overdue is an open (sent) invoice
        ("paid", "paid", None),
        ("void", "void", None),
        ("sent", "draft", ("sent", "draft")),  # sent in the source, still a draft in Zoho
        ("paid", "sent", ("paid", "sent")),  # paid in the source, unpaid in Zoho
        ("paid", "partially_paid", ("paid", "partially_paid")),
        ("paid", "draft", ("paid", "draft")),
        ("void", "sent", ("void", "sent")),
        ("void", "paid", ("void", "paid")),
        ("sent", "void", ("sent", "void")),  # voided in Zoho only: reported (Zoho cannot un-void)
        ("sent", "paid", ("sent", "paid")),  # ahead in Zoho: reported, the repair dead-letters it
    ],
)
def test_an_invoice_whose_zoho_status_is_not_the_source_stage_is_status_drift(
    source_invoice: str, zoho_invoice: str, drift: tuple[str, str] | None
) -> None:
    assert _status_drift("active", "active", source_invoice, zoho_invoice).get("invoice") == drift


@pytest.mark.parametrize(
    ("source_customer", "zoho_customer", "suspended", "drift"),
    [
        ("active", "active", "active", None),
        ("closed", "inactive", "active", None),  # closed is inactive in Zoho: in step
        ("closed", "active", "active", ("inactive", "active")),
        ("active", "inactive", "active", ("active", "inactive")),
        ("suspended", "active", "active", None),  # ZOHO_SUSPENDED_CUSTOMER_STATUS default
        ("suspended", "active", "inactive", ("inactive", "active")),
    ],
)
def test_a_customer_whose_zoho_status_is_not_the_one_its_source_status_asks_for_is_status_drift(
    source_customer: str, zoho_customer: str, suspended: str, drift: tuple[str, str] | None
) -> None:
    found = _status_drift(source_customer, zoho_customer, "draft", "draft", suspended=suspended)
    assert found.get("customer") == drift


@pytest.mark.parametrize(
    ("entity", "source", "found", "map_status", "map_ahead", "ahead"),
    [
        (EntityType.INVOICE, "sent", "paid", "sent", None, True),  # paid in the portal, not yet met
        (EntityType.INVOICE, "sent", "partially_paid", "sent", None, False),  # still open: Zoho can be edited
        (EntityType.INVOICE, "draft", "void", "draft", None, True),  # voided by hand
        (EntityType.INVOICE, "sent", "paid", "paid", None, False),  # zoho-cdc paid it: the source went back
        (EntityType.INVOICE, "sent", "paid", None, None, False),  # the map knows nothing: drift, as before
        (EntityType.INVOICE, "sent", "paid", "paid", "paid", True),  # recorded by the live sync
        (EntityType.INVOICE, "paid", "sent", "sent", None, False),  # the source is ahead: drift to repair
        (EntityType.CUSTOMER, "active", "inactive", "active", None, True),  # made inactive by hand
        (EntityType.CUSTOMER, "active", "inactive", "inactive", None, False),  # zoho-cdc made it inactive
        (EntityType.CUSTOMER, "inactive", "active", "inactive", None, False),  # closed in the source: drift
    ],
)
def test_a_status_zoho_reached_on_its_own_is_zoho_ahead_not_drift(
    entity: EntityType, source: str, found: str, map_status: str | None, map_ahead: str | None, ahead: bool
) -> None:
    assert zoho_ahead(entity, source, found, map_status, map_ahead) is ahead
