"""The simulated accounts server: self-client grant codes, the access tokens it issues, and the
organisations a token can see. Access tokens live `token_lifetime` seconds, at most `max_active_tokens`
per refresh token; token requests count per refresh token in a sliding window, refused ones included,
so a client that hammers the endpoint stays blocked.
"""

from __future__ import annotations

import random
import secrets
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from connectors import clock
from connectors.zoho.wire.protocol import AUTH_SCHEME, MESSAGE_TOKEN_THROTTLED
from connectors.zoho_sim.config import SimConfig
from connectors.zoho_sim.envelopes import Reply
from connectors.zoho_sim.organisations import organisation_ids


def token_text(rng: random.Random | None) -> str:
    """A new token or grant code, shaped as Zoho's: from `secrets`, or from `rng` when one is given (the
    in-process simulator of `simulation.zoho`: one seed, one history, its tokens included)."""
    if rng is None:
        return f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
    return f"1000.{rng.getrandbits(128):032x}.{rng.getrandbits(128):032x}"


TOKEN_THROTTLED_BODY = {
    "error_description": MESSAGE_TOKEN_THROTTLED,
    "error": "Access Denied",
    "status": "failure",
}


@dataclass
class GrantCode:
    scope: str
    expires_at: float
    used: bool = False


@dataclass
class GrantCodes:
    """What Zoho's API console hands out after the scopes are ticked ("Generate Code").

    A code lives `grant_code_lifetime` seconds (3 minutes for a self-client), is redeemed once
    (`grant_type=authorization_code`), and a client may generate `grant_code_limit` per `grant_code_window`
    (10 per 10 minutes; beyond, `access_denied`). Redeeming a used, expired or unknown code answers
    `invalid_code` with HTTP 200, alike for all three, as Zoho does (reference, section 2): a code from
    another data centre is simply unknown here. Redeeming issues a new refresh token, which the simulator
    then accepts like the configured ones."""

    config: SimConfig
    # What tokens and codes are drawn from (`token_text`): None for the served simulator.
    rng: random.Random | None = field(default=None, repr=False)
    codes: dict[str, GrantCode] = field(default_factory=dict)
    generated: deque[float] = field(default_factory=deque)
    issued_refresh_tokens: list[str] = field(default_factory=list, repr=False)

    def generate(self, scope: str, now: float | None = None) -> tuple[int, dict[str, Any]]:
        """What the console's "Generate Code" does: a new code, or `access_denied` past the limit."""
        now = clock.monotonic() if now is None else now
        while self.generated and self.generated[0] <= now - self.config.grant_code_window:
            self.generated.popleft()
        if len(self.generated) >= self.config.grant_code_limit:
            return 200, {"error": "access_denied"}
        self.generated.append(now)
        code = token_text(self.rng)
        self.codes[code] = GrantCode(scope, now + self.config.grant_code_lifetime)
        return 200, {"code": code, "expires_in": int(self.config.grant_code_lifetime), "scope": scope}

    def redeem(self, code: str, now: float | None = None) -> str | None:
        """A new refresh token if the code is known, unused and unexpired (it is then used up), else None."""
        now = clock.monotonic() if now is None else now
        grant = self.codes.get(code)
        if grant is None or grant.used or now >= grant.expires_at:
            return None
        grant.used = True
        refresh = token_text(self.rng)
        self.issued_refresh_tokens.append(refresh)
        return refresh

    def accepts(self, refresh_token: str) -> bool:
        return refresh_token in self.config.refresh_tokens or refresh_token in self.issued_refresh_tokens

    def expire_all(self) -> None:
        """Every code outstanding ages past its 3 minutes (tests: an expired code without waiting)."""
        for grant in self.codes.values():
            grant.expires_at = 0.0


@dataclass
class IssuedToken:
    refresh_token: str = field(repr=False)
    expires_at: float


class Accounts:
    """The accounts server's side of OAuth: grant codes redeemed, access tokens issued and revoked."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.grants = GrantCodes(config)
        self.tokens: dict[str, IssuedToken] = {}
        self.active: dict[str, deque[str]] = defaultdict(deque)
        self.revoked: set[str] = set()
        self.token_log: dict[str, deque[float]] = defaultdict(deque)
        self.refusal_until = 0.0
        self.reset_counters()

    def reset_counters(self) -> None:
        self.token_requests = 0
        self.tokens_issued = 0
        self.token_refusals = 0

    def token_request(self, params: dict[str, str], own_url: str) -> Reply:
        self.token_requests += 1
        now = clock.monotonic()
        grant_type = params.get("grant_type")
        if grant_type not in ("refresh_token", "authorization_code"):
            return 200, {"error": "unsupported_grant_type"}
        if params.get("client_id") != self.config.client_id:
            return 200, {"error": "invalid_client"}
        if params.get("client_secret") != self.config.client_secret:
            return 200, {"error": "invalid_client_secret"}
        if grant_type == "authorization_code":
            refresh = self.grants.redeem(params.get("code", ""))
            if refresh is None:  # used, expired, unknown or another data centre's: Zoho answers alike
                return 200, {"error": "invalid_code"}
            return 200, {**self._issue(refresh, now, own_url), "refresh_token": refresh}
        refresh = params.get("refresh_token", "")
        if not self.grants.accepts(refresh) or refresh in self.revoked:
            return 200, {"error": "invalid_code"}
        if self._throttled(refresh, now):
            self.token_refusals += 1
            return self.config.token_throttle_status, dict(TOKEN_THROTTLED_BODY)
        return 200, self._issue(refresh, now, own_url)

    def _throttled(self, refresh: str, now: float) -> bool:
        """Counts this request, then: over the per-window limit for this refresh token, or in a refusal
        spell (`token_refusal_seconds`)."""
        log = self.token_log[refresh]
        while log and log[0] <= now - self.config.token_refresh_window:
            log.popleft()
        over_limit = len(log) >= self.config.token_refresh_limit
        log.append(now)
        return over_limit or now < self.refusal_until

    def _issue(self, refresh: str, now: float, own_url: str) -> dict[str, Any]:
        access = token_text(self.grants.rng)
        self.tokens[access] = IssuedToken(refresh, now + self.config.token_lifetime)
        active = self.active[refresh]
        active.append(access)
        while len(active) > self.config.max_active_tokens:
            self.tokens.pop(active.popleft(), None)
        self.tokens_issued += 1
        lifetime = self.config.token_lifetime
        return {
            "access_token": access,
            "expires_in": int(lifetime) if float(lifetime).is_integer() else lifetime,
            "api_domain": self.config.api_domain or own_url,
            "token_type": "Bearer",
        }

    def revoke(self, token: str) -> Reply:
        if self.grants.accepts(token):
            self.revoked.add(token)
            for access in self.active.pop(token, deque()):
                self.tokens.pop(access, None)
        else:
            self.tokens.pop(token, None)
        return 200, {"status": "success"}

    def expire_access_tokens(self) -> None:
        self.tokens.clear()
        self.active.clear()

    def authenticated(self, authorization: str | None, now: float | None = None) -> bool:
        """Whether the `Authorization` header carries a live access token."""
        now = clock.monotonic() if now is None else now
        scheme, _, access = (authorization or "").partition(" ")
        issued = self.tokens.get(access) if scheme == AUTH_SCHEME else None
        return not (issued is None or now >= issued.expires_at or issued.refresh_token in self.revoked)


def visible_organizations(config: SimConfig) -> list[dict[str, Any]]:
    """`GET /organizations`: the organisations the token's user belongs to.

    The reply's shape is a guess (the reference: not in Billing's copied spec, UNCONFIRMED; expect
    Books' `organizations[]` with `organization_id` and `name`): the simulator answers Books' shape.
    """
    return [
        {
            "organization_id": org_id,
            "name": config.organization_name if index == 0 else f"Organisation {org_id}",
            "is_default_org": index == 0,
            "currency_code": config.currency_code,
        }
        for index, org_id in enumerate(organisation_ids(config))
    ]
