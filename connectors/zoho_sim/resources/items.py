"""Simulated Billing items (openapi/items.yml): the catalogue entries invoice lines point to.

Names are unique case-insensitively; a taken name answers code 1000 "The item name already exist",
as Zoho does (reference, "Added 2026-11-25"), which the client reads as a duplicate.
"""

from __future__ import annotations

from typing import Any

from connectors.zoho.wire.protocol import CODE_INTERNAL, CODE_INVALID_INPUT, CODE_ITEM_NOT_FOUND
from connectors.zoho_sim.envelopes import Reply, Resource, error, invalid, paged, timestamp

ITEM_FIELDS = "name rate description sku product_type tax_id".split()


class Items(Resource):
    kind = "item"
    label = "Item"
    missing_code = CODE_ITEM_NOT_FOUND

    def create(self, body: dict[str, Any]) -> Reply:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            return invalid("name", CODE_INVALID_INPUT)
        try:
            rate = float(body["rate"])
        except (KeyError, TypeError, ValueError):
            return invalid("rate", CODE_INVALID_INPUT)
        if any(i["name"].strip().lower() == name.strip().lower() for i in self.store.items.values()):
            return error(400, CODE_INTERNAL, "The item name already exist")
        rid = self.store.new_id()
        now = timestamp()
        record = {
            "item_id": rid,
            **{k: body[k] for k in ITEM_FIELDS if k in body},
            "rate": rate,
            "status": "active",
            "created_time": now,
            "last_modified_time": now,
        }
        record.setdefault("sku", "")
        record.setdefault("description", "")
        return self.saved(201, "The item has been added.", rid, record)

    def list_page(self, query: dict[str, str]) -> Reply:
        items = sorted(self.store.items.values(), key=lambda i: int(i["item_id"]))
        if "name" in query:
            items = [i for i in items if i["name"].lower() == query["name"].lower()]
        if "name_contains" in query:
            items = [i for i in items if query["name_contains"].lower() in i["name"].lower()]
        if "sku" in query:  # not a documented filter: real Zoho may ignore it (callers verify)
            items = [i for i in items if i.get("sku") == query["sku"]]
        if text := query.get("search_text", "").lower():
            items = [i for i in items if text in i["name"].lower() or text in i["description"].lower()]
        return paged(list(items), "items", query, query.get("filter_by", "Status.All"))
