"""Invoices: the `customer_invoices` table as Zoho Billing invoices, whose status follows the source.

An invoice needs its customer in Zoho first (the parent link). Its status moves forward only:
draft -> sent (converttoopen) -> paid (one payment for the balance); void ends any of them; a deleted
invoice is deleted while a draft in Zoho and voided otherwise. A move Zoho has no call for raises
`StatusBackwards` and is dead-lettered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from consumer.entities.invoices.calls import InvoiceCalls
from consumer.entities.invoices.drift import InvoiceComparison
from consumer.entities.invoices.payload import invoice_currency, invoice_payload
from consumer.entities.invoices.status import (
    EDITABLE_INVOICE_STAGES,
    StatusBackwards,
    invoice_source_stage,
    invoice_status_steps,
    zoho_invoice_stage,
)
from consumer.entities.spec import EntitySpec, ParentLink, PlanInput
from consumer.model import plan as rules
from consumer.model.events import ChangeEvent, ColumnKind, EntityType, Op
from consumer.model.plan import Action, EntityState, MappingError, Plan, payload_hash

_T, _N, _D, _J, _TS = (
    ColumnKind.TEXT,
    ColumnKind.NUMERIC,
    ColumnKind.DATE,
    ColumnKind.JSONB,
    ColumnKind.TIMESTAMPTZ,
)

#: The columns of `customer_invoices` (consumer/sql/source_schema.sql), by how Debezium sends them.
COLUMNS: Final[Mapping[str, ColumnKind]] = {
    "id": _T,
    "customer_id": _T,
    "invoice_number": _T,
    "invoice_date": _D,
    "due_date": _D,
    "currency": _T,
    "subtotal": _N,
    "vat_amount": _N,
    "total_amount": _N,
    "status": _T,
    "line_items": _J,
    "created_at": _TS,
    "updated_at": _TS,
    "zoho_billing_invoice_id": _T,
    "zoho_sync_status": _T,
    "zoho_last_synced_at": _TS,
}

#: Invoice columns that feed the Zoho body or the plan.
INVOICE_MAPPED_COLUMNS: Final = frozenset(
    {
        "id",
        "customer_id",
        "invoice_number",
        "invoice_date",
        "due_date",
        "subtotal",
        "vat_amount",
        "total_amount",
        "status",
        "line_items",
    }
)


#: Columns an invoice cannot be created without (a TOASTed line_items on an update is possible).
_INVOICE_CREATE_COLUMNS: Final = frozenset({"invoice_date", "line_items", "subtotal", "total_amount"})


def plan_invoice(
    event: ChangeEvent,
    state: EntityState | None,
    customer_zoho_id: str | None,
    *,
    customer_currency: str | None = None,
) -> Plan:
    """Decide the Zoho call for an invoice event.

    A void source invoice that was never synced is skipped (we do not create invoices just to
    void them). A Zoho status of None is treated as editable (the API rejects the PUT if not).
    Zoho invoices take their customer's currency, so an invoice in another currency than the
    one its Zoho customer was created with (`customer_currency`, when known) is a MappingError.
    """
    if event.op is Op.TOMBSTONE:
        return rules.skip("tombstone")
    synced = rules.is_synced(state)
    zoho_status = state.status if state is not None else None
    if event.op is Op.DELETE:
        return _plan_delete(state)
    row = rules.row_of(event)
    target = invoice_source_stage(row)
    if target == "void":
        return _plan_void(state)

    missing_for_create = sorted(event.unavailable & _INVOICE_CREATE_COLUMNS)
    if not synced and missing_for_create:
        return rules.skip(
            f"cannot create: {', '.join(missing_for_create)} unavailable (unchanged TOAST value); "
            "backfill the invoice or set REPLICA IDENTITY FULL"
        )
    current = zoho_invoice_stage(zoho_status) if synced else None
    try:
        steps = invoice_status_steps(current or "draft", target, row)
    except StatusBackwards:
        if state is None or state.ahead is None:
            raise  # zoho-cdc set that status itself: the source moved backwards (dead-lettered once)
        return _plan_zoho_ahead(row, state, target)
    action = Action.UPDATE_INVOICE if synced else Action.CREATE_INVOICE
    if customer_zoho_id is None:
        customer_id = rules.as_text(row.get("customer_id")) or None
        return Plan(action, None, None, "customer not yet in Zoho", needs_parent=customer_id, status=target)

    currency = invoice_currency(row)
    if customer_currency and currency and currency != customer_currency.upper():
        raise MappingError(
            f"invoice {rules.as_text(row.get('invoice_number')) or event.entity_id} is in {currency} but its"
            " customer"
            f" was created in Zoho in {customer_currency.upper()}; Zoho bills an invoice in its customer's"
            " currency, so it is not sent"
        )
    payload = invoice_payload(row, customer_zoho_id)
    partial = sorted(event.unavailable & INVOICE_MAPPED_COLUMNS)
    digest = None if partial else payload_hash(payload)
    note = f" (partial: {', '.join(partial)} unavailable)" if partial else ""
    moves = f"; {current or 'draft'} -> {target} in Zoho" if steps else ""

    if not synced:
        rules.require_natural_key(row, "invoice_number", "invoice")
        return Plan(Action.CREATE_INVOICE, payload, digest, f"not yet in Zoho{note}{moves}", status=target)
    assert state is not None
    return _plan_synced(state, payload, digest, steps, f"{note}{moves}", target)


def _plan_zoho_ahead(row: Mapping[str, Any], state: EntityState, target: str) -> Plan:
    """Zoho moved the invoice on its own (paid in the portal, voided by hand) and the source still asks
    for a status Zoho has no call back from: nothing is sent until the source agrees with Zoho."""
    number = rules.as_text(row.get("invoice_number")) or "the invoice"
    return Plan(
        Action.ZOHO_AHEAD,
        None,
        None,
        f"Zoho is ahead: invoice {number} is {state.ahead} in Zoho (not set by zoho-cdc: paid in the"
        f" portal or changed by hand) but {target} in the source; nothing is sent until the source"
        " agrees with Zoho",
        status=target,
        from_status=state.status,
    )


def _plan_delete(state: EntityState | None) -> Plan:
    """A deleted invoice is deleted while a draft in Zoho, voided otherwise (never deleted once sent)."""
    zoho_status = state.status if state is not None else None
    if not rules.is_synced(state):
        if state is not None and state.pending_create:
            return Plan(Action.VOID_INVOICE, None, None, rules.DELETED_WHILE_CREATING)
        return rules.skip("deleted in the source and never synced")
    if zoho_status == "void":
        return Plan(Action.NOOP, None, None, "deleted in the source; already void in Zoho")
    if zoho_status == "draft":
        return Plan(Action.DELETE_INVOICE, None, None, "deleted in the source; draft in Zoho")
    return Plan(Action.VOID_INVOICE, None, None, "deleted in the source")


def _plan_void(state: EntityState | None) -> Plan:
    """A void source invoice that was never synced is skipped: no invoice is created just to void it.
    One whose create is unresolved (a process died after sending it) may be in Zoho: it is looked up by
    its number and voided, as a delete is, or Zoho would keep it open."""
    zoho_status = state.status if state is not None else None
    if not rules.is_synced(state):
        if state is not None and state.pending_create:
            return Plan(Action.VOID_INVOICE, None, None, rules.VOIDED_WHILE_CREATING, status="void")
        return rules.skip("void in the source and never synced")
    if zoho_status == "void":
        return Plan(Action.NOOP, None, None, "void in the source; already void in Zoho")
    return Plan(Action.VOID_INVOICE, None, None, "void in the source", status="void", from_status=zoho_status)


def _plan_synced(
    state: EntityState,
    payload: dict[str, Any],
    digest: str | None,
    steps: tuple[str, ...],
    note: str,
    target: str,
) -> Plan:
    """An invoice already in Zoho: its content when it changed (while Zoho still lets it be edited),
    else only the status calls between Zoho's stage and the source's."""
    zoho_status = state.status
    current = zoho_invoice_stage(zoho_status)
    if digest is not None and digest == state.payload_hash:
        if not steps:
            return Plan(Action.NOOP, None, digest, "unchanged", status=target, from_status=zoho_status)
        action = Action.RECORD_PAYMENT if "pay" in steps else Action.OPEN_INVOICE
        return Plan(
            action, None, digest, f"{target} in the source{note}", status=target, from_status=zoho_status
        )
    if current is not None and current not in EDITABLE_INVOICE_STAGES:
        if state.ahead is not None:  # the source caught up with Zoho: Zoho ahead ends, nothing to send
            return Plan(
                Action.NOOP, None, None, f"{target} in the source as in Zoho; its content no longer editable"
            )
        return rules.skip(f"invoice no longer editable in Zoho (status {zoho_status})")
    return Plan(
        Action.UPDATE_INVOICE, payload, digest, f"changed{note}", status=target, from_status=zoho_status
    )


def _plan(given: PlanInput) -> Plan:
    parent = given.parent
    return plan_invoice(
        given.event,
        given.state,
        parent.zoho_id if parent else None,
        customer_currency=parent.currency_code if parent else None,
    )


SPEC: Final = EntitySpec(
    entity=EntityType.INVOICE,
    columns=COLUMNS,
    natural_key="invoice_number",
    zoho_id_field="invoice_id",
    mapped_columns=INVOICE_MAPPED_COLUMNS,
    # what the mapping reads, plus the currency it checks against the customer's
    remembered_columns=INVOICE_MAPPED_COLUMNS | {"currency"},
    required_fields=("customer_id", "date", "invoice_items"),
    plan=_plan,
    calls=InvoiceCalls,
    parent=ParentLink(EntityType.CUSTOMER, "customer_id"),
    comparison=InvoiceComparison(),
)
