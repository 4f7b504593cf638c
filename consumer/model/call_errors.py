"""How a planned Zoho call can end other than applied, in the pipeline's own terms, grouped by what follows.

The Zoho client's errors become these once, at `consumer.entities.zoho_boundary` (as httpx maps
httpcore's at its transport): the pipeline catches these families, never a connector's class. A mapped
error keeps what its dead letter and sync-log row record: the client's text, class, attempts, HTTP status.
"""

from __future__ import annotations

from typing import ClassVar


class CallError(Exception):
    """Base of every way a planned Zoho call ends other than applied as planned.

    CallError
    ├── Refused                 Zoho will never accept the call as sent: dead-lettered `permanent`
    │   └── NotInZoho           the record the call names is not in Zoho
    ├── Unavailable             Zoho kept failing or limiting through all the client's retries: `exhausted`
    ├── InDoubt                 a write went out and its reply does not say what Zoho did: `exhausted`
    ├── CredentialsRejected     Zoho refused our credentials: the sync stops, no offset advances
    └── ZohoAhead               Zoho already shows a status zoho-cdc did not set: recorded `zoho_ahead`"""

    #: How a dead letter names the failure (`Refusal.kind`).
    kind: ClassVar[str] = "permanent"

    def __init__(
        self,
        message: str,
        *,
        exception_class: str | None = None,
        code: int | None = None,
        http_status: int | None = None,
        attempts: int = 0,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exception_class = exception_class or type(self).__name__
        self.code = code
        self.http_status = http_status
        self.attempts = attempts

    def __str__(self) -> str:
        return self.message


class Refused(CallError):
    """Raised when Zoho refuses the call as sent (a validation error, a record that is not ours, an ambiguous
    match): sending it again cannot help until the row or Zoho changes."""


class NotInZoho(Refused):
    """Raised when the record a call names is not in Zoho (deleted, or of another organisation)."""


class Unavailable(CallError):
    """Raised when Zoho kept failing (5xx, timeouts) or limiting us (429, the daily budget) through all the
    client's retries."""

    kind: ClassVar[str] = "exhausted"


class SyncedMeanwhile(Unavailable):
    """Raised instead of sending when another process synced the entity since the plan was made: a create
    found the record the entity map now shows, or a write found the map row moved on
    (`consumer.pipeline.effects.write_lease`): nothing (more) was sent. Its content is the other
    process's state, which may be newer than this plan's payload (a backfill's older event, a live sync's
    newer one): the change is decided again against the map as it is now (stale, unchanged or an update),
    never pushed over it. An `Unavailable`: a parent's sync uses the record the map shows."""


class InDoubt(CallError):
    """Raised when a write that must not be sent twice went out and its reply does not say whether Zoho
    applied it; its intent stays, so the next attempt reads Zoho before sending anything."""

    kind: ClassVar[str] = "exhausted"


class CredentialsRejected(CallError):
    """Raised when Zoho refuses our credentials (client id, secret, refresh or access token): every call
    would fail alike, so the sync stops."""


class ZohoAhead(CallError):
    """Raised by an entity's calls when Zoho's reply, or the read-back after a refusal, shows a status
    zoho-cdc did not set (an invoice paid in the portal, a customer made inactive by hand): the
    change is not sent, and the entity map takes Zoho's status.

    `content_sent`: Zoho accepted the plan's payload before the status showed (so its hash is what Zoho
    holds); `calls` is filled in by the applier with the calls the attempt made."""

    def __init__(self, zoho_id: str, status: str, reason: str, *, content_sent: bool = False) -> None:
        super().__init__(reason)
        self.zoho_id = zoho_id
        self.status = status
        self.reason = reason
        self.content_sent = content_sent
        self.calls = 0
