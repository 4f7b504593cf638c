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
from connectors.zoho.wire.protocol import (
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
from connectors.zoho_sim.grants import GrantCodes
from connectors.zoho_sim.invoices import Invoices
from connectors.zoho_sim.items import Items
from connectors.zoho_sim.organisations import Organisation, organisation_ids
from connectors.zoho_sim.others import load_records
from connectors.zoho_sim.payments import Payments
from connectors.zoho_sim.store import RecordStore

TOKEN_THROTTLED_BODY = {
    "error_description": MESSAGE_TOKEN_THROTTLED,
    "error": "Access Denied",
    "status": "failure",
}


NOT_AUTHORIZED: Reply = (
    401,
    {"code": CODE_NOT_AUTHORIZED, "message": "You are not authorized to perform this operation"},
)


@dataclass
class IssuedToken:
    refresh_token: str = field(repr=False)
    expires_at: float


@dataclass
class Admission:
    """The outcome of the gate: a refusal to send as is, or the fault to play on an accepted request,
    and the organisation whose records and counters the request uses."""

    organisation: Organisation
    refusal: tuple[Reply, dict[str, str]] | None = None
    # None | "error_500" | "error_503" | "drop_request" | "lost_response" | "timeout" | "applied_502"
    fault: str | None = None


class Simulator:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.orgs: dict[str, Organisation] = {}
        self.grants = GrantCodes(config)
        self.tokens: dict[str, IssuedToken] = {}
        self.active: dict[str, deque[str]] = defaultdict(deque)
        self.revoked: set[str] = set()
        self.token_log: dict[str, deque[float]] = defaultdict(deque)
        self.refusal_until = 0.0
        self.reset_counters()

    # --- organisations -----------------------------------------------------------------------

    def organisation(self, organization_id: str | None = None) -> Organisation | None:
        """The organisation of that id (the default one for None); None when the simulator does not
        serve it. Made on first use, so organisations added to the config later are served too."""
        wanted = self.config.organization_id if organization_id is None else organization_id
        if wanted not in organisation_ids(self.config):
            return None
        if wanted not in self.orgs:
            self.orgs[wanted] = Organisation(wanted, self.config, position=len(self.orgs))
        return self.orgs[wanted]

    @property
    def default(self) -> Organisation:
        """The organisation of `SimConfig.organization_id` (the only one unless others are configured)."""
        org = self.organisation()
        assert org is not None
        return org

    # The default organisation's records, as before there were several.
    @property
    def store(self) -> RecordStore:
        return self.default.store

    @property
    def customers(self) -> Customers:
        return self.default.customers

    @property
    def invoices(self) -> Invoices:
        return self.default.invoices

    @property
    def items(self) -> Items:
        return self.default.items

    @property
    def payments(self) -> Payments:
        return self.default.payments

    def reset_counters(self) -> None:
        self.token_requests = 0
        self.tokens_issued = 0
        self.token_refusals = 0
        for org in self.orgs.values():
            org.reset_counters()

    def reset(self) -> None:
        for org in self.orgs.values():
            org.store.wipe()
        self.reset_counters()

    def close(self) -> None:
        for org in self.orgs.values():
            org.store.close()

    # --- OAuth -------------------------------------------------------------------------------

    def _new_token(self) -> str:
        return f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"

    def token_request(self, params: dict[str, str], own_url: str) -> Reply:
        self.token_requests += 1
        now = time.monotonic()
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
        log = self.token_log[refresh]
        while log and log[0] <= now - self.config.token_refresh_window:
            log.popleft()
        over_limit = len(log) >= self.config.token_refresh_limit
        log.append(now)
        if over_limit or now < self.refusal_until:
            self.token_refusals += 1
            return self.config.token_throttle_status, dict(TOKEN_THROTTLED_BODY)
        return 200, self._issue(refresh, now, own_url)

    def _issue(self, refresh: str, now: float, own_url: str) -> dict[str, Any]:
        access = self._new_token()
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

    # --- the API gate ------------------------------------------------------------------------

    def _limit_reply(self, code: int, message: str) -> tuple[Reply, dict[str, str]]:
        headers = {}
        if self.config.limits.retry_after is not None:
            headers["Retry-After"] = f"{self.config.limits.retry_after:g}"
        return (429, {"code": code, "message": message}), headers

    def authenticated(self, authorization: str | None) -> bool:
        """Whether the `Authorization` header carries a live access token (the check `admit` starts with,
        for the one route that needs no organisation, GET /organizations)."""
        scheme, _, access = (authorization or "").partition(" ")
        issued = self.tokens.get(access) if scheme == "Zoho-oauthtoken" else None
        return not (
            issued is None or time.monotonic() >= issued.expires_at or issued.refresh_token in self.revoked
        )

    def admit(
        self, authorization: str | None, organization: str | None, endpoint: str | None = None
    ) -> Admission:
        """Auth, org header, limits (the organisation's), then the fault dice; the caller must
        `release()` the organisation of an accepted request. A request refused before its organisation
        is known (no token, an organisation this user does not belong to) counts in the default one."""
        now = time.monotonic()
        scheme, _, access = (authorization or "").partition(" ")
        issued = self.tokens.get(access) if scheme == "Zoho-oauthtoken" else None
        org = self.organisation(organization) if organization else None
        if issued is None or now >= issued.expires_at or issued.refresh_token in self.revoked:
            body = {
                "code": CODE_NOT_AUTHORIZED,
                "message": "You are not authorized to perform this operation",
            }
            return Admission(org or self.default, refusal=((401, body), {}))
        if org is None:
            message = f"This user is not associated with the CompanyID/CompanyName:{organization or ''}."
            refusal = ((400, {"code": CODE_BAD_ORGANIZATION, "message": message}), {})
            return Admission(self.default, refusal=refusal)
        limits, faults = self.config.limits, self.config.faults
        if faults.burst_429 > 0:
            faults.burst_429 -= 1
            return Admission(org, refusal=self._limit_reply(CODE_RATE_PER_MINUTE, MESSAGE_RATE_PER_MINUTE))
        if org.in_flight >= limits.concurrency:
            return Admission(org, refusal=self._limit_reply(CODE_CONCURRENCY, MESSAGE_CONCURRENCY))
        log = org.accepted_log
        while log and log[0] <= now - limits.window_seconds:
            log.popleft()
        if len(log) >= limits.per_window:
            return Admission(org, refusal=self._limit_reply(CODE_RATE_PER_MINUTE, MESSAGE_RATE_PER_MINUTE))
        today = dt.datetime.now(dt.UTC).date().isoformat()
        if org.daily[today] >= limits.daily:
            refusal = self._limit_reply(CODE_RATE_PER_DAY, message_rate_per_day(limits.daily))
            return Admission(org, refusal=refusal)
        log.append(now)
        org.max_in_window = max(org.max_in_window, len(log))
        org.daily[today] += 1
        org.in_flight += 1
        org.max_in_flight = max(org.max_in_flight, org.in_flight)
        for index, (target, fault) in enumerate(faults.once):
            if target == endpoint:
                del faults.once[index]
                org.faults_played[fault] += 1
                return Admission(org, fault=fault)
        writing = endpoint is not None and not endpoint.startswith("GET ")
        for fault in ("error_500", "error_503", "drop_request", "lost_response", "timeout", "applied_502"):
            probability = getattr(faults, fault)
            if fault == "applied_502" and not writing:
                continue  # a read has nothing to apply: its 502 would be error_503's
            if probability and self.rng.random() < probability:
                org.faults_played[fault] += 1
                return Admission(org, fault=fault)
        return Admission(org)

    # --- admin views (each of one organisation: the default one unless named) ------------------

    def served(self, organization_id: str | None = None) -> Organisation:
        """The organisation an admin view is about; KeyError for one the simulator does not serve."""
        org = self.organisation(organization_id)
        if org is None:
            raise KeyError(organization_id)
        return org

    def load_records_of_others(
        self, given: dict[str, Any], organization_id: str | None = None
    ) -> dict[str, list[str]]:
        """Customers and invoices made by someone else (`connectors.zoho_sim.others`), in one organisation
        (the default one unless named); no call counted."""
        return load_records(self.served(organization_id).store, given, self.config.currency_code)

    # --- what people do in Zoho, beside the API (admin routes: never counted as API calls) ----------

    def pay_in_portal(
        self, invoice_id: str, amount: float | None = None, organization_id: str | None = None
    ) -> Reply:
        """The customer pays an invoice in Zoho's customer portal: one payment through the same rules as
        `POST /payments` (open invoice, the customer's own, at most its balance); the whole balance by
        default."""
        org = self.served(organization_id)
        invoice = org.store.invoices.get(invoice_id)
        if invoice is None:
            return org.invoices.not_found()
        share = invoice["balance"] if amount is None else amount
        return org.payments.create(
            {
                "customer_id": invoice["customer_id"],
                "payment_mode": "creditcard",
                "amount": share,
                "description": "Paid in the customer portal",
                "invoices": [{"invoice_id": invoice_id, "amount_applied": share}],
            }
        )

    def mark_customer_by_hand(
        self, customer_id: str, status: str, organization_id: str | None = None
    ) -> Reply:
        """A person marks a customer active or inactive in Zoho's web app."""
        return self.served(organization_id).customers.set_status(customer_id, status)

    def stats(self, organization_id: str | None = None) -> dict[str, Any]:
        org = self.served(organization_id)
        by_endpoint: dict[str, dict[str, int]] = defaultdict(dict)
        for (endpoint, status), n in org.calls.items():
            by_endpoint[endpoint][status] = n
        statuses: Counter[str] = Counter()
        for (_, status), n in org.calls.items():
            statuses[status] += n
        today = dt.datetime.now(dt.UTC).date().isoformat()
        return {
            "organization_id": org.organization_id,
            "calls": {f"{e} {s}": n for (e, s), n in sorted(org.calls.items())},
            "by_endpoint": dict(by_endpoint),
            "by_status": dict(statuses),
            "requests": sum(org.calls.values()),
            "http_429": statuses.get("429", 0),
            "http_401": statuses.get("401", 0),
            "token_requests": self.token_requests,
            "tokens_issued": self.tokens_issued,
            "token_refusals": self.token_refusals,
            "faults_played": dict(org.faults_played),
            "calls_today": org.daily[today],
            "calls_in_window": len(org.accepted_log),
            "max_in_window": org.max_in_window,
            "max_in_flight": org.max_in_flight,
        }

    def state(self, organization_id: str | None = None) -> dict[str, Any]:
        store = self.served(organization_id).store
        return {
            "customers": list(store.customers.values()),
            "invoices": list(store.invoices.values()),
            "items": list(store.items.values()),
            "payments": list(store.payments.values()),
            "config": self.config.public(),
        }

    def duplicates(self, organization_id: str | None = None) -> dict[str, Any]:
        store = self.served(organization_id).store
        label = self.config.account_number_label
        by_account: dict[str, list[str]] = defaultdict(list)
        for customer in store.customers.values():
            for f in customer.get("custom_fields", []):
                if f["label"] == label and f.get("value") not in (None, ""):
                    by_account[str(f["value"])].append(customer["customer_id"])
        by_number: dict[str, list[str]] = defaultdict(list)
        for invoice in store.invoices.values():
            by_number[invoice["invoice_number"]].append(invoice["invoice_id"])
        by_reference: dict[str, list[str]] = defaultdict(list)
        for payment in store.payments.values():
            if payment.get("reference_number"):
                by_reference[payment["reference_number"]].append(payment["payment_id"])
        return {
            "field": custom_field_filter(label),
            "customers_by_account_number": {k: v for k, v in by_account.items() if len(v) > 1},
            "invoices_by_number": {k: v for k, v in by_number.items() if len(v) > 1},
            "payments_by_reference": {k: v for k, v in by_reference.items() if len(v) > 1},
        }
