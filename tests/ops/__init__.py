"""Operator-facing commands (reconcile, status, the status page) against the real services."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from consumer.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a `zoho-cdc` process load exactly `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOHO_", "KAFKA_", "DATABASE_"))}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[name.upper()] = str(value)
    return env


def run_cli(settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `zoho-cdc <args>` as its own process, from a folder without a `.env` file."""
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args],
        env=settings_env(settings),
        cwd=REPO / "tests" / "ops",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- a small synced world for the status tests ---------------------------------------------------

#: Recognizable secret values: the simulator accepts exactly these credentials, and the database URL
#: carries a password (PostgreSQL trusts local connections, so it is sent nowhere but must show nowhere).
CLIENT_SECRET = "cs-SECRET-7f3a9e0c"
REFRESH_TOKEN = "1000.rt-SECRET-51c2d8aa"
DB_PASSWORD = "pw-SECRET-93b1f4"


def with_password(database_url: str, password: str) -> str:
    scheme, rest = database_url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{password}@{host}"


async def populate_world(source: Any) -> dict[str, str]:
    """Rows whose sync ends in every kind of fact the status shows:

    two synced customers with one invoice each, an internal-test customer (skipped) with an invoice
    (skipped), a customer without email that Zoho rejects (dead-lettered, `failed`), an undecodable
    event (dead-lettered), and one customer whose event never reached Kafka (unsynced).
    """
    ids = {
        "a": source.insert_customer(21),
        "b": source.insert_customer(22),
        "internal": source.insert_customer(23, account_type="internal_test"),
        "no_email": source.insert_customer(24, email=None),
    }
    ids["inv_a"] = source.insert_invoice(ids["a"], "INV-2101")
    ids["inv_b"] = source.insert_invoice(ids["b"], "INV-2201")
    ids["inv_internal"] = source.insert_invoice(ids["internal"], "INV-2301")
    source.emit_raw("customers", b'{"id":"broken"}', b"\x00 not json")
    await source.flush()
    ids["never_sent"] = source.insert_customer(25)
    source.pending.clear()  # its change event is still on its way
    return ids


@asynccontextmanager
async def status_server(session: Any, runner: Any, history: Any = None) -> AsyncIterator[str]:
    """`serve_status_page` (what `zoho-cdc run` starts) on a free port; yields its base URL."""
    from consumer.local.broker import free_port
    from consumer.web.status_server import serve_status_page

    port = free_port()
    task = asyncio.create_task(serve_status_page(session, runner, port=port, history=history))
    base = f"http://{session.settings.status_host}:{port}"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(100):
                try:
                    if (await http.get(base + "/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        yield base
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
