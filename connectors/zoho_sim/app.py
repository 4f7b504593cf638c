"""The simulator's HTTP face: Zoho's accounts and Billing API routes, plus the `/__sim__/` admin routes
of `admin`.

Every API request passes `Simulator.admit` (auth, org header, limits, fault dice) before the resource
operation runs. A *lost response* applies the change, sends the status line and headers, then drops
the connection before the body, so an HTTP client sees a protocol error, never a reply. An *applied 502*
applies the change, then answers with a gateway's HTML error page, as a proxy in front of Zoho does when
Zoho's own reply reaches it too late.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from connectors import clock
from connectors.zoho.wire.protocol import API_PATH, CODE_INVALID_INPUT, ORG_HEADER, TOKEN_PATH
from connectors.zoho_sim.accounts import visible_organizations
from connectors.zoho_sim.admin import ADMIN_ROUTES
from connectors.zoho_sim.config import SimFaults
from connectors.zoho_sim.core import NOT_AUTHORIZED, Simulator
from connectors.zoho_sim.envelopes import Reply, invalid
from connectors.zoho_sim.organisations import Organisation

#: What a gateway in front of Zoho answers when Zoho's reply reaches it too late (not a Zoho envelope).
_GATEWAY_502 = (
    "<html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)


class DropConnection(Exception):
    """Raised on purpose after the headers are sent, so the server closes the connection mid-reply.
    `applied` tells a dropped request (nothing done) from a lost response (done, reply lost): a socket
    shows both alike, the in-process wire of `simulation.zoho` tells them apart as the fault means."""

    def __init__(self, applied: bool) -> None:
        super().__init__("dropped after applying" if applied else "dropped before applying")
        self.applied = applied


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DropConnection))


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


class DroppedResponse(Response):
    def __init__(self, *, applied: bool) -> None:
        super().__init__()
        self.applied = applied

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"512")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        raise DropConnection(self.applied)


async def _json_body(request: Request) -> dict[str, Any] | None:
    raw = await request.body()
    if not raw:
        return {}
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raw = dict(parse_qsl(raw.decode())).get("JSONString", "").encode()
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


# An operation works on the records of the request's organisation (`Organisation`: `.customers`,
# `.invoices`, `.items`, `.payments`, `.store`, `.config`).
Operation = Callable[[Organisation, Request, dict[str, Any]], Reply]


def api_route(method: str, template: str, operation: Operation) -> Route:
    endpoint = f"{method} {template}"
    for name in ("customer_id", "invoice_id", "item_id", "payment_id"):
        endpoint = endpoint.replace("{" + name + "}", "{id}")

    async def handler(request: Request) -> Response:
        sim: Simulator = request.app.state.sim
        admission = sim.admit(request.headers.get("authorization"), request.headers.get(ORG_HEADER), endpoint)
        org = admission.organisation  # the records and counters of the request's organisation
        if admission.refusal is not None:
            (status, body), headers = admission.refusal
            org.count(endpoint, status)
            return JSONResponse(body, status, headers=headers)
        try:
            return await _answer(sim.config.faults, admission.fault, org, endpoint, request, operation)
        finally:
            org.release()

    return Route(API_PATH + template, handler, methods=[method])


#: Faults played instead of the operation (nothing applied): what is counted, and the reply.
_UNAPPLIED: dict[str, tuple[int | str, Callable[[], Response]]] = {
    "error_500": (500, lambda: JSONResponse({"code": 1000, "message": "Internal error"}, 500)),
    "error_503": (
        503,
        lambda: Response("<html><body>503 Service Temporarily Unavailable</body></html>", 503),
    ),
    "drop_request": ("dropped", lambda: DroppedResponse(applied=False)),
}
#: Faults played once the operation is applied: how it is counted (by the operation's status), the reply.
_APPLIED_UNSEEN: dict[str, tuple[str, Callable[[], Response]]] = {
    "lost_response": ("lost-{status}", lambda: DroppedResponse(applied=True)),
    "applied_502": ("applied-{status}-502", lambda: HTMLResponse(_GATEWAY_502, 502)),
}


async def _answer(
    faults: SimFaults,
    fault: str | None,
    org: Organisation,
    endpoint: str,
    request: Request,
    operation: Operation,
) -> Response:
    """An accepted request's reply: the operation's, or the fault `admit` drew played around it."""
    if faults.latency:
        await asyncio.sleep(faults.latency)
    unapplied = _UNAPPLIED.get(fault or "")
    if unapplied is not None:
        counted, reply_instead = unapplied
        org.count(endpoint, counted)
        return reply_instead()
    body = await _json_body(request) if request.method in ("POST", "PUT") else {}
    status, reply = (
        invalid("JSONString", CODE_INVALID_INPUT) if body is None else operation(org, request, body)
    )
    unseen = _APPLIED_UNSEEN.get(fault or "")
    if unseen is not None:
        counted_as, reply_instead = unseen
        org.count(endpoint, counted_as.format(status=status))
        return reply_instead()
    if fault == "timeout":
        await asyncio.sleep(faults.timeout_hold)
    org.count(endpoint, status)
    return JSONResponse(reply, status)


def _q(request: Request) -> dict[str, str]:
    return dict(request.query_params)


def _id(request: Request, name: str) -> str:
    return str(request.path_params[name])


API_ROUTES = [
    api_route("POST", "/customers", lambda s, r, b: s.customers.create(b)),
    api_route("GET", "/customers", lambda s, r, b: s.customers.list_page(_q(r))),
    api_route("GET", "/customers/{customer_id}", lambda s, r, b: s.customers.get(_id(r, "customer_id"))),
    api_route(
        "PUT",
        "/customers/{customer_id}",
        lambda s, r, b: s.customers.update(_id(r, "customer_id"), b),
    ),
    api_route(
        "DELETE",
        "/customers/{customer_id}",
        lambda s, r, b: s.customers.delete(_id(r, "customer_id")),
    ),
    api_route(
        "POST",
        "/customers/{customer_id}/markasactive",
        lambda s, r, b: s.customers.set_status(_id(r, "customer_id"), "active"),
    ),
    api_route(
        "POST",
        "/customers/{customer_id}/markasinactive",
        lambda s, r, b: s.customers.set_status(_id(r, "customer_id"), "inactive"),
    ),
    api_route("POST", "/invoices", lambda s, r, b: s.invoices.create(b, _q(r))),
    api_route("GET", "/invoices", lambda s, r, b: s.invoices.list_page(_q(r))),
    api_route("GET", "/invoices/{invoice_id}", lambda s, r, b: s.invoices.get(_id(r, "invoice_id"))),
    api_route(
        "PUT",
        "/invoices/{invoice_id}",
        lambda s, r, b: s.invoices.update(_id(r, "invoice_id"), b, _q(r)),
    ),
    api_route("DELETE", "/invoices/{invoice_id}", lambda s, r, b: s.invoices.delete(_id(r, "invoice_id"))),
    api_route("POST", "/invoices/{invoice_id}/void", lambda s, r, b: s.invoices.void(_id(r, "invoice_id"))),
    api_route(
        "POST",
        "/invoices/{invoice_id}/converttoopen",
        lambda s, r, b: s.invoices.convert_to_open(_id(r, "invoice_id")),
    ),
    api_route("POST", "/items", lambda s, r, b: s.items.create(b)),
    api_route("GET", "/items", lambda s, r, b: s.items.list_page(_q(r))),
    api_route("GET", "/items/{item_id}", lambda s, r, b: s.items.get(_id(r, "item_id"))),
    api_route("POST", "/payments", lambda s, r, b: s.payments.create(b)),
    api_route("GET", "/payments", lambda s, r, b: s.payments.list_page(_q(r))),
    api_route("GET", "/payments/{payment_id}", lambda s, r, b: s.payments.get(_id(r, "payment_id"))),
]


async def token_endpoint(request: Request) -> Response:
    sim: Simulator = request.app.state.sim
    params = dict(request.query_params)
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        # parsed by hand: starlette's form parser needs python-multipart, which we do not ship
        params.update(parse_qsl((await request.body()).decode()))
    elif request.headers.get("content-type", "").startswith("application/json"):
        return JSONResponse({"error": "This request does not support sending params as a JSON object"}, 400)
    status, body = sim.accounts.token_request(params, str(request.base_url).rstrip("/"))
    return JSONResponse(body, status)


async def organizations_endpoint(request: Request) -> Response:
    """`GET /organizations`: needs a token but no organisation header (it is how the id is found)."""
    sim: Simulator = request.app.state.sim
    if not sim.accounts.authenticated(request.headers.get("authorization")):
        sim.default.count("GET /organizations", NOT_AUTHORIZED[0])
        return JSONResponse(NOT_AUTHORIZED[1], NOT_AUTHORIZED[0])
    sim.default.count("GET /organizations", 200)  # no organisation header: the default one
    return JSONResponse({"code": 0, "message": "success", "organizations": visible_organizations(sim.config)})


async def revoke_endpoint(request: Request) -> Response:
    status, body = request.app.state.sim.accounts.revoke(request.query_params.get("token", ""))
    return JSONResponse(body, status)


async def unknown_api_url(request: Request) -> Response:
    return JSONResponse({"code": 5, "message": "Invalid URL Passed"}, 404)


def build_app(sim: Simulator) -> Starlette:
    routes = [
        Route(TOKEN_PATH, token_endpoint, methods=["POST"]),
        Route(TOKEN_PATH + "/revoke", revoke_endpoint, methods=["POST"]),
        Route(API_PATH + "/organizations", organizations_endpoint, methods=["GET"]),
        *API_ROUTES,
        Route(API_PATH + "/{rest:path}", unknown_api_url, methods=["GET", "POST", "PUT", "DELETE"]),
        *ADMIN_ROUTES,
    ]
    app = Starlette(routes=routes)
    app.state.sim = sim
    if sim.config.faults.token_refusal_seconds:
        sim.accounts.refusal_until = clock.monotonic() + sim.config.faults.token_refusal_seconds
    return app
