"""Field drift: what the mapping would send for a source row, read back from the Zoho record it maps to.

One comparison serves `zoho-cdc reconcile` and a resync's listing: the fields compared are the ones each
entity's payload builder produces, plus the status its status rules ask for. Each entity's specifics
(how its records are listed and read back, which fields agree without being equal) are one
`EntityComparison` on its spec; an entity without one raises rather than being compared as another.
Pure: no I/O.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, ClassVar, Final

from consumer.model.plan import MappingConfig

#: A drifted field: (the value the mapping sends, the value Zoho shows).
FieldDrift = tuple[str, str]
_CENT: Final = Decimal("0.01")


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
    agrees: ClassVar[Mapping[str, Agreement]] = {}  # fields not compared by equality
    #: How the entity is listed: each list filter to read, with the status its items have (None: the
    #: items show their own status).
    status_filters: ClassVar[Mapping[str | None, str | None]] = {None: None}

    @abstractmethod
    def pages(self, client: Any, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """The client's listing of this entity, page by page (200 records a call)."""

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
    comparison: EntityComparison,
    row: Mapping[str, Any],
    record: Mapping[str, Any],
    view: ZohoView,
    parent_zoho_id: str | None = None,
) -> dict[str, FieldDrift]:
    """Every field (status included) whose Zoho value differs from what the mapping sends for `row`.

    A field the record does not show (a list item's billing address, say) is not compared."""
    spec = comparison
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
