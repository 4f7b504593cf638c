"""The first hour on a Zoho organisation: a self-client grant code exchanged once for a refresh token,
and the organisations that token can see.

Zoho answers `invalid_code` alike for a code already used, one older than its 3 minutes, and one
generated in another data centre's console, so the refusal names all three; nothing here retries a
code (a second try would only spend one of the 10 codes per 10 minutes). Tokens stay out of messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from connectors.zoho import errors
from connectors.zoho.wire.protocol import AUTH_SCHEME, TOKEN_PATH

INVALID_CODE_SENTENCE = (
    "Zoho refused the grant code (invalid_code): it was already used, is older than its 3 minutes, or was"
    " made in another data centre's API console than {accounts_url}; make a new one and paste it at once."
)


class GrantCodeRefused(errors.AuthError):
    """Raised when the accounts server refuses a grant code (used, expired or another data centre's)."""


@dataclass(frozen=True)
class Grant:
    """What one authorization-code exchange returned (secrets kept out of repr)."""

    refresh_token: str = field(repr=False)
    access_token: str = field(repr=False)
    api_domain: str
    expires_in: float
    scope: str = ""


async def exchange_grant_code(
    http: httpx.AsyncClient, accounts_url: str, client_id: str, client_secret: str, code: str
) -> Grant:
    """One `grant_type=authorization_code` request at the data centre's accounts server."""
    form = {
        "grant_type": "authorization_code",
        "client_id": client_id,
        "client_secret": client_secret,
        "code": code.strip(),
    }
    try:
        reply = await http.post(accounts_url.rstrip("/") + TOKEN_PATH, data=form)
    except httpx.TransportError as exc:
        raise errors.TransientError(
            f"Zoho's accounts server {accounts_url} did not answer ({type(exc).__name__}); check the data"
            " centre and the network, then try again with a new code."
        ) from None
    body = _json(reply)
    if body.get("access_token") and body.get("refresh_token"):
        return Grant(
            refresh_token=str(body["refresh_token"]),
            access_token=str(body["access_token"]),
            api_domain=str(body.get("api_domain") or ""),
            expires_in=float(body.get("expires_in") or 3600),
            scope=str(body.get("scope") or ""),
        )
    error = str(body.get("error") or "")
    if error == "invalid_code":
        raise GrantCodeRefused(
            INVALID_CODE_SENTENCE.format(accounts_url=accounts_url), http_status=reply.status_code
        )
    if error in ("invalid_client", "invalid_client_secret"):
        raise errors.AuthError(
            f"Zoho refused the self-client ({error}): copy the Client ID and Client Secret from the"
            f" self-client's Client Secret tab, in the same data centre as {accounts_url}.",
            http_status=reply.status_code,
        )
    if body.get("access_token"):
        raise errors.AuthError(
            "Zoho answered without a refresh token: generate the code from a self-client (offline access).",
            http_status=reply.status_code,
        )
    raise errors.AuthError(
        f"Zoho refused the grant code ({error or f'HTTP {reply.status_code}'}); make a new one.",
        http_status=reply.status_code,
    )


@dataclass(frozen=True)
class Organization:
    organization_id: str
    name: str


async def visible_organizations(
    http: httpx.AsyncClient, api_base: str, access_token: str
) -> list[Organization]:
    """`GET /organizations` with the token alone (no organisation header: it is how the id is found).

    The reply's shape is UNCONFIRMED for Billing (reference, section 1): Books' `organizations[]` with
    `organization_id` and `name` is read; anything else raises `ValidationFailed` naming what came back.
    """
    try:
        reply = await http.get(
            api_base.rstrip("/") + "/organizations",
            headers={"Authorization": f"{AUTH_SCHEME} {access_token}"},
        )
    except httpx.TransportError as exc:
        raise errors.TransientError(
            f"Zoho's API at {api_base} did not answer ({type(exc).__name__})"
        ) from None
    body = _json(reply)
    if reply.status_code == 401:
        raise errors.AccessTokenRejected(
            "Zoho refused the access token for GET /organizations", http_status=401
        )
    listed = body.get("organizations")
    if body.get("code") != 0 or not isinstance(listed, list):
        raise errors.ValidationFailed(
            f"GET /organizations answered HTTP {reply.status_code} code={body.get('code')!r} without an"
            " organisations list",
            code=body.get("code") if isinstance(body.get("code"), int) else None,
            http_status=reply.status_code,
        )
    return [
        Organization(str(o.get("organization_id", "")), str(o.get("name", "")))
        for o in listed
        if isinstance(o, dict) and o.get("organization_id")
    ]


def _json(reply: httpx.Response) -> dict[str, Any]:
    try:
        body = reply.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
