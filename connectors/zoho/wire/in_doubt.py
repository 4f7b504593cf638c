"""Whether a failed call may have been applied by Zoho, decided once for the whole client.

A write that must not be sent twice (every POST: creates, payments, status calls) whose reply is lost or
is no Zoho envelope raises `InDoubt`, which is never retried blindly: the caller reads what Zoho holds
first. An idempotent request (GET, PUT, DELETE) in the same case is a plain `TransientError`, retried as sent.
"""

from __future__ import annotations

import httpx

from connectors.zoho import errors

#: Failures before any byte of the request left: Zoho cannot have applied it.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
#: Requests Zoho applies the same however often they are sent; any other may not be sent twice blindly.
_IDEMPOTENT = frozenset({"GET", "PUT", "DELETE"})


def in_doubt_as_sent(error: errors.ZohoError, method: str) -> errors.ZohoError:
    """An in-doubt failure of an idempotent request is a plain transient one: sending it again is safe."""
    if isinstance(error, errors.InDoubt) and method in _IDEMPOTENT:
        return errors.TransientError(error.message, code=error.code, http_status=error.http_status)
    return error


def unanswered(exc: httpx.TransportError) -> type[errors.ZohoError]:
    """The family of a call that got no reply: lost after sending (in doubt), or never sent (transient)."""
    return errors.TransientError if isinstance(exc, _NOT_SENT) else errors.ResponseLost


def unanswered_error(exc: httpx.TransportError, method: str, endpoint: str) -> errors.ZohoError:
    """The error a call without a reply raises, in doubt only when it may have been applied."""
    kind = unanswered(exc)
    what = "could not reach Zoho" if kind is errors.TransientError else "no reply from Zoho"
    return in_doubt_as_sent(kind(f"{what} for {endpoint} ({type(exc).__name__})"), method)
