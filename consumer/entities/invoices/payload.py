"""The Zoho invoice body of a `customer_invoices` row: items, amounts, dates and the VAT adjustment.

Pure: a decoded row in, a dict out; `MappingError` for a line Zoho could not be sent. Amounts are
rounded to cents the way Zoho rounds them, so Zoho's total equals the source `total_amount`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Final

from consumer.model.plan import MappingError, as_text

_CENT = Decimal("0.01")


def invoice_currency(row: Mapping[str, Any]) -> str:
    """The invoice's ISO currency (char(3) is blank-padded in PostgreSQL)."""
    return as_text(row.get("currency")).upper()


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
        "reference_number": as_text(row.get("id")),
    }
    if "invoice_number" in row:
        payload["invoice_number"] = as_text(row["invoice_number"])
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
        name = f"Invoice {as_text(row.get('invoice_number'))}".strip()
        return [(_item(name, Decimal(1), subtotal), subtotal.quantize(_CENT, ROUND_HALF_UP))]
    out = []
    for index, raw in enumerate(raw_items, start=1):
        if not isinstance(raw, Mapping):
            raise MappingError(f"line item {index} is not a JSON object")
        name = as_text(raw.get("description") or raw.get("name")) or f"Item {index}"
        quantity = _amount(raw.get("quantity", 1), f"line item {index} quantity")
        price_raw = next((raw[k] for k in ("unit_price", "price", "rate") if raw.get(k) is not None), None)
        if price_raw is None:
            raise MappingError(f"line item {index} has no unit_price")
        price = _amount(price_raw, f"line item {index} unit_price")
        line_total = quantity * price.quantize(_CENT, ROUND_HALF_UP)
        if abs(line_total) >= MAX_ZOHO_AMOUNT:
            raise MappingError(
                f"line item {index} totals {_magnitude(line_total)}, beyond what a Zoho amount holds"
            )
        total = line_total.quantize(_CENT, ROUND_HALF_UP)
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
    if abs(value) >= MAX_ZOHO_AMOUNT:
        raise MappingError(f"{what} is {_magnitude(value)}, beyond what a Zoho amount holds to the cent")
    return value


#: Zoho's amounts are JSON numbers (doubles): exact to the cent only below about 2^53 cents. Anything at or
#: above this bound is refused as a mapping error rather than sent rounded (or failing to round at all).
MAX_ZOHO_AMOUNT: Final = Decimal(10) ** 13


def _magnitude(value: Decimal) -> str:
    return f"about 1e{value.adjusted()}"


def _money(value: Decimal) -> float:
    return float(value.quantize(_CENT, ROUND_HALF_UP))
