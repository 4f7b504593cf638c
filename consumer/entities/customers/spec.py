"""Customers: the `customers` table as Zoho Billing customers.

A customer is created once (found again by its account number after a lost reply), updated when a
mapped column changes, marked inactive when closed or deleted in the source (never deleted in Zoho),
and never sent at all when it is an internal test account.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from consumer.entities.customers.calls import CustomerCalls
from consumer.entities.customers.drift import CustomerComparison
from consumer.entities.customers.rules import customer_payload, customer_zoho_status, is_internal_test
from consumer.entities.spec import EntitySpec, PlanInput, SourceLookups
from consumer.model import plan as rules
from consumer.model.events import ChangeEvent, ColumnKind, EntityType, Op
from consumer.model.plan import Action, EntityState, MappingConfig, Plan, payload_hash

_T, _J, _TS = ColumnKind.TEXT, ColumnKind.JSONB, ColumnKind.TIMESTAMPTZ

#: The columns of `customers` (consumer/sql/source_schema.sql), by how Debezium sends them.
COLUMNS: Final[Mapping[str, ColumnKind]] = {
    "id": _T,
    "account_number": _T,
    "email": _T,
    "first_name": _T,
    "last_name": _T,
    "company_name": _T,
    "phone": _T,
    "account_type": _T,
    "billing_address": _J,
    "status": _T,
    "notes": _T,
    "created_at": _TS,
    "updated_at": _TS,
    "zoho_billing_customer_id": _T,
    "zoho_sync_status": _T,
    "zoho_last_synced_at": _TS,
}


#: Customer columns that feed the Zoho body or the decision to sync at all.
CUSTOMER_MAPPED_COLUMNS: Final = frozenset(
    {
        "account_number",
        "email",
        "first_name",
        "last_name",
        "company_name",
        "phone",
        "billing_address",
        "account_type",
        "status",
    }
)


def plan_customer(
    event: ChangeEvent,
    state: EntityState | None,
    config: MappingConfig,
    *,
    currency_code: str | None = None,
) -> Plan:
    """Decide the Zoho call for a customer event.

    Deletes never delete in Zoho (history stays); the customer is marked inactive. When a
    mapped column is unavailable (unchanged TOAST value) the payload leaves it out and
    `payload_hash` is None, so it is never mistaken for "unchanged".
    """
    if event.op is Op.TOMBSTONE:
        return rules.skip("tombstone")
    if event.op is Op.DELETE:
        return _plan_delete(state)
    row = rules.row_of(event)
    if is_internal_test(row):
        if rules.is_synced(state) and state is not None and state.status != "inactive":
            return Plan(Action.MARK_CUSTOMER_INACTIVE, None, None, "became an internal test account")
        if state is not None and state.pending_create and not rules.is_synced(state):
            # its create may be in Zoho (a process died after sending it): found by account number
            return Plan(Action.MARK_CUSTOMER_INACTIVE, None, None, rules.TEST_ACCOUNT_WHILE_CREATING)
        return rules.skip("internal test account")

    payload = customer_payload(row, config, currency_code=currency_code)
    partial = sorted(event.unavailable & CUSTOMER_MAPPED_COLUMNS)
    digest = None if partial else payload_hash(payload)
    note = f" (partial: {', '.join(partial)} unavailable)" if partial else ""
    target = customer_zoho_status(row, config)

    if not rules.is_synced(state):
        rules.require_natural_key(row, "account_number", "customer")
        why = "not yet in Zoho" + (
            "; inactive once created (closed in the source)" if target == "inactive" else ""
        )
        return Plan(Action.CREATE_CUSTOMER, payload, digest, f"{why}{note}", status=target)
    assert state is not None
    return _plan_in_zoho(row, state, rules.without_create_only(payload), digest, target, note)


def _plan_delete(state: EntityState | None) -> Plan:
    """A customer deleted in the source is marked inactive in Zoho (once), never deleted there."""
    if not rules.is_synced(state):
        if state is not None and state.pending_create:
            return Plan(Action.MARK_CUSTOMER_INACTIVE, None, None, rules.DELETED_WHILE_CREATING)
        return rules.skip("deleted in the source and never synced")
    assert state is not None
    if state.status == "inactive":
        return Plan(Action.NOOP, None, None, "deleted in the source; already inactive in Zoho")
    return Plan(Action.MARK_CUSTOMER_INACTIVE, None, None, "deleted in the source")


def _plan_in_zoho(
    row: Mapping[str, Any],
    state: EntityState,
    payload: dict[str, Any],
    digest: str | None,
    target: str,
    note: str,
) -> Plan:
    """A customer Zoho holds: held back while Zoho is ahead, its status set, updated, or left alone."""
    changed = digest is None or digest != state.payload_hash
    current = state.status or "active"
    if state.ahead is not None and current != target:
        # Made inactive in Zoho by a person: zoho-cdc does not undo it; nothing is sent until they agree.
        return Plan(
            Action.ZOHO_AHEAD,
            None,
            None,
            f"Zoho is ahead: customer {rules.as_text(row.get('account_number'))} is {state.ahead} in Zoho"
            f" (not set by zoho-cdc) but {target} in the source; nothing is sent until the source agrees",
            status=target,
            from_status=current,
        )
    if current != target:
        action = Action.MARK_CUSTOMER_ACTIVE if target == "active" else Action.MARK_CUSTOMER_INACTIVE
        why = f"{rules.as_text(row.get('status')) or 'active'} in the source; {current} in Zoho"
        if target == "active":
            why = f"reactivated: {why}"
        return Plan(
            action, payload if changed else None, digest, f"{why}{note}", status=target, from_status=current
        )
    if not changed:
        return Plan(Action.NOOP, None, digest, "unchanged", status=target, from_status=current)
    return Plan(Action.UPDATE_CUSTOMER, payload, digest, f"changed{note}", status=target, from_status=current)


def _plan(given: PlanInput) -> Plan:
    return plan_customer(
        given.event, given.state, given.config, currency_code=given.facts.get("currency_code")
    )


async def _facts(lookups: SourceLookups, event: ChangeEvent, state: EntityState | None) -> Mapping[str, Any]:
    """A customer not yet in Zoho is created in the currency of its invoices (Zoho bills an invoice in
    its customer's currency, fixed at create)."""
    if rules.is_synced(state):
        return {}
    currency = await lookups.first_child_value(EntityType.INVOICE, "customer_id", "currency", event.entity_id)
    return {"currency_code": currency}


def _never_synced(row: Mapping[str, Any]) -> str | None:
    return "customer is internal_test and never sent to Zoho" if is_internal_test(row) else None


def _created_currency(plan: Plan) -> str | None:
    """The currency a customer create gives the Zoho record (None for every other call)."""
    if plan.action is not Action.CREATE_CUSTOMER or not plan.payload:
        return None
    currency = plan.payload.get("currency_code")
    return str(currency) if currency else None


SPEC: Final = EntitySpec(
    entity=EntityType.CUSTOMER,
    columns=COLUMNS,
    natural_key="account_number",
    zoho_id_field="customer_id",
    mapped_columns=CUSTOMER_MAPPED_COLUMNS,
    remembered_columns=CUSTOMER_MAPPED_COLUMNS,
    required_fields=("display_name",),
    plan=_plan,
    calls=CustomerCalls,
    plan_facts=_facts,
    never_synced=_never_synced,
    created_currency=_created_currency,
    comparison=CustomerComparison(),
)
