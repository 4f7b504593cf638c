"""Mapping rules: source rows to Zoho Billing bodies, and which Zoho call a change event needs.

Pure functions over decoded rows (`consumer.pipeline.events.ChangeEvent`) and what the entity map knows
(`EntityState`); no I/O. Payloads hold only fields Zoho shows, so changes to columns we do not
send (notes, updated_at, our own zoho_* write-back) hash the same and plan a NOOP. Stale-event
skipping and coalescing belong to the engine, not here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Final

from consumer.pipeline.events import ChangeEvent, EntityType, Op

INTERNAL_TEST_ACCOUNT_TYPE: Final = "internal_test"

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

_ADDRESS_KEYS: Final = ("street", "city", "state", "zip", "country")
#: Zoho's invoice statuses, by the source status they stand for (an overdue or part-paid invoice is open,
#: like a sent one). Unknown statuses count as open: Zoho's list documents more than it explains.
ZOHO_INVOICE_STAGE: Final = {
    "draft": "draft",
    "pending": "draft",
    "sent": "sent",
    "overdue": "sent",
    "unpaid": "sent",
    "partially_paid": "sent",
    "paid": "paid",
    "void": "void",
}
#: Source invoice statuses, in the order an invoice moves through them (void ends any of them).
INVOICE_STAGES: Final = ("draft", "sent", "paid")
#: Stages in which Zoho lets an invoice be edited with PUT.
EDITABLE_INVOICE_STAGES: Final = frozenset({"draft", "sent"})
CUSTOMER_CLOSED: Final = "closed"
CUSTOMER_SUSPENDED: Final = "suspended"
_CENT = Decimal("0.01")


class MappingError(ValueError):
    """Raised when a row cannot be mapped (e.g. a line item without a usable price); send to the DLQ."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StatusBackwards(MappingError):
    """Raised when a source invoice moves to a status Zoho has no call to reach from where it is."""


@dataclass(frozen=True, slots=True)
class MappingConfig:
    account_number_field: str = "Account Number"  # Zoho customer custom-field label
    default_currency: str = "ZAR"
    suspended_status: str = "active"  # Zoho status of a suspended source customer: "active" or "inactive"


# --- customers ----------------------------------------------------------------------------


def is_internal_test(row: Mapping[str, Any]) -> bool:
    """Internal test accounts are never synced (and are marked inactive if they once were)."""
    return row.get("account_type") == INTERNAL_TEST_ACCOUNT_TYPE


def customer_zoho_status(row: Mapping[str, Any], config: MappingConfig) -> str:
    """The Zoho status a customer row should have: `closed` is inactive; `suspended` as configured
    (default active: a suspended account still owes); internal test accounts are inactive."""
    status = _text(row.get("status")).lower()
    if is_internal_test(row) or status == CUSTOMER_CLOSED:
        return "inactive"
    if status == CUSTOMER_SUSPENDED:
        return config.suspended_status
    return "active"


def customer_display_name(row: Mapping[str, Any]) -> str:
    """Company name, else "first last" (either part may be missing), else the account number."""
    company = _text(row.get("company_name"))
    if company:
        return company
    person = " ".join(p for p in (_text(row.get("first_name")), _text(row.get("last_name"))) if p)
    return person or _text(row.get("account_number"))


def customer_payload(
    row: Mapping[str, Any], config: MappingConfig, *, currency_code: str | None = None
) -> dict[str, Any]:
    """The Zoho customer create/update body for a customer row.

    Columns absent from `row` (unavailable TOAST values) are left out of the body, so a PUT
    leaves Zoho's value alone. Name and phone columns that are NULL are sent as "" so a value
    cleared in the source is cleared in Zoho; email is omitted when NULL/empty (Zoho rejects "").
    """
    payload: dict[str, Any] = {
        "display_name": customer_display_name(row),
        "currency_code": currency_code or config.default_currency,
    }
    for column in ("first_name", "last_name", "company_name", "phone"):
        if column in row:
            payload[column] = _text(row[column])
    email = _text(row.get("email"))
    if email:
        payload["email"] = email
    address = _billing_address(row.get("billing_address"))
    if address:
        payload["billing_address"] = address
    if "account_number" in row:
        payload["custom_fields"] = [
            {"label": config.account_number_field, "value": _text(row["account_number"])}
        ]
    return payload


def _billing_address(raw: Any) -> dict[str, str]:
    """Zoho's address keys from the jsonb, as strings; other keys and empty values are dropped."""
    if not isinstance(raw, Mapping):
        return {}
    out = {}
    for key in _ADDRESS_KEYS:
        value = raw.get(key)
        if isinstance(value, bool) or value is None or isinstance(value, dict | list):
            continue
        text = str(value).strip()
        if text:
            out[key] = text
    return out


# --- invoices -----------------------------------------------------------------------------


def invoice_currency(row: Mapping[str, Any]) -> str:
    """The invoice's ISO currency (char(3) is blank-padded in PostgreSQL)."""
    return _text(row.get("currency")).upper()


def invoice_payload(row: Mapping[str, Any], zoho_customer_id: str) -> dict[str, Any]:
    """The Zoho invoice create/update body for an invoice row.

    Items come from `line_items` (`description`, `quantity`, `unit_price`, and `sku`/`item_code` kept
    as `ITEM_CODE_KEY` for the applier to turn into a Zoho `product_id`); each carries both `price`
    and `rate` because Zoho's spec names the field one way and requires it the other.
    An invoice without line items gets one item for its subtotal. VAT is sent as Zoho's
    invoice-level `adjustment` (total_amount - sum of item totals), not as a tax: we have no
    Zoho tax ids, and this makes Zoho's total equal the source `total_amount` exactly even when
    the source row's subtotal/vat do not add up. Amounts are JSON numbers rounded to 2 dp.
    Raises MappingError for line items that cannot be read.
    """
    payload: dict[str, Any] = {
        "customer_id": zoho_customer_id,
        "reference_number": _text(row.get("id")),
    }
    if "invoice_number" in row:
        payload["invoice_number"] = _text(row["invoice_number"])
    if isinstance(row.get("invoice_date"), dt.date):
        payload["date"] = row["invoice_date"].isoformat()
    if isinstance(row.get("due_date"), dt.date):
        payload["due_date"] = row["due_date"].isoformat()
    if "line_items" in row:
        items = _invoice_items(row)
        payload["invoice_items"] = [item for item, _ in items]
        if "total_amount" in row:
            items_total = sum((total for _, total in items), Decimal(0))
            adjustment = _amount(row["total_amount"], "total_amount") - items_total
            if adjustment:
                vat = _amount(row.get("vat_amount") or 0, "vat_amount")
                payload["adjustment"] = _money(adjustment)
                payload["adjustment_description"] = (
                    "VAT" if adjustment == vat else "VAT and difference to the source total"
                )
    return payload


def _invoice_items(row: Mapping[str, Any]) -> list[tuple[dict[str, Any], Decimal]]:
    """(Zoho item, item total rounded to cents) for each line item."""
    raw_items = row.get("line_items") or []
    if not isinstance(raw_items, list):
        raise MappingError("line_items is not a JSON array")
    if not raw_items:
        subtotal = _amount(row.get("subtotal") or 0, "subtotal")
        name = f"Invoice {_text(row.get('invoice_number'))}".strip()
        return [(_item(name, Decimal(1), subtotal), subtotal.quantize(_CENT, ROUND_HALF_UP))]
    out = []
    for index, raw in enumerate(raw_items, start=1):
        if not isinstance(raw, Mapping):
            raise MappingError(f"line item {index} is not a JSON object")
        name = _text(raw.get("description") or raw.get("name")) or f"Item {index}"
        quantity = _amount(raw.get("quantity", 1), f"line item {index} quantity")
        price_raw = next((raw[k] for k in ("unit_price", "price", "rate") if raw.get(k) is not None), None)
        if price_raw is None:
            raise MappingError(f"line item {index} has no unit_price")
        price = _amount(price_raw, f"line item {index} unit_price")
        total = (quantity * price.quantize(_CENT, ROUND_HALF_UP)).quantize(_CENT, ROUND_HALF_UP)
        out.append((_item(name, quantity, price, line_item_code(raw)), total))
    return out


def _item(name: str, quantity: Decimal, price: Decimal, code: str | None = None) -> dict[str, Any]:
    money = _money(price)
    return {
        "name": name,
        "description": name,
        "quantity": int(quantity) if quantity == quantity.to_integral_value() else float(quantity),
        "price": money,
        "rate": money,
        ITEM_CODE_KEY: code,
    }


#: zoho-cdc's own key on a mapped invoice line: the source item code (`sku`, else `item_code`; None when the
#: line has none). The applier replaces it with the Zoho `product_id` before sending (zoho_items).
ITEM_CODE_KEY: Final = "_item_code"


def line_item_code(raw: Mapping[str, Any]) -> str | None:
    """The source line's item code: `sku`, else `item_code`; None when neither is a non-empty value."""
    for key in ("sku", "item_code"):
        value = raw.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


def _amount(raw: Any, what: str) -> Decimal:
    if isinstance(raw, Decimal):
        value = raw
    elif isinstance(raw, int | float | str) and not isinstance(raw, bool):
        try:
            value = Decimal(str(raw))
        except InvalidOperation:
            raise MappingError(f"{what} is not a number") from None
    else:
        raise MappingError(f"{what} is not a number")
    if not value.is_finite():
        raise MappingError(f"{what} is not a finite number")
    return value


def _money(value: Decimal) -> float:
    return float(value.quantize(_CENT, ROUND_HALF_UP))


# --- hashing and checks -------------------------------------------------------------------


#: Fields Zoho takes on create only. An update never sends them (a customer keeps the currency it
#: was created with), so they are not part of what an update compares either.
CREATE_ONLY_FIELDS: Final = frozenset({"currency_code"})


def payload_hash(payload: Mapping[str, Any]) -> str:
    """sha256 of canonical JSON (sorted keys, no spaces); stable under key order.

    Decimals hash by numeric value (1.0 == 1.00), dates and datetimes by ISO-8601. Create-only
    fields are left out, so a create and the updates after it hash alike.
    """
    compared = {k: v for k, v in payload.items() if k not in CREATE_ONLY_FIELDS}
    text = json.dumps(compared, sort_keys=True, separators=(",", ":"), default=_canonical)
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value else "0"
    if isinstance(value, dt.date):  # datetime too
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_REQUIRED: Final[Mapping[EntityType, Sequence[str]]] = {
    EntityType.CUSTOMER: ("display_name",),
    EntityType.INVOICE: ("customer_id", "date", "invoice_items"),
}


def missing_required(payload: Mapping[str, Any], entity_type: EntityType | None = None) -> tuple[str, ...]:
    """Fields Zoho requires on create that the payload lacks or has empty.

    The entity is inferred from the payload when not given (invoices have `customer_id`).
    `email` is documented as required for customers but source rows may have none, so it is
    not checked here.
    """
    if entity_type is None:
        entity_type = EntityType.INVOICE if "customer_id" in payload else EntityType.CUSTOMER
    return tuple(f for f in _REQUIRED[entity_type] if payload.get(f) in (None, "", []))


# --- planning -----------------------------------------------------------------------------


class Action(StrEnum):
    """The Zoho call (or non-call) a change event needs."""

    CREATE_CUSTOMER = "create_customer"
    UPDATE_CUSTOMER = "update_customer"
    MARK_CUSTOMER_INACTIVE = "mark_customer_inactive"
    # Reactivation: mark active, then PUT `payload` unless its hash equals the stored one.
    MARK_CUSTOMER_ACTIVE = "mark_customer_active"
    CREATE_INVOICE = "create_invoice"
    UPDATE_INVOICE = "update_invoice"
    OPEN_INVOICE = "open_invoice"  # draft -> open (converttoopen), content unchanged
    RECORD_PAYMENT = "record_payment"  # open (or draft: opened first) -> paid, content unchanged
    VOID_INVOICE = "void_invoice"
    DELETE_INVOICE = "delete_invoice"
    SKIP = "skip"  # nothing to do by rule (tombstone, internal test, never synced, not editable)
    NOOP = "noop"  # Zoho already matches


@dataclass(frozen=True)
class EntityState:
    """What the entity map knows about one source row's Zoho counterpart."""

    zoho_id: str | None
    payload_hash: str | None
    last_lsn: int | None
    status: str | None  # Zoho status: "active"/"inactive", "draft"/"sent"/"void"/...
    source_row: Mapping[str, Any] | None = None  # last full image of the mapped columns (decoded values)
    rejected: str | None = None  # digest of the mapped state Zoho (or the mapping) last refused
    currency_code: str | None = None  # customers: the currency the Zoho record was created with
    pending_create: bool = False  # a create intent is left: the create may have reached Zoho


@dataclass(frozen=True)
class Plan:
    """The decision for one event. `payload_hash` is None when the payload is partial."""

    action: Action
    payload: dict[str, Any] | None
    payload_hash: str | None
    reason: str
    needs_customer: str | None = None  # invoices: source customer id whose Zoho id is required first
    status: str | None = None  # the Zoho status the record ends in (customers) / the source stage (invoices)
    from_status: str | None = None  # the Zoho status the entity map knows, when the plan was made


_DELETED_WHILE_CREATING: Final = "deleted in the source while its create was unresolved (may be in Zoho)"


def _skip(reason: str) -> Plan:
    return Plan(Action.SKIP, None, None, reason)


def _synced(state: EntityState | None) -> bool:
    return state is not None and state.zoho_id is not None


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
        return _skip("tombstone")
    if event.op is Op.DELETE:
        if not _synced(state):
            if state is not None and state.pending_create:
                return Plan(Action.MARK_CUSTOMER_INACTIVE, None, None, _DELETED_WHILE_CREATING)
            return _skip("deleted in the source and never synced")
        assert state is not None
        if state.status == "inactive":
            return Plan(Action.NOOP, None, None, "deleted in the source; already inactive in Zoho")
        return Plan(Action.MARK_CUSTOMER_INACTIVE, None, None, "deleted in the source")

    row = _row(event)
    if is_internal_test(row):
        if _synced(state) and state is not None and state.status != "inactive":
            return Plan(Action.MARK_CUSTOMER_INACTIVE, None, None, "became an internal test account")
        return _skip("internal test account")

    payload = customer_payload(row, config, currency_code=currency_code)
    partial = sorted(event.unavailable & CUSTOMER_MAPPED_COLUMNS)
    digest = None if partial else payload_hash(payload)
    note = f" (partial: {', '.join(partial)} unavailable)" if partial else ""
    target = customer_zoho_status(row, config)

    if not _synced(state):
        _require_natural_key(row, "account_number", "customer")
        why = "not yet in Zoho" + (
            "; inactive once created (closed in the source)" if target == "inactive" else ""
        )
        return Plan(Action.CREATE_CUSTOMER, payload, digest, f"{why}{note}", status=target)
    assert state is not None
    payload = _without_create_only(payload)
    changed = digest is None or digest != state.payload_hash
    current = state.status or "active"
    if current != target:
        action = Action.MARK_CUSTOMER_ACTIVE if target == "active" else Action.MARK_CUSTOMER_INACTIVE
        why = f"{_text(row.get('status')) or 'active'} in the source; {current} in Zoho"
        if target == "active":
            why = f"reactivated: {why}"
        return Plan(
            action, payload if changed else None, digest, f"{why}{note}", status=target, from_status=current
        )
    if not changed:
        return Plan(Action.NOOP, None, digest, "unchanged", status=target, from_status=current)
    return Plan(Action.UPDATE_CUSTOMER, payload, digest, f"changed{note}", status=target, from_status=current)


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
        return _skip("tombstone")
    synced = _synced(state)
    zoho_status = state.status if state is not None else None
    if event.op is Op.DELETE:
        if not synced:
            if state is not None and state.pending_create:
                return Plan(Action.VOID_INVOICE, None, None, _DELETED_WHILE_CREATING)
            return _skip("deleted in the source and never synced")
        if zoho_status == "void":
            return Plan(Action.NOOP, None, None, "deleted in the source; already void in Zoho")
        if zoho_status == "draft":
            return Plan(Action.DELETE_INVOICE, None, None, "deleted in the source; draft in Zoho")
        return Plan(Action.VOID_INVOICE, None, None, "deleted in the source")

    row = _row(event)
    target = invoice_source_stage(row)
    if target == "void":
        if not synced:
            return _skip("void in the source and never synced")
        if zoho_status == "void":
            return Plan(Action.NOOP, None, None, "void in the source; already void in Zoho")
        return Plan(
            Action.VOID_INVOICE, None, None, "void in the source", status="void", from_status=zoho_status
        )

    missing_for_create = sorted(event.unavailable & _INVOICE_CREATE_COLUMNS)
    if not synced and missing_for_create:
        return _skip(
            f"cannot create: {', '.join(missing_for_create)} unavailable (unchanged TOAST value); "
            "backfill the invoice or set REPLICA IDENTITY FULL"
        )
    current = zoho_invoice_stage(zoho_status) if synced else None
    steps = invoice_status_steps(current or "draft", target, row)  # raises StatusBackwards
    action = Action.UPDATE_INVOICE if synced else Action.CREATE_INVOICE
    if customer_zoho_id is None:
        customer_id = _text(row.get("customer_id")) or None
        return Plan(action, None, None, "customer not yet in Zoho", needs_customer=customer_id, status=target)

    currency = invoice_currency(row)
    if customer_currency and currency and currency != customer_currency.upper():
        raise MappingError(
            f"invoice {_text(row.get('invoice_number')) or event.entity_id} is in {currency} but its customer"
            f" was created in Zoho in {customer_currency.upper()}; Zoho bills an invoice in its customer's"
            " currency, so it is not sent"
        )
    payload = invoice_payload(row, customer_zoho_id)
    partial = sorted(event.unavailable & INVOICE_MAPPED_COLUMNS)
    digest = None if partial else payload_hash(payload)
    note = f" (partial: {', '.join(partial)} unavailable)" if partial else ""
    moves = f"; {current or 'draft'} -> {target} in Zoho" if steps else ""

    if not synced:
        _require_natural_key(row, "invoice_number", "invoice")
        return Plan(Action.CREATE_INVOICE, payload, digest, f"not yet in Zoho{note}{moves}", status=target)
    assert state is not None
    changed = digest is None or digest != state.payload_hash
    if not changed:
        if not steps:
            return Plan(Action.NOOP, None, digest, "unchanged", status=target, from_status=zoho_status)
        action = Action.RECORD_PAYMENT if "pay" in steps else Action.OPEN_INVOICE
        return Plan(
            action, None, digest, f"{target} in the source{moves}", status=target, from_status=zoho_status
        )
    if current is not None and current not in EDITABLE_INVOICE_STAGES:
        return _skip(f"invoice no longer editable in Zoho (status {zoho_status})")
    return Plan(
        Action.UPDATE_INVOICE,
        payload,
        digest,
        f"changed{note}{moves}",
        status=target,
        from_status=zoho_status,
    )


def invoice_source_stage(row: Mapping[str, Any]) -> str:
    """The source invoice status as a stage (draft, sent, paid, void); unknown values count as draft."""
    status = _text(row.get("status")).lower()
    return status if status in (*INVOICE_STAGES, "void") else "draft"


def zoho_invoice_stage(zoho_status: str | None) -> str | None:
    """The stage a Zoho invoice status stands for (None when unknown to the entity map)."""
    if zoho_status is None:
        return None
    return ZOHO_INVOICE_STAGE.get(zoho_status.lower(), "sent")


def invoice_status_steps(current: str, target: str, row: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """The Zoho status calls that take an invoice from stage `current` to `target`, in order.

    "open" is converttoopen, "pay" records a payment for the balance, "void" voids. Zoho Billing
    has no call that takes a paid invoice back to open, any invoice back to draft, or a void one
    back to life, so those moves raise StatusBackwards (the event is dead-lettered, the record
    left as it is).
    """
    if current == target:
        return ()
    if target == "void":
        return ("void",)
    if current == "void" or INVOICE_STAGES.index(target) < INVOICE_STAGES.index(current):
        number = _text((row or {}).get("invoice_number"))
        what = f"invoice {number}" if number else "the invoice"
        raise StatusBackwards(
            f"status goes backwards: {what} is {current} in Zoho but {target} in the source, and Zoho"
            f" Billing has no call to take an invoice from {current} back to {target}; change it in Zoho"
            " by hand (e.g. delete the payment), then run `zoho-cdc dlq reprocess`"
        )
    start = INVOICE_STAGES.index(current)
    return tuple(
        {"sent": "open", "paid": "pay"}[s]
        for s in INVOICE_STAGES[start + 1 : INVOICE_STAGES.index(target) + 1]
    )


def _require_natural_key(row: Mapping[str, Any], column: str, what: str) -> None:
    """A create needs the key that finds the record in Zoho again after a lost reply (no duplicates)."""
    if not _text(row.get(column)):
        raise MappingError(
            f"the {what} has no {column}, the key that finds it in Zoho again; it is not created"
        )


def _without_create_only(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in CREATE_ONLY_FIELDS}


def _row(event: ChangeEvent) -> Mapping[str, Any]:
    if event.row is None:  # decode guarantees a row for c/r/u
        raise MappingError(f"{event.op.value} event for {event.entity_id} has no row")
    return event.row


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ("" if value is None else str(value).strip())
