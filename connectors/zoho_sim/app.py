"""The simulator's HTTP face: Zoho's accounts and Billing API routes plus `/__sim__/` admin routes.

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
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from connectors.zoho.wire.protocol import API_PATH, CODE_INVALID_INPUT, ORG_HEADER, TOKEN_PATH
from connectors.zoho_sim.config import update_dataclass
from connectors.zoho_sim.core import NOT_AUTHORIZED, Simulator
from connectors.zoho_sim.envelopes import Reply, invalid
from connectors.zoho_sim.grants import visible_organizations
from connectors.zoho_sim.organisations import Organisation
from connectors.zoho_sim.others import NotLoadable

#: What a gateway in front of Zoho answers when Zoho's reply reaches it too late (not a Zoho envelope).
_GATEWAY_502 = (
    "<html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)


class DropConnection(Exception):
    """Raised on purpose after the headers are sent, so the server closes the connection mid-reply."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DropConnection))


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


class DroppedResponse(Response):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"512")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        raise DropConnection()


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
            faults = sim.config.faults
            if faults.latency:
                await asyncio.sleep(faults.latency)
            if admission.fault == "error_500":
                org.count(endpoint, 500)
                return JSONResponse({"code": 1000, "message": "Internal error"}, 500)
            if admission.fault == "error_503":
                org.count(endpoint, 503)
                return Response("<html><body>503 Service Temporarily Unavailable</body></html>", 503)
            if admission.fault == "drop_request":
                org.count(endpoint, "dropped")
                return DroppedResponse()
            body = await _json_body(request) if method in ("POST", "PUT") else {}
            if body is None:
                status, reply = invalid("JSONString", CODE_INVALID_INPUT)
            else:
                status, reply = operation(org, request, body)
            if admission.fault == "lost_response":
                org.count(endpoint, f"lost-{status}")
                return DroppedResponse()
            if admission.fault == "applied_502":
                org.count(endpoint, f"applied-{status}-502")
                return HTMLResponse(_GATEWAY_502, 502)
            if admission.fault == "timeout":
                await asyncio.sleep(faults.timeout_hold)
            org.count(endpoint, status)
            return JSONResponse(reply, status)
        finally:
            org.release()

    return Route(API_PATH + template, handler, methods=[method])


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
    status, body = sim.token_request(params, str(request.base_url).rstrip("/"))
    return JSONResponse(body, status)


async def organizations_endpoint(request: Request) -> Response:
    """`GET /organizations`: needs a token but no organisation header (it is how the id is found)."""
    sim: Simulator = request.app.state.sim
    if not sim.authenticated(request.headers.get("authorization")):
        sim.default.count("GET /organizations", NOT_AUTHORIZED[0])
        return JSONResponse(NOT_AUTHORIZED[1], NOT_AUTHORIZED[0])
    sim.default.count("GET /organizations", 200)  # no organisation header: the default one
    return JSONResponse({"code": 0, "message": "success", "organizations": visible_organizations(sim.config)})


async def revoke_endpoint(request: Request) -> Response:
    status, body = request.app.state.sim.revoke(request.query_params.get("token", ""))
    return JSONResponse(body, status)


async def unknown_api_url(request: Request) -> Response:
    return JSONResponse({"code": 5, "message": "Invalid URL Passed"}, 404)


# --- admin ----------------------------------------------------------------------------------


async def _admin_json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    return json.loads(raw) if raw else {}


def _of_organisation(view: str) -> Callable[[Request], Any]:
    """An admin view of one organisation: `?organization_id=` names it (default: the configured one)."""

    async def endpoint(request: Request) -> Response:
        sim: Simulator = request.app.state.sim
        organization_id = request.query_params.get("organization_id")
        try:
            return JSONResponse(getattr(sim, view)(organization_id))
        except KeyError:
            return JSONResponse(
                {"error": f"the simulator does not serve organisation {organization_id}"}, 404
            )

    return endpoint


admin_stats = _of_organisation("stats")
admin_state = _of_organisation("state")
admin_duplicates = _of_organisation("duplicates")


async def admin_records(request: Request) -> Response:
    """POST {"customers": [...], "invoices": [...]}: records made by others, stored as given, in the
    organisation `?organization_id=` names (default: the configured one)."""
    organization_id = request.query_params.get("organization_id")
    try:
        loaded = request.app.state.sim.load_records_of_others(await _admin_json(request), organization_id)
    except NotLoadable as exc:
        return JSONResponse({"error": str(exc)}, 400)
    except KeyError:
        return JSONResponse({"error": f"the simulator does not serve organisation {organization_id}"}, 404)
    return JSONResponse({"loaded": loaded})


async def admin_reset(request: Request) -> Response:
    request.app.state.sim.reset()
    return JSONResponse({"status": "reset"})


def _setter(attribute: str) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        sim: Simulator = request.app.state.sim
        target = sim.config if attribute == "config" else getattr(sim.config, attribute)
        if request.method == "POST":
            values = await _admin_json(request)
            if attribute == "config":
                values = {k: v for k, v in values.items() if k not in ("limits", "faults")}
                for name in ("refresh_tokens", "customer_custom_fields", "other_organization_ids"):
                    if values.get(name) is not None:
                        values[name] = tuple(values[name])
            try:
                update_dataclass(target, values)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, 400)
            if attribute == "faults" and "token_refusal_seconds" in values:
                sim.refusal_until = time.monotonic() + float(values["token_refusal_seconds"])
        if attribute == "config":
            return JSONResponse(sim.config.public())
        from dataclasses import asdict

        return JSONResponse(asdict(target))

    return endpoint


async def admin_revoke(request: Request) -> Response:
    sim: Simulator = request.app.state.sim
    values = await _admin_json(request)
    status, body = sim.revoke(values.get("token") or sim.config.refresh_tokens[0])
    return JSONResponse(body, status)


async def admin_grant_code(request: Request) -> Response:
    """The API console's "Generate Code" for the self-client: `{"scope": "..."}` -> `{"code": ...}`."""
    values = await _admin_json(request)
    status, body = request.app.state.sim.grants.generate(str(values.get("scope", "")))
    return JSONResponse(body, status)


async def admin_expire_grant_codes(request: Request) -> Response:
    request.app.state.sim.grants.expire_all()
    return JSONResponse({"status": "expired"})


async def admin_portal_payment(request: Request) -> Response:
    """`{"invoice_id", "amount"?}`: the customer pays in the portal (not an API call of the client)."""
    values = await _admin_json(request)
    amount = values.get("amount")
    status, body = request.app.state.sim.pay_in_portal(
        str(values.get("invoice_id", "")), None if amount is None else float(amount)
    )
    return JSONResponse(body, status)


async def admin_customer_status(request: Request) -> Response:
    """`{"customer_id", "status": "active"|"inactive"}`: a person changes it in Zoho's web app."""
    values = await _admin_json(request)
    if values.get("status") not in ("active", "inactive"):
        return JSONResponse({"error": "status must be active or inactive"}, 400)
    status, body = request.app.state.sim.mark_customer_by_hand(
        str(values.get("customer_id", "")), values["status"]
    )
    return JSONResponse(body, status)


async def admin_expire_tokens(request: Request) -> Response:
    request.app.state.sim.expire_access_tokens()
    return JSONResponse({"status": "expired"})


ADMIN_ROUTES = [
    Route("/__sim__/stats", admin_stats),
    Route("/__sim__/state", admin_state),
    Route("/__sim__/duplicates", admin_duplicates),
    Route("/__sim__/reset", admin_reset, methods=["POST"]),
    Route("/__sim__/records", admin_records, methods=["POST"]),
    Route("/__sim__/faults", _setter("faults"), methods=["GET", "POST"]),
    Route("/__sim__/limits", _setter("limits"), methods=["GET", "POST"]),
    Route("/__sim__/config", _setter("config"), methods=["GET", "POST"]),
    Route("/__sim__/revoke", admin_revoke, methods=["POST"]),
    Route("/__sim__/expire-tokens", admin_expire_tokens, methods=["POST"]),
    Route("/__sim__/grant-code", admin_grant_code, methods=["POST"]),
    Route("/__sim__/expire-grant-codes", admin_expire_grant_codes, methods=["POST"]),
    Route("/__sim__/portal-payment", admin_portal_payment, methods=["POST"]),
    Route("/__sim__/customer-status", admin_customer_status, methods=["POST"]),
]


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
        sim.refusal_until = time.monotonic() + sim.config.faults.token_refusal_seconds
    return app
