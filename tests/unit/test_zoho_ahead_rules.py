"""Zoho ahead, as pure planning rules: a status Zoho reached on its own is never fought, one zoho-cdc set is.

The entity map's `ahead` says Zoho moved by itself (paid in the portal, voided or made inactive by hand).
While the source asks for a status Zoho has no call back from, the plan is ZOHO_AHEAD (no call, no
refusal); once the source agrees, it plans as usual. Without `ahead`, the same move is the source going
backwards and stays a StatusBackwards refusal (one dead letter).
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.entities.customers.spec import plan_customer
from consumer.entities.invoices.spec import plan_invoice
from consumer.entities.invoices.status import (
    INVOICE_STAGES,
    ZOHO_INVOICE_STAGE,
    StatusBackwards,
    zoho_invoice_stage,
)
from consumer.model.call_errors import ZohoAhead
from consumer.model.plan import Action, EntityState, MappingConfig
from consumer.pipeline.decision.entity_map import as_listed, still_ahead, zoho_ahead
from tests.unit.test_status_rules import _HASH, _customer, _invoice

SOURCE_STATUSES = (*INVOICE_STAGES, "void")


def _ahead(status: str, payload_hash: str | None = _HASH) -> EntityState:
    return EntityState(zoho_id="Z1", payload_hash=payload_hash, last_lsn=1, status=status, ahead=status)


def test_a_portal_paid_invoice_edited_in_the_source_is_zoho_ahead_with_no_call() -> None:
    plan = plan_invoice(_invoice("sent"), _ahead("paid", "an older hash"), "C-1")
    assert plan.action is Action.ZOHO_AHEAD and not plan.makes_call and plan.payload is None
    assert (
        "Zoho is ahead" in plan.reason
        and "paid in Zoho" in plan.reason
        and "sent in the source" in plan.reason
    )


def test_the_same_move_that_zoho_cdc_made_itself_is_the_source_going_backwards() -> None:
    set_by_us = EntityState(zoho_id="Z1", payload_hash=_HASH, last_lsn=1, status="paid")
    with pytest.raises(StatusBackwards):
        plan_invoice(_invoice("sent"), set_by_us, "C-1")


def test_an_invoice_ends_zoho_ahead_once_the_source_agrees() -> None:
    assert plan_invoice(_invoice("paid"), _ahead("paid"), "C-1").action is Action.NOOP
    # content changed too, but a paid invoice is no longer editable: nothing to send, and no skip that
    # would leave the map saying Zoho is ahead
    assert plan_invoice(_invoice("paid"), _ahead("paid", "an older hash"), "C-1").action is Action.NOOP
    assert plan_invoice(_invoice("void"), _ahead("void"), "C-1").action is Action.NOOP


def test_a_source_that_moves_forward_past_a_partial_portal_payment_pays_the_rest() -> None:
    plan = plan_invoice(_invoice("paid"), _ahead("partially_paid"), "C-1")
    assert plan.action is Action.RECORD_PAYMENT


@given(
    zoho=st.sampled_from(sorted(ZOHO_INVOICE_STAGE)),
    source=st.sampled_from(SOURCE_STATUSES),
    same_content=st.booleans(),
)
def test_an_invoice_zoho_is_ahead_of_is_never_refused_and_never_sent_backwards(
    zoho: str, source: str, same_content: bool
) -> None:
    """Whatever Zoho moved to and whatever the source says, planning never raises, and a plan that makes
    a call only moves Zoho forward (or voids, which Zoho allows from any status)."""
    plan = plan_invoice(_invoice(source), _ahead(zoho, _HASH if same_content else "older"), "C-1")
    stage = zoho_invoice_stage(zoho)
    if plan.action is Action.ZOHO_AHEAD:  # the source asks for a status Zoho has no call back to
        assert source != "void"
        assert stage == "void" or INVOICE_STAGES.index(source) < INVOICE_STAGES.index(stage)  # type: ignore[arg-type]
    elif plan.makes_call and source != "void":  # forward only
        assert stage != "void" and INVOICE_STAGES.index(source) >= INVOICE_STAGES.index(stage)  # type: ignore[arg-type]


def test_a_customer_made_inactive_in_zoho_is_not_made_active_again() -> None:
    config = MappingConfig()
    digest = plan_customer(_customer("active"), None, config).payload_hash
    ahead = EntityState(zoho_id="Z1", payload_hash=digest, last_lsn=1, status="inactive", ahead="inactive")
    edited = plan_customer(_customer("active", phone="+27 11 000 0000"), ahead, config)
    assert edited.action is Action.ZOHO_AHEAD and not edited.makes_call
    # closed in the source too: they agree, and the content change is sent (no status call)
    closed = plan_customer(_customer("closed", phone="+27 11 000 0000"), ahead, config)
    assert closed.action is Action.UPDATE_CUSTOMER and closed.status == "inactive"
    # without `ahead` (zoho-cdc made it inactive), an active source reactivates it as before
    ours = dataclasses.replace(ahead, ahead=None)
    assert plan_customer(_customer("active"), ours, config).action is Action.MARK_CUSTOMER_ACTIVE


def test_the_entity_map_takes_zohos_status_and_keeps_what_zoho_acknowledged() -> None:
    event = _invoice("sent")
    state = EntityState(zoho_id="Z1", payload_hash="acknowledged", last_lsn=1, status="sent")
    plan = plan_invoice(_invoice("sent"), dataclasses.replace(state, payload_hash="older"), "C-1")
    refused = zoho_ahead(event, state, plan, ZohoAhead("Z1", "paid", "paid in the portal"))
    assert (refused.zoho_status, refused.zoho_ahead, refused.payload_hash) == ("paid", "paid", "acknowledged")
    accepted = zoho_ahead(event, state, plan, ZohoAhead("Z1", "paid", "why", content_sent=True))
    assert accepted.payload_hash == plan.payload_hash
    held = still_ahead(event, _ahead("paid", "acknowledged"))
    assert (held.zoho_status, held.zoho_ahead, held.payload_hash) == ("paid", "paid", "acknowledged")


class _Listed:
    """A resync listing that holds one invoice in the given status."""

    def __init__(self, status: str) -> None:
        self.status = status

    def covers(self, entity_type: object) -> bool:
        return True

    def find(self, entity_type: object, zoho_id: object, natural_key: object) -> dict[str, str]:
        return {"invoice_id": "Z1", "status": self.status}

    def zoho_id_of(self, entity_type: object, record: dict[str, str]) -> str:
        return record["invoice_id"]

    def differs(self, *args: object) -> bool:
        return False


def test_a_resync_keeps_zoho_ahead_while_zoho_shows_it_and_ends_it_once_undone_in_zoho() -> None:
    event = _invoice("sent")
    kept = as_listed(_Listed("paid"), MappingConfig(), event.entity_type, event.row, _ahead("paid"))
    assert kept is not None and kept.ahead == "paid"
    undone = as_listed(_Listed("sent"), MappingConfig(), event.entity_type, event.row, _ahead("paid"))
    assert undone is not None and undone.ahead is None and undone.status == "sent"
