"""Zoho Billing wire facts, defined once: header names, codes, and how a reply maps to an error.

Shared by the client and the simulator so both sides speak the same protocol
(see /work/shared/reference/zoho-billing-api.md, sections 2, 3 and 6).
"""

from __future__ import annotations

from typing import Any

from connectors.zoho import errors

ORG_HEADER = "X-com-zoho-subscriptions-organizationid"
AUTH_SCHEME = "Zoho-oauthtoken"
DEFAULT_API_BASE = "https://www.zohoapis.com/billing/v1"
API_PATH = "/billing/v1"
TOKEN_PATH = "/oauth/v2/token"

CODE_SUCCESS = 0
CODE_INTERNAL = 1000
CODE_ALREADY_EXISTS = 1001
CODE_NOT_FOUND = 1002
CODE_INVALID_VALUE = 2
CODE_INVALID_INPUT = 4
CODE_NOT_AUTHORIZED = 57
CODE_DUPLICATE_NAME = 3062
CODE_RATE_PER_MINUTE = 44
CODE_RATE_PER_DAY = 45
CODE_CONCURRENCY = 1070
CODE_BAD_ORGANIZATION = 6041
CODE_ITEM_NOT_FOUND = 2006

RATE_LIMIT_CODES = frozenset({CODE_RATE_PER_MINUTE, CODE_RATE_PER_DAY, CODE_CONCURRENCY})

MESSAGE_RATE_PER_MINUTE = (
    "For security reasons your organization has been blocked as it have exceeded the maximum number "
    "of requests per minute that can originate from an organization."
)
MESSAGE_CONCURRENCY = (
    "You have reached the maximum number of in process requests allowed. Kindly try again after some time."
)
MESSAGE_TOKEN_THROTTLED = "You have made too many requests continuously. Please try again after some time."


def message_rate_per_day(limit: int) -> str:
    return f"The API call for this organization has exceeded the maximum call rate limit of {limit:,}."


def retry_after_seconds(headers: Any) -> float | None:
    """The Retry-After header in seconds, if Zoho sent one (undocumented, so usually None)."""
    value = headers.get("retry-after") if headers is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_from_reply(http_status: int, body: Any, headers: Any = None) -> errors.ZohoError | None:
    """Map one API reply to an error, or None when it is a success (`code == 0`, whatever the status)."""
    code = body.get("code") if isinstance(body, dict) else None
    message = str(body.get("message", "")) if isinstance(body, dict) else ""
    if code == CODE_SUCCESS and http_status < 500:
        return None
    kwargs: dict[str, Any] = {"code": code, "http_status": http_status}
    if code is None and (http_status >= 500 or http_status < 400):
        # No Zoho envelope: a gateway's error page or a 2xx without `code`. Whatever answered sits in
        # front of Zoho and may have done so after Zoho applied the request, so it proves nothing.
        return errors.ReplyUnreadable(f"Zoho's reply was no Zoho envelope (HTTP {http_status})", **kwargs)
    message = message or f"Zoho answered HTTP {http_status} without a usable body"
    if code == CODE_RATE_PER_DAY:
        return errors.DailyBudgetExhausted(message, **kwargs)
    if http_status == 429 or code in RATE_LIMIT_CODES:
        return errors.RateLimited(message, retry_after=retry_after_seconds(headers), **kwargs)
    if http_status == 401:
        return errors.AccessTokenRejected(message, **kwargs)
    if code == CODE_INTERNAL and http_status < 500 and "already exist" in message:
        # Items answer a taken name with code 1000 (reference, "Added 2026-11-25"): a duplicate, not a fault.
        return errors.Duplicate(message, **kwargs)
    if http_status >= 500 or code == CODE_INTERNAL:
        return errors.TransientError(message, **kwargs)
    if code == CODE_NOT_FOUND or http_status == 404:
        return errors.NotFound(message, **kwargs)
    if code in (CODE_ALREADY_EXISTS, CODE_DUPLICATE_NAME):
        return errors.Duplicate(message, **kwargs)
    return errors.ValidationFailed(message, **kwargs)
