"""The simulator's `/__sim__/` admin routes: what a test reads (stats, state, duplicates) and what it does
beside the API (faults, limits and config, tokens and grant codes, records made by others, a portal
payment, a customer marked by hand). None of them counts as an API call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors import clock
from connectors.zoho_sim.config import update_dataclass
from connectors.zoho_sim.core import Simulator
from connectors.zoho_sim.others import NotLoadable


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
                sim.accounts.refusal_until = clock.monotonic() + float(values["token_refusal_seconds"])
        if attribute == "config":
            return JSONResponse(sim.config.public())
        return JSONResponse(asdict(target))

    return endpoint


async def admin_revoke(request: Request) -> Response:
    sim: Simulator = request.app.state.sim
    values = await _admin_json(request)
    status, body = sim.accounts.revoke(values.get("token") or sim.config.refresh_tokens[0])
    return JSONResponse(body, status)


async def admin_grant_code(request: Request) -> Response:
    """The API console's "Generate Code" for the self-client: `{"scope": "..."}` -> `{"code": ...}`."""
    values = await _admin_json(request)
    status, body = request.app.state.sim.accounts.grants.generate(str(values.get("scope", "")))
    return JSONResponse(body, status)


async def admin_expire_grant_codes(request: Request) -> Response:
    request.app.state.sim.accounts.grants.expire_all()
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
    request.app.state.sim.accounts.expire_access_tokens()
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
