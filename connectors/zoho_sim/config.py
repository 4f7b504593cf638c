"""Everything a test or the CLI can set on the simulator: credentials, limits, behaviour, faults.

Defaults follow /work/shared/reference/zoho-billing-api.md (the guesses where it says UNCONFIRMED):
100 calls per 60 s window, 1,000 per UTC day, 5 in flight, 10 token refreshes per 10 minutes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class SimLimits:
    per_window: int = 100
    window_seconds: float = 60.0
    daily: int = 1000
    concurrency: int = 5
    retry_after: float | None = (
        None  # seconds to send in Retry-After on 429s; None: no header (Zoho's default)
    )


@dataclass
class SimFaults:
    """Injected failures; probabilities are per accepted API request."""

    error_500: float = 0.0
    error_503: float = 0.0
    latency: float = 0.0  # seconds added to every API request
    timeout: float = 0.0  # apply, then hold the reply `timeout_hold` seconds (past the client's timeout)
    timeout_hold: float = 35.0
    lost_response: float = 0.0  # apply, then drop the connection without a complete reply
    drop_request: float = 0.0  # drop the connection without applying
    # apply a write (any request but a GET), then answer as a gateway in front of Zoho does: HTML 502
    applied_502: float = 0.0
    burst_429: int = 0  # the next N API requests answer 429 (code 44)
    # [endpoint, fault] pairs played once each, in order, on the next accepted request to that endpoint
    # (e.g. ["POST /payments", "lost_response"]): deterministic faults for tests.
    once: list[list[str]] = field(default_factory=list)
    token_refusal_seconds: float = (
        0.0  # the token endpoint answers Access Denied for this long (from set time)
    )


@dataclass
class SimConfig:
    client_id: str = "1000.SIMCLIENTID"
    client_secret: str = field(default="sim-client-secret", repr=False)
    refresh_tokens: tuple[str, ...] = field(default=("1000.simrefresh.0000000000000000",), repr=False)
    organization_id: str = "10234695"
    # More organisations the same user belongs to, each with its own records, ids and counters
    # (`connectors.zoho_sim.organisations`); a request for any other organisation is refused.
    other_organization_ids: tuple[str, ...] = ()
    organization_name: str = (
        "zoho-cdc simulated organisation"  # GET /organizations; others: "Organisation <id>"
    )
    # Self-client grant codes (reference, section 2): 3 minutes, single use, 10 per 10 minutes.
    grant_code_lifetime: float = 180.0
    grant_code_limit: int = 10
    grant_code_window: float = 600.0
    # The customer custom fields the organisation defines (Settings > Preferences > Customers). None: any
    # label sent is accepted. A label not defined is dropped from what is saved: a GUESS, Zoho's answer to
    # an unknown label is UNCONFIRMED, and dropping it silently is the case a client must detect.
    customer_custom_fields: tuple[str, ...] | None = None
    token_lifetime: float = 3600.0
    token_refresh_limit: int = 10  # token requests per refresh token per window (denied ones count too)
    token_refresh_window: float = 600.0
    max_active_tokens: int = 10  # per refresh token; the oldest stops working
    token_throttle_status: int = 400
    api_domain: str | None = None  # None: this server's own URL
    require_email: bool = False  # UNCONFIRMED whether Billing requires it
    unique_display_names: bool = True  # Books behaviour (3062), UNCONFIRMED for Billing
    not_found_status: int = 404
    require_product_id: bool = (
        True  # the spec requires invoice_items[].product_id; off = ad-hoc lines accepted
    )
    currency_code: str = "ZAR"
    account_number_label: str = "Account Number"
    # Customer list items show Books-style cf_<label> columns; off: as Billing's list schema, none (a client
    # must read the whole customer to see its custom fields).
    list_custom_fields: bool = True
    seed: int | None = None
    db_path: str | None = None
    limits: SimLimits = field(default_factory=SimLimits)
    faults: SimFaults = field(default_factory=SimFaults)

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out["client_secret"] = "********"
        out["refresh_tokens"] = [f"…{t[-4:]}" for t in self.refresh_tokens]
        return out


def update_dataclass(target: Any, values: dict[str, Any]) -> None:
    """Set known fields from a JSON object; unknown names raise ValueError (one sentence)."""
    known = {f.name for f in fields(target)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown fields {unknown}; known: {sorted(known)}")
    for key, value in values.items():
        setattr(target, key, value)
