"""The simulator's gatekeeping, as Zoho does it: OAuth tokens, org header, limits, and injected faults.

Rate semantics: an API request is *accepted* when it passes auth and every limit; the per-window limit
counts accepted requests in any sliding window of `window_seconds` (the strictest reading of "per
minute"), the daily limit counts them per UTC day, the concurrency limit counts accepted requests
still being handled. Refused (429) requests do not count. Tokens are the accounts server's (`accounts`).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from connectors import clock
from connectors.zoho.config import custom_field_filter
from connectors.zoho.wire.protocol import (
    CODE_BAD_ORGANIZATION,
    CODE_CONCURRENCY,
    CODE_NOT_AUTHORIZED,
    CODE_RATE_PER_DAY,
    CODE_RATE_PER_MINUTE,
    MESSAGE_CONCURRENCY,
    MESSAGE_RATE_PER_MINUTE,
    message_rate_per_day,
)
from connectors.zoho_sim.accounts import Accounts
from connectors.zoho_sim.config import SimConfig
from connectors.zoho_sim.envelopes import Reply
from connectors.zoho_sim.organisations import Organisation, organisation_ids
from connectors.zoho_sim.others import load_records
from connectors.zoho_sim.resources.customers import Customers
from connectors.zoho_sim.resources.invoices import Invoices
from connectors.zoho_sim.resources.items import Items
from connectors.zoho_sim.resources.payments import Payments
from connectors.zoho_sim.store import RecordStore

NOT_AUTHORIZED: Reply = (
    401,
    {"code": CODE_NOT_AUTHORIZED, "message": "You are not authorized to perform this operation"},
)


@dataclass
class Admission:
    """The outcome of the gate: a refusal to send as is, or the fault to play on an accepted request,
    and the organisation whose records and counters the request uses."""

    organisation: Organisation
    refusal: tuple[Reply, dict[str, str]] | None = None
    # None | "error_500" | "error_503" | "drop_request" | "lost_response" | "timeout" | "applied_502"
    fault: str | None = None


#: The faults `SimFaults` gives a probability, in the order the dice are cast.
_DICE_FAULTS = ("error_500", "error_503", "drop_request", "lost_response", "timeout", "applied_502")


def _accept(org: Organisation, now: float, today: str) -> None:
    """Count an accepted request against the organisation's window, day and calls in flight."""
    log = org.accepted_log
    log.append(now)
    org.max_in_window = max(org.max_in_window, len(log))
    org.daily[today] += 1
    org.accepted += 1
    org.last_accepted_at = now
    org.in_flight += 1
    org.max_in_flight = max(org.max_in_flight, org.in_flight)


class Simulator:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.orgs: dict[str, Organisation] = {}
        self.accounts = Accounts(config)

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
        self.accounts.reset_counters()
        for org in self.orgs.values():
            org.reset_counters()

    def reset(self) -> None:
        for org in self.orgs.values():
            org.store.wipe()
        self.reset_counters()

    def close(self) -> None:
        for org in self.orgs.values():
            org.store.close()

    # --- the API gate ------------------------------------------------------------------------

    def _limit_reply(self, code: int, message: str) -> tuple[Reply, dict[str, str]]:
        headers = {}
        if self.config.limits.retry_after is not None:
            headers["Retry-After"] = f"{self.config.limits.retry_after:g}"
        return (429, {"code": code, "message": message}), headers

    def admit(
        self, authorization: str | None, organization: str | None, endpoint: str | None = None
    ) -> Admission:
        """Auth, org header, limits (the organisation's), then the fault dice; the caller must
        `release()` the organisation of an accepted request. A request refused before its organisation
        is known (no token, an organisation this user does not belong to) counts in the default one."""
        now = clock.monotonic()
        org = self.organisation(organization) if organization else None
        if not self.accounts.authenticated(authorization, now):
            return Admission(org or self.default, refusal=((NOT_AUTHORIZED[0], dict(NOT_AUTHORIZED[1])), {}))
        if org is None:
            message = f"This user is not associated with the CompanyID/CompanyName:{organization or ''}."
            refusal = ((400, {"code": CODE_BAD_ORGANIZATION, "message": message}), {})
            return Admission(self.default, refusal=refusal)
        today = clock.utc_now().date().isoformat()
        refusal = self._over_a_limit(org, now, today)
        if refusal is not None:
            return Admission(org, refusal=refusal)
        _accept(org, now, today)
        return Admission(org, fault=self._fault_once(org, endpoint) or self._fault_by_dice(org, endpoint))

    def _over_a_limit(self, org: Organisation, now: float, today: str) -> tuple[Reply, dict[str, str]] | None:
        """The 429 of the first limit this request would break (a burst played first), or None."""
        limits, faults = self.config.limits, self.config.faults
        if faults.burst_429 > 0:
            faults.burst_429 -= 1
            org.refusals["burst"] += 1
            return self._limit_reply(CODE_RATE_PER_MINUTE, MESSAGE_RATE_PER_MINUTE)
        if org.in_flight >= limits.concurrency:
            org.refusals["concurrency"] += 1
            return self._limit_reply(CODE_CONCURRENCY, MESSAGE_CONCURRENCY)
        log = org.accepted_log
        while log and log[0] <= now - limits.window_seconds:
            log.popleft()
        if len(log) >= limits.per_window:
            org.refusals["window"] += 1
            return self._limit_reply(CODE_RATE_PER_MINUTE, MESSAGE_RATE_PER_MINUTE)
        if org.daily[today] >= limits.daily:
            org.refusals["daily"] += 1
            return self._limit_reply(CODE_RATE_PER_DAY, message_rate_per_day(limits.daily))
        return None

    def _fault_once(self, org: Organisation, endpoint: str | None) -> str | None:
        """The first fault queued for this endpoint (`SimFaults.once`), taken off the queue."""
        once = self.config.faults.once
        for index, (target, fault) in enumerate(once):
            if target == endpoint:
                del once[index]
                org.faults_played[fault] += 1
                return fault
        return None

    def _fault_by_dice(self, org: Organisation, endpoint: str | None) -> str | None:
        """A fault drawn by its probability, in a fixed order (the seeded dice repeat a run)."""
        writing = endpoint is not None and not endpoint.startswith("GET ")
        for fault in _DICE_FAULTS:
            probability = getattr(self.config.faults, fault)
            if fault == "applied_502" and not writing:
                continue  # a read has nothing to apply: its 502 would be error_503's
            if probability and self.rng.random() < probability:
                org.faults_played[fault] += 1
                return fault
        return None

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
        today = clock.utc_now().date().isoformat()
        return {
            "organization_id": org.organization_id,
            "calls": {f"{e} {s}": n for (e, s), n in sorted(org.calls.items())},
            "by_endpoint": dict(by_endpoint),
            "by_status": dict(statuses),
            "requests": sum(org.calls.values()),
            "http_429": statuses.get("429", 0),
            "http_401": statuses.get("401", 0),
            "token_requests": self.accounts.token_requests,
            "tokens_issued": self.accounts.tokens_issued,
            "token_refusals": self.accounts.token_refusals,
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
