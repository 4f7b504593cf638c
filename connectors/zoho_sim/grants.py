"""The simulated accounts server's self-client grant codes and the organisations a token can see.

A grant code is what Zoho's API console hands out after the scopes are ticked ("Generate Code"): it
lives `grant_code_lifetime` seconds (3 minutes for a self-client), is redeemed once
(`grant_type=authorization_code`), and a client may generate `grant_code_limit` per
`grant_code_window` (10 per 10 minutes; beyond, `access_denied`). Redeeming a used, expired or
unknown code answers `invalid_code` with HTTP 200, alike for all three, as Zoho does (reference,
section 2): a code from another data centre is simply unknown here. Redeeming issues a new refresh
token, which the simulator then accepts like the configured ones.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from connectors.zoho_sim.config import SimConfig
from connectors.zoho_sim.organisations import organisation_ids


@dataclass
class GrantCode:
    scope: str
    expires_at: float
    used: bool = False


@dataclass
class GrantCodes:
    config: SimConfig
    codes: dict[str, GrantCode] = field(default_factory=dict)
    generated: deque[float] = field(default_factory=deque)
    issued_refresh_tokens: list[str] = field(default_factory=list, repr=False)

    def generate(self, scope: str, now: float | None = None) -> tuple[int, dict[str, Any]]:
        """What the console's "Generate Code" does: a new code, or `access_denied` past the limit."""
        now = time.monotonic() if now is None else now
        while self.generated and self.generated[0] <= now - self.config.grant_code_window:
            self.generated.popleft()
        if len(self.generated) >= self.config.grant_code_limit:
            return 200, {"error": "access_denied"}
        self.generated.append(now)
        code = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
        self.codes[code] = GrantCode(scope, now + self.config.grant_code_lifetime)
        return 200, {"code": code, "expires_in": int(self.config.grant_code_lifetime), "scope": scope}

    def redeem(self, code: str, now: float | None = None) -> str | None:
        """A new refresh token if the code is known, unused and unexpired (it is then used up), else None."""
        now = time.monotonic() if now is None else now
        grant = self.codes.get(code)
        if grant is None or grant.used or now >= grant.expires_at:
            return None
        grant.used = True
        refresh = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
        self.issued_refresh_tokens.append(refresh)
        return refresh

    def accepts(self, refresh_token: str) -> bool:
        return refresh_token in self.config.refresh_tokens or refresh_token in self.issued_refresh_tokens

    def expire_all(self) -> None:
        """Every code outstanding ages past its 3 minutes (tests: an expired code without waiting)."""
        for grant in self.codes.values():
            grant.expires_at = 0.0


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
