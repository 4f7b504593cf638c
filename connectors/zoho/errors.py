"""Every failure the Zoho client can raise, as one hierarchy grouped by what the caller should do.

Callers (and `retry.py`) catch a family, never a list: `TransientError` may be retried, `InDoubt` is
settled by reading Zoho before anything is sent again, `RateLimited` waits and retries, `AuthError` stops
the consumer, `PermanentError` is recorded and never retried. Which family a failure belongs to is
decided once, by the transport, from the reply and from whether the request may be sent twice.
Messages carry Zoho's `code`/`message` only: tokens and secrets never appear in them.

    ZohoError
    ├── TransientError              Zoho answered that it failed (a JSON envelope), the request never
    │                               left, or an idempotent request (GET, PUT, DELETE) lost its reply
    ├── InDoubt                     a write that must not be sent twice went out, and its reply does not
    │   │                           say what Zoho did: read Zoho before any retry
    │   ├── ResponseLost            no reply arrived (a timeout, a connection reset after sending)
    │   └── ReplyUnreadable         a reply that is no Zoho envelope (a gateway's HTML 5xx, a 2xx without
    │                               `code`)
    ├── RateLimited                 HTTP 429 or codes 44 / 1070
    │   └── DailyBudgetExhausted    code 45: the organisation's daily call budget is spent
    ├── AuthError                   OAuth refused: bad client id or secret
    │   ├── AccessTokenRejected     HTTP 401: the API refused the access token
    │   └── RefreshTokenRevoked     the refresh token no longer works
    └── PermanentError              a request Zoho will never accept as sent
        ├── NotFound                code 1002 / HTTP 404
        ├── Duplicate               code 1001 / 3062: the thing already exists
        ├── NotOurs                 a record found by natural key belongs to another source row
        └── ValidationFailed        any other 4xx with a non-zero code
"""

from __future__ import annotations


class ZohoError(Exception):
    """Base class of every error raised by the Zoho client."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        attempts: int = 0,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        self.attempts = attempts

    def __str__(self) -> str:
        parts = [self.message]
        if self.code is not None:
            parts.append(f"code={self.code}")
        if self.http_status is not None:
            parts.append(f"http={self.http_status}")
        if self.attempts:
            parts.append(f"attempts={self.attempts}")
        return parts[0] if len(parts) == 1 else f"{parts[0]} ({', '.join(parts[1:])})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class TransientError(ZohoError):
    """Raised for a failure that may pass on its own and is safe to send again: Zoho's own 5xx envelope,
    a connection that never carried the request, an idempotent request whose reply was lost."""


class InDoubt(ZohoError):
    """Raised when a non-idempotent write (a create, a payment, a status call) went out and its reply does
    not say whether Zoho applied it. Never retried as it is: the caller reads what Zoho holds first."""


class ResponseLost(InDoubt):
    """Raised when the request was sent but no reply arrived, so Zoho may or may not have applied it."""


class ReplyUnreadable(InDoubt):
    """Raised when a reply is no Zoho JSON envelope (a gateway's HTML error page, a 2xx without `code`):
    it comes from something in front of Zoho, which may have answered after Zoho did the work."""


class RateLimited(ZohoError):
    """Raised on HTTP 429 or codes 44 (per minute) and 1070 (concurrency); code 45 raises its subclass."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class DailyBudgetExhausted(RateLimited):
    """Raised when the organisation's daily call budget is spent (Zoho code 45) and waiting is not allowed."""

    def __init__(self, message: str, *, resets_at: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.resets_at = resets_at


class AuthError(ZohoError):
    """Raised when Zoho refuses the credentials: a bad client id or secret, or a refused token refresh."""


class AccessTokenRejected(AuthError):
    """Raised on HTTP 401: the API refused the access token (the client refreshes it and tries once more)."""


class RefreshTokenRevoked(AuthError):
    """Raised when the token endpoint answers `invalid_code`: the refresh token is revoked or wrong."""


class PermanentError(ZohoError):
    """Raised for a request Zoho will never accept as sent; retrying cannot help."""


class NotFound(PermanentError):
    """Raised when the customer or invoice does not exist (code 1002 or HTTP 404)."""


class Duplicate(PermanentError):
    """Raised when the record already exists (code 1001, or 3062 for a customer display name)."""


class NotOurs(PermanentError):
    """Raised when a natural-key lookup finds a Zoho record that belongs to another source row."""


class ValidationFailed(PermanentError):
    """Raised when Zoho rejects the payload (any other 4xx with a non-zero code)."""


REFRESH_TOKEN_REVOKED_SENTENCE = (
    "Zoho refused the refresh token (invalid_code): it was revoked or is wrong; "
    "create a new one and set ZOHO_REFRESH_TOKEN, then restart."
)
