"""Running the simulator: in a background thread (tests) or as the `zoho-cdc zoho-sim` process.

`run_in_thread(config)` binds a free port on 127.0.0.1, serves until `handle.stop()`, and returns a
`SimHandle` with the URLs, the credentials it accepts, and admin helpers over real HTTP.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn

from connectors.zoho.wire.protocol import API_PATH
from connectors.zoho_sim.app import build_app
from connectors.zoho_sim.config import SimConfig
from connectors.zoho_sim.core import Simulator


@dataclass
class SimHandle:
    """A running simulator: where it is, what credentials it accepts, and admin helpers."""

    url: str
    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)
    org_id: str
    simulator: Simulator | None = field(default=None, repr=False)  # only for in-thread servers
    _stop: Any = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return self.url + API_PATH

    @property
    def accounts_url(self) -> str:
        return self.url

    def _admin(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        reply = httpx.request(method, f"{self.url}/__sim__/{path}", json=payload, timeout=10)
        reply.raise_for_status()
        return reply.json()

    def stats(self, org: str | None = None) -> dict[str, Any]:
        """The request counters of one organisation (default: the configured one)."""
        return self._admin("GET", _of("stats", org))

    def state(self, org: str | None = None) -> dict[str, Any]:
        """The records of one organisation (default: the configured one)."""
        return self._admin("GET", _of("state", org))

    def duplicates(self, org: str | None = None) -> dict[str, Any]:
        return self._admin("GET", _of("duplicates", org))

    def reset(self) -> None:
        self._admin("POST", "reset")

    def load_records_of_others(
        self,
        customers: list[dict[str, Any]] = (),
        invoices: list[dict[str, Any]] = (),  # type: ignore[assignment]
        org: str | None = None,
    ) -> dict[str, list[str]]:
        """Store records made by someone else (any id, no Account Number field unless given) in one
        organisation (default: the configured one)."""
        loaded: dict[str, list[str]] = self._admin(
            "POST", _of("records", org), {"customers": list(customers), "invoices": list(invoices)}
        )["loaded"]
        return loaded

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        return self._admin("POST", "faults", faults)

    def set_limits(self, **limits: Any) -> dict[str, Any]:
        return self._admin("POST", "limits", limits)

    def set_config(self, **values: Any) -> dict[str, Any]:
        return self._admin("POST", "config", values)

    def revoke_refresh_token(self, token: str | None = None) -> None:
        self._admin("POST", "revoke", {"token": token} if token else {})

    def expire_access_tokens(self) -> None:
        self._admin("POST", "expire-tokens")

    def generate_grant_code(self, scope: str = "") -> dict[str, Any]:
        """What the API console's "Generate Code" answers: `{"code": ..., "expires_in": 180}` or an error."""
        return self._admin("POST", "grant-code", {"scope": scope})

    def expire_grant_codes(self) -> None:
        self._admin("POST", "expire-grant-codes")

    def pay_in_portal(self, invoice_id: str, amount: float | None = None) -> dict[str, Any]:
        """The customer pays the invoice in Zoho's portal (its balance by default); Zoho's reply body.
        Raises on a refusal (an invoice not open, more than its balance)."""
        payload: dict[str, Any] = {"invoice_id": invoice_id}
        if amount is not None:
            payload["amount"] = amount
        return self._admin("POST", "portal-payment", payload)

    def mark_customer_by_hand(self, customer_id: str, status: str) -> dict[str, Any]:
        """A person marks the customer active or inactive in Zoho's web app."""
        return self._admin("POST", "customer-status", {"customer_id": customer_id, "status": status})

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None


def _of(view: str, org: str | None) -> str:
    return view if org is None else f"{view}?organization_id={org}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def uvicorn_config(app: Any, host: str, port: int, log_level: str = "warning") -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http="h11",
        lifespan="off",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
    )


def run_in_thread(config: SimConfig | None = None) -> SimHandle:
    """Serve a fresh simulator on a free 127.0.0.1 port in a daemon thread; `stop()` shuts it down."""
    config = config or SimConfig()
    sim = Simulator(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(build_app(sim), "127.0.0.1", port))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the Zoho simulator did not start")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        sim.close()

    return SimHandle(
        url=f"http://127.0.0.1:{port}",
        client_id=config.client_id,
        client_secret=config.client_secret,
        refresh_token=config.refresh_tokens[0],
        org_id=config.organization_id,
        simulator=sim,
        _stop=stop,
    )


def start_subprocess(port: int | None = None, *args: str, timeout: float = 20.0) -> SimHandle:
    """Start `zoho-cdc zoho-sim` as a child process (default credentials) and wait until it answers."""
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "consumer",
        "zoho-sim",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *args,
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"zoho-sim exited: {proc.stderr.read().decode()[-500:] if proc.stderr else ''}"
            )
        try:
            httpx.get(f"{url}/__sim__/stats", timeout=1).raise_for_status()
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("zoho-sim did not answer in time") from None
            time.sleep(0.1)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    defaults = SimConfig()
    return SimHandle(
        url,
        defaults.client_id,
        defaults.client_secret,
        defaults.refresh_tokens[0],
        defaults.organization_id,
        _stop=stop,
    )
