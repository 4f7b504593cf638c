"""The simulator's gatekeeping, as Zoho does it: OAuth tokens, org header, limits, and injected faults.

Rate semantics: an API request is *accepted* when it passes auth and every limit; the per-window limit
counts accepted requests in any sliding window of `window_seconds` (the strictest reading of "per
minute"), the daily limit counts them per UTC day, the concurrency limit counts accepted requests
still being handled. Refused (429) requests do not count. Token requests count per refresh token in a
sliding window, refused ones included, so a client that hammers the endpoint stays blocked.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from connectors.zoho.config import custom_field_filter
from connectors.zoho.protocol import (
    CODE_BAD_ORGANIZATION,
    CODE_CONCURRENCY,
    CODE_NOT_AUTHORIZED,
    CODE_RATE_PER_DAY,
    CODE_RATE_PER_MINUTE,
    MESSAGE_CONCURRENCY,
    MESSAGE_RATE_PER_MINUTE,
    MESSAGE_TOKEN_THROTTLED,
    message_rate_per_day,
)
from connectors.zoho_sim.config import SimConfig
from connectors.zoho_sim.customers import Customers
from connectors.zoho_sim.envelopes import Reply
from connectors.zoho_sim.invoices import Invoices
from connectors.zoho_sim.items import Items
from connectors.zoho_sim.payments import Payments
from connectors.zoho_sim.store import RecordStore

TOKEN_THROTTLED_BODY = {
    "error_description": MESSAGE_TOKEN_THROTTLED,
    "error": "Access Denied",
    "status": "failure",
}


@dataclass
class IssuedToken:
    refresh_token: str = field(repr=False)
    expires_at: float


@dataclass
class Admission:
    """The outcome of the gate: a refusal to send as is, or the fault to play on an accepted request."""

    refusal: tuple[Reply, dict[str, str]] | None = None
    # None | "error_500" | "error_503" | "drop_request" | "lost_response" | "timeout" | "applied_502"
    fault: str | None = None


class Simulator:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.store = RecordStore(config.db_path)
        self.customers = Customers(config, self.store)
        self.invoices = Invoices(config, self.store)
        self.items = Items(config, self.store)
        self.payments = Payments(config, self.store)
        self.tokens: dict[str, IssuedToken] = {}
        self.active: dict[str, deque[str]] = defaultdict(deque)
        self.revoked: set[str] = set()
        self.token_log: dict[str, deque[float]] = defaultdict(deque)
        self.refusal_until = 0.0
        self.reset_counters()

    def reset_counters(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.accepted_log: deque[float] = deque()
        self.daily: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.max_in_window = 0
        self.token_requests = 0
        self.tokens_issued = 0
        self.token_refusals = 0
        self.faults_played: Counter[str] = Counter()

    def reset(self) -> None:
        self.store.wipe()
        self.reset_counters()

    # --- OAuth -------------------------------------------------------------------------------

    def _new_token(self) -> str:
        return f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"

    def token_request(self, params: dict[str, str], own_url: str) -> Reply:
        self.token_requests += 1
        now = time.monotonic()
        if params.get("grant_type") != "refresh_token":
            return 200, {"error": "unsupported_grant_type"}
        if params.get("client_id") != self.config.client_id:
            return 200, {"error": "invalid_client"}
        if params.get("client_secret") != self.config.client_secret:
            return 200, {"error": "invalid_client_secret"}
        refresh = params.get("refresh_token", "")
        if refresh not in self.config.refresh_tokens or refresh in self.revoked:
            return 200, {"error": "invalid_code"}
        log = self.token_log[refresh]
        while log and log[0] <= now - self.config.token_refresh_window:
            log.popleft()
        over_limit = len(log) >= self.config.token_refresh_limit
        log.append(now)
        if over_limit or now < self.refusal_until:
            self.token_refusals += 1
            return self.config.token_throttle_status, dict(TOKEN_THROTTLED_BODY)
        access = self._new_token()
        self.tokens[access] = IssuedToken(refresh, now + self.config.token_lifetime)
        active = self.active[refresh]
        active.append(access)
        while len(active) > self.config.max_active_tokens:
            self.tokens.pop(active.popleft(), None)
        self.tokens_issued += 1
        lifetime = self.config.token_lifetime
        return 200, {
            "access_token": access,
            "expires_in": int(lifetime) if float(lifetime).is_integer() else lifetime,
            "api_domain": self.config.api_domain or own_url,
            "token_type": "Bearer",
        }

    def revoke(self, token: str) -> Reply:
        if token in self.config.refresh_tokens:
            self.revoked.add(token)
            for access in self.active.pop(token, deque()):
                self.tokens.pop(access, None)
        else:
            self.tokens.pop(token, None)
        return 200, {"status": "success"}

    def expire_access_tokens(self) -> None:
        self.tokens.clear()
        self.active.clear()

    # --- the API gate ------------------------------------------------------------------------

    def _limit_reply(self, code: int, message: str) -> tuple[Reply, dict[str, str]]:
        headers = {}
        if self.config.limits.retry_after is not None:
            headers["Retry-After"] = f"{self.config.limits.retry_after:g}"
        return (429, {"code": code, "message": message}), headers

    def admit(
        self, authorization: str | None, organization: str | None, endpoint: str | None = None
    ) -> Admission:
        """Auth, org header, limits, then the fault dice; the caller must `release()` an accepted request."""
        now = time.monotonic()
        scheme, _, access = (authorization or "").partition(" ")
        issued = self.tokens.get(access) if scheme == "Zoho-oauthtoken" else None
        if issued is None or now >= issued.expires_at or issued.refresh_token in self.revoked:
            body = {
                "code": CODE_NOT_AUTHORIZED,
                "message": "You are not authorized to perform this operation",
            }
            return Admission(refusal=((401, body), {}))
        if organization != self.config.organization_id:
            message = f"This user is not associated with the CompanyID/CompanyName:{organization or ''}."
            return Admission(refusal=((400, {"code": CODE_BAD_ORGANIZATION, "message": message}), {}))
        limits, faults = self.config.limits, self.config.faults
        if faults.burst_429 > 0:
            faults.burst_429 -= 1
            return Admission(refusal=self._limit_reply(CODE_RATE_PER_MINUTE, MESSAGE_RATE_PER_MINUTE))
        if self.in_flight >= limits.concurrency:
            return Admission(refusal=self._limit_reply(CODE_CONCURRENCY, MESSAGE_CONCURRENCY))
        log = self.accepted_log
        while log and log[0] <= now - limits.window_seconds:
            log.popleft()
        if len(log) >= limits.per_window:
            return Admission(refusal=self._limit_reply(CODE_RATE_PER_MINUTE, MESSAGE_RATE_PER_MINUTE))
        today = dt.datetime.now(dt.UTC).date().isoformat()
        if self.daily[today] >= limits.daily:
            return Admission(refusal=self._limit_reply(CODE_RATE_PER_DAY, message_rate_per_day(limits.daily)))
        log.append(now)
        self.max_in_window = max(self.max_in_window, len(log))
        self.daily[today] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        for index, (target, fault) in enumerate(faults.once):
            if target == endpoint:
                del faults.once[index]
                self.faults_played[fault] += 1
                return Admission(fault=fault)
        writing = endpoint is not None and not endpoint.startswith("GET ")
        for fault in ("error_500", "error_503", "drop_request", "lost_response", "timeout", "applied_502"):
            probability = getattr(faults, fault)
            if fault == "applied_502" and not writing:
                continue  # a read has nothing to apply: its 502 would be error_503's
            if probability and self.rng.random() < probability:
                self.faults_played[fault] += 1
                return Admission(fault=fault)
        return Admission()

    def release(self) -> None:
        self.in_flight -= 1

    def count(self, endpoint: str, status: int | str) -> None:
        self.calls[(endpoint, str(status))] += 1

    # --- admin views ---------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        by_endpoint: dict[str, dict[str, int]] = defaultdict(dict)
        for (endpoint, status), n in self.calls.items():
            by_endpoint[endpoint][status] = n
        statuses: Counter[str] = Counter()
        for (_, status), n in self.calls.items():
            statuses[status] += n
        today = dt.datetime.now(dt.UTC).date().isoformat()
        return {
            "calls": {f"{e} {s}": n for (e, s), n in sorted(self.calls.items())},
            "by_endpoint": dict(by_endpoint),
            "by_status": dict(statuses),
            "requests": sum(self.calls.values()),
            "http_429": statuses.get("429", 0),
            "http_401": statuses.get("401", 0),
            "token_requests": self.token_requests,
            "tokens_issued": self.tokens_issued,
            "token_refusals": self.token_refusals,
            "faults_played": dict(self.faults_played),
            "calls_today": self.daily[today],
            "calls_in_window": len(self.accepted_log),
            "max_in_window": self.max_in_window,
            "max_in_flight": self.max_in_flight,
        }

    def state(self) -> dict[str, Any]:
        return {
            "customers": list(self.store.customers.values()),
            "invoices": list(self.store.invoices.values()),
            "items": list(self.store.items.values()),
            "payments": list(self.store.payments.values()),
            "config": self.config.public(),
        }

    def duplicates(self) -> dict[str, Any]:
        label = self.config.account_number_label
        by_account: dict[str, list[str]] = defaultdict(list)
        for customer in self.store.customers.values():
            for f in customer.get("custom_fields", []):
                if f["label"] == label and f.get("value") not in (None, ""):
                    by_account[str(f["value"])].append(customer["customer_id"])
        by_number: dict[str, list[str]] = defaultdict(list)
        for invoice in self.store.invoices.values():
            by_number[invoice["invoice_number"]].append(invoice["invoice_id"])
        by_reference: dict[str, list[str]] = defaultdict(list)
        for payment in self.store.payments.values():
            if payment.get("reference_number"):
                by_reference[payment["reference_number"]].append(payment["payment_id"])
        return {
            "field": custom_field_filter(label),
            "customers_by_account_number": {k: v for k, v in by_account.items() if len(v) > 1},
            "invoices_by_number": {k: v for k, v in by_number.items() if len(v) > 1},
            "payments_by_reference": {k: v for k, v in by_reference.items() if len(v) > 1},
        }
