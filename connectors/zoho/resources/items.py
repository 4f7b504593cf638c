"""The client's item calls: the catalogue items invoice lines point to, found by name or created once.

Zoho compares item names case-insensitively and answers a taken name with code 1000 (a `Duplicate`),
so a lost reply or a clash is resolved by looking the name up, never by creating a second item.
"""

from __future__ import annotations

from typing import Any

from connectors.zoho import errors
from connectors.zoho.wire.transport import ZohoTransport


class ItemEndpoints(ZohoTransport):
    """POST/GET /items and the lookup by name."""

    async def create_item(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST /items; a taken name answers code 1000 "The item name already exist" (a Duplicate)."""
        reply = await self._request("POST", "/items", "POST /items", body=payload)
        return reply["item"]

    async def get_item(self, item_id: str) -> dict[str, Any]:
        return (await self._request("GET", f"/items/{item_id}", "GET /items/{id}"))["item"]

    async def find_item(self, name: str) -> dict[str, Any] | None:
        """The item named exactly `name` (case-insensitive, as Zoho compares item names), else None."""
        async for item in self._pages("/items", "items", "GET /items", {"name": name}):
            if str(item.get("name", "")).strip().lower() == name.strip().lower():
                return item
        return None

    async def create_item_once(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The item named `payload["name"]`: found, or created once (a lost reply or a clash is looked up)."""
        name = str(payload["name"])
        found = await self.find_item(name)
        if found is not None:
            return found
        try:
            return await self._create_once(lambda: self.create_item(payload), lambda: self.find_item(name))
        except errors.Duplicate:
            found = await self.find_item(name)
            if found is None:
                raise
            return found
