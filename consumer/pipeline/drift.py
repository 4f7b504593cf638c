"""Field drift: what the mapping would send for a source row, read back from the Zoho record it maps to.

One comparison serves `zoho-cdc reconcile` and a resync's listing (`consumer.pipeline.zoho_listing`): the
fields compared are the ones the payload builders of `consumer.pipeline.plan` produce, plus the status
the plan's status rules ask for. Each entity's specifics are one `EntityComparison` in `COMPARISONS`;
an entity without one raises `KeyError` rather than being compared as another. Pure: no I/O.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, ClassVar, Final

from connectors.zoho.customers import account_number_of, disambiguated_name
from consumer.entities.customers import customer_payload, customer_zoho_status, is_internal_test
from consumer.entities.invoice_payload import invoice_payload
from consumer.entities.invoice_status import invoice_source_stage, zoho_invoice_stage
from consumer.pipeline.events import EntityType
from consumer.pipeline.plan import MappingConfig

#: A drifted field: (the value the mapping sends, the value Zoho shows).
FieldDrift = tuple[str, str]
_CENT: Final = Decimal("0.01")
_CUSTOMER_TEXT_FIELDS: Final = ("display_name", "first_name", "last_name", "company_name", "phone", "email")


@dataclass(frozen=True)
class ZohoView:
    """How the Zoho records at hand were read, which decides what they can show."""

    mapping: MappingConfig
    list_filter: str  # the `cf_*` list column that may carry the account number
    detailed: bool = False  # a full record (a customer's billing address), not a list item


#: Whether an expected value and a shown one agree: (expected, shown, every expected field) -> bool.
Agreement = Callable[[str, str, Mapping[str, str]], bool]


class EntityComparison(ABC):
    """One entity's specifics: how its rows map, how its Zoho records are read back and matched."""

    zoho_id_field: ClassVar[str]  # the id of a Zoho record of this type
    key_column: ClassVar[str]  # the source column holding the natural key Zoho records carry too
    name_field: ClassVar[str]  # what names a Zoho record of this type in a report
    #: the entity a row belongs to and the column naming it: an unsent parent's rows are never sent
    parent: ClassVar[tuple[EntityType, str] | None] = None
    agrees: ClassVar[Mapping[str, Agreement]] = {}  # fields not compared by equality

    @abstractmethod
    def expected(self, row: Mapping[str, Any], view: ZohoView, parent_zoho_id: str | None) -> dict[str, str]:
        """Field -> the value the mapping sends for `row`, status included."""

    @abstractmethod
    def read(self, record: Mapping[str, Any], name: str, view: ZohoView) -> str | None:
        """The value `record` shows for a field; None when it does not show the field."""

    @abstractmethod
    def natural_key(self, record: Mapping[str, Any], view: ZohoView) -> str | None:
        """The natural key `record` carries; None when it shows none."""

    def sent(self, row: Mapping[str, Any]) -> bool:
        """Whether the sync sends the row at all."""
        return True

    def created(self, row: Mapping[str, Any]) -> bool:
        """Whether a sent row must exist in Zoho."""
        return True

    def zoho_id(self, record: Mapping[str, Any]) -> str:
        return str(record[self.zoho_id_field])


def drift(
    entity_type: EntityType,
    row: Mapping[str, Any],
    record: Mapping[str, Any],
    view: ZohoView,
    parent_zoho_id: str | None = None,
) -> dict[str, FieldDrift]:
    """Every field (status included) whose Zoho value differs from what the mapping sends for `row`.

    A field the record does not show (a list item's billing address, say) is not compared."""
    spec = COMPARISONS[entity_type]
    expected = spec.expected(row, view, parent_zoho_id)
    out: dict[str, FieldDrift] = {}
    for name, want in expected.items():
        shown = spec.read(record, name, view)
        if shown is not None and not spec.agrees.get(name, _equal)(want, shown, expected):
            out[name] = (want, shown)
    return out


def text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _equal(want: str, shown: str, _expected: Mapping[str, str]) -> bool:
    return want == shown


def cents(value: Any) -> Decimal | None:
    """An amount rounded to cents as Zoho shows it; None when it is not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value)).quantize(_CENT, ROUND_HALF_UP)
    except InvalidOperation:
        return None


# --- customers ------------------------------------------------------------------------------------


def _same_display_name(want: str, shown: str, expected: Mapping[str, str]) -> bool:
    # A name Zoho already held for another customer is sent again with the account number appended.
    return shown in (want, disambiguated_name(want, expected.get("account_number", "")))


def _same_email(want: str, shown: str, _expected: Mapping[str, str]) -> bool:
    return want.lower() == shown.lower()  # Zoho keeps an address in the case it was typed


class CustomerComparison(EntityComparison):
    zoho_id_field = "customer_id"
    key_column = "account_number"
    name_field = "display_name"
    agrees = {"display_name": _same_display_name, "email": _same_email}

    def sent(self, row: Mapping[str, Any]) -> bool:
        return not is_internal_test(row)

    def created(self, row: Mapping[str, Any]) -> bool:
        return not is_internal_test(row)

    def expected(self, row: Mapping[str, Any], view: ZohoView, parent_zoho_id: str | None) -> dict[str, str]:
        status = {"status": customer_zoho_status(row, view.mapping)}
        if is_internal_test(row):  # never synced; one that once was must be inactive, nothing more
            return status
        # currency_code is not compared: Zoho takes it on create only, and a customer keeps it.
        payload = customer_payload(row, view.mapping)
        out = {name: payload[name] for name in _CUSTOMER_TEXT_FIELDS if name in payload}
        for custom in payload.get("custom_fields", ()):
            if custom["label"] == view.mapping.account_number_field:
                out["account_number"] = custom["value"]
        address = payload.get("billing_address", {})
        out |= {f"billing_address.{part}": value for part, value in address.items()}
        return out | status

    def read(self, record: Mapping[str, Any], name: str, view: ZohoView) -> str | None:
        if name == "status":
            return text(record.get("status")) or "active"  # an active customer's list item may omit it
        if name == "account_number":
            return self.natural_key(record, view)
        if name.startswith("billing_address."):
            if not view.detailed:  # list items carry no address
                return None
            address = record.get("billing_address")
            return text(address.get(name.split(".", 1)[1])) if isinstance(address, Mapping) else ""
        return text(record.get(name))

    def natural_key(self, record: Mapping[str, Any], view: ZohoView) -> str | None:
        return account_number_of(dict(record), view.mapping.account_number_field, view.list_filter)


# --- invoices -------------------------------------------------------------------------------------


def invoice_number_of(record: Mapping[str, Any]) -> str | None:
    """The number a Zoho invoice shows (`invoice_number`, `number` in some list shapes)."""
    value = record.get("invoice_number", record.get("number"))
    return str(value) if value else None


def _same_stage(want: str, shown: str, _expected: Mapping[str, str]) -> bool:
    return zoho_invoice_stage(shown or None) == want  # overdue and partially paid count as sent


def _same_amount(want: str, shown: str, _expected: Mapping[str, str]) -> bool:
    return bool(shown) and Decimal(want) == Decimal(shown)


class InvoiceComparison(EntityComparison):
    zoho_id_field = "invoice_id"
    key_column = "invoice_number"
    name_field = "customer_name"
    parent = (EntityType.CUSTOMER, "customer_id")
    agrees = {"status": _same_stage, "total": _same_amount}

    def created(self, row: Mapping[str, Any]) -> bool:
        return invoice_source_stage(row) != "void"  # a void invoice is never created only to be voided

    def expected(self, row: Mapping[str, Any], view: ZohoView, parent_zoho_id: str | None) -> dict[str, str]:
        # Line items and the reference number are not in Zoho's invoice list, so they are not compared
        # (the entity map's payload hash stands for them); without line_items the builder cannot fail.
        payload = invoice_payload({k: v for k, v in row.items() if k != "line_items"}, parent_zoho_id or "")
        out = {"invoice_number": payload.get("invoice_number", "")}
        out |= {name: payload[name] for name in ("date", "due_date") if name in payload}
        # The items and the adjustment the builder sends add up to total_amount to the cent, by design.
        total = cents(row.get("total_amount"))
        if total is not None:
            out["total"] = str(total)
        out["status"] = invoice_source_stage(row)  # draft, sent, paid or void
        if parent_zoho_id:
            out["customer_id"] = parent_zoho_id
        return out

    def read(self, record: Mapping[str, Any], name: str, view: ZohoView) -> str | None:
        if name == "invoice_number":
            return text(invoice_number_of(record))
        if name == "date":
            return text(record.get("date") or record.get("invoice_date"))
        if name == "total":
            total = cents(record.get("total"))
            return "" if total is None else str(total)
        if name == "customer_id":
            return text(record.get("customer_id")) or None  # a list item may leave it out
        return text(record.get(name))

    def natural_key(self, record: Mapping[str, Any], view: ZohoView) -> str | None:
        return invoice_number_of(record)


COMPARISONS: Final[Mapping[EntityType, EntityComparison]] = {
    EntityType.CUSTOMER: CustomerComparison(),
    EntityType.INVOICE: InvoiceComparison(),
}
