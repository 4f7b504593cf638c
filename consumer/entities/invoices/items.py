"""Zoho items for invoice lines: Billing's spec requires every invoice line to name a Zoho item.

A line with a source code (`sku`, else `item_code`) uses the Zoho item named by that code, found by
name or created once; a line without one uses `ZOHO_DEFAULT_ITEM_ID`, else one default item
(`ZOHO_DEFAULT_ITEM_NAME`) found or created once; with `ZOHO_ADHOC_LINE_ITEMS` it goes without a
`product_id`, as before. Every item found or created is remembered in `zoho_item_map`, so a known
code costs no call, and a per-key lock keeps concurrent invoices from creating one item twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from consumer.entities.invoices.payload import ITEM_CODE_KEY
from consumer.settings import setting_default


@dataclass(frozen=True, slots=True)
class LineItemRules:
    """How invoice lines name Zoho items (settings ZOHO_DEFAULT_ITEM_ID, _NAME, ZOHO_ADHOC_LINE_ITEMS)."""

    default_item_id: str = setting_default("zoho_default_item_id")
    default_item_name: str = setting_default("zoho_default_item_name")
    adhoc_lines: bool = setting_default("zoho_adhoc_line_items")


def with_product_ids(
    payload: Mapping[str, Any], ids: Mapping[str, str], default_id: str | None
) -> dict[str, Any]:
    """The invoice body to send: each line's code replaced by its item's `product_id`.

    `ids` maps codes to item ids; lines without a code take `default_id`, or no `product_id` at all
    when it is None (ad-hoc lines). Pure.
    """
    if "invoice_items" not in payload:
        return dict(payload)
    lines = []
    for line in payload["invoice_items"]:
        code = line.get(ITEM_CODE_KEY)
        sent = {k: v for k, v in line.items() if k != ITEM_CODE_KEY}
        product_id = ids[code] if code else default_id
        if product_id:
            sent["product_id"] = product_id
        lines.append(sent)
    return {**payload, "invoice_items": lines}


def codes_of(payload: Mapping[str, Any]) -> tuple[set[str], bool]:
    """The item codes an invoice body uses, and whether any line has none."""
    codes: set[str] = set()
    uncoded = False
    for line in payload.get("invoice_items") or []:
        code = line.get(ITEM_CODE_KEY)
        if code:
            codes.add(str(code))
        else:
            uncoded = True
    return codes, uncoded


class ItemCatalogue:
    """Finds or creates the Zoho items invoice lines need, once each, remembered in PostgreSQL."""

    def __init__(self, client: Any, pool_owner: Any, rules: LineItemRules) -> None:
        self._client = client
        self._store = pool_owner
        self.rules = rules
        self._known: dict[tuple[str, str], str] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def resolve(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """`payload` ready to send: every line with its `product_id` (see the module docstring)."""
        codes, uncoded = codes_of(payload)
        lines = {line.get(ITEM_CODE_KEY): line for line in payload.get("invoice_items") or []}
        ids = {code: await self._item("code", code, lines[code]) for code in sorted(codes)}
        default_id: str | None = None
        if uncoded and not self.rules.adhoc_lines:
            default_id = self.rules.default_item_id or await self._item(
                "default", self.rules.default_item_name, None
            )
        return with_product_ids(payload, ids, default_id)

    async def forget(self, payload: Mapping[str, Any]) -> None:
        """Drop what is remembered for the items `payload` uses (Zoho said one does not exist any more)."""
        codes, uncoded = codes_of(payload)
        keys = [("code", code) for code in codes]
        if uncoded:
            keys.append(("default", self.rules.default_item_name))
        for kind, key in keys:
            self._known.pop((kind, key), None)
            await self._store.forget_item(kind, key)

    async def _item(self, kind: str, key: str, line: Mapping[str, Any] | None) -> str:
        known = self._known.get((kind, key))
        if known is not None:
            return known
        lock = self._locks.setdefault((kind, key), asyncio.Lock())
        async with lock:
            item_id = self._known.get((kind, key)) or await self._store.item_id(kind, key)
            if item_id is None:
                body: dict[str, Any] = {"name": key, "rate": 0}
                if line is not None:  # a coded item: its first line's price and text as the item's own
                    body = {"name": key, "sku": key, "rate": line.get("rate", 0)}
                    if line.get("description") and line.get("description") != key:
                        body["description"] = line["description"]
                found = await self._client.create_item_once(body)
                item_id = str(found["item_id"])
                await self._store.remember_item(kind, key, item_id)
            self._known[(kind, key)] = item_id
            return item_id
