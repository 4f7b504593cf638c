"""A separate zoho-cdc process for the shared-window tests: `python -m tests.zoho.window_worker CONFIG_JSON`.

Builds a ZohoClient on the PostgreSQL window store, waits for the common start time, makes `calls`
GET calls with `tasks` concurrent tasks and prints one JSON line with what it saw.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from connectors.zoho import PgDailyBudgetStore, ZohoClient, ZohoConfig
from connectors.zoho.stores import PgRateWindowStore


async def main(cfg: dict) -> dict:
    config = ZohoConfig(**cfg["zoho"])
    db = cfg["database_url"]
    async with ZohoClient(
        config, budget_store=PgDailyBudgetStore(db), window_store=PgRateWindowStore(db)
    ) as client:
        await client.auth.token()
        await asyncio.sleep(max(0.0, cfg["start_at"] - time.time()))
        queue = list(range(cfg["calls"]))

        async def worker() -> None:
            while queue:
                queue.pop()
                await client.get_customer(cfg["customer_id"])

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(cfg["tasks"])))
        return {
            "calls": cfg["calls"],
            "seconds": time.monotonic() - started,
            "http_429": client.metrics.http_429,
            "rate": client.window.rate,
            "reservations": client.window.metrics.reservations,
            "grants": client.window.metrics.grants,
        }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))), flush=True)
