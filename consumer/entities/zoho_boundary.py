"""Where the Zoho client's errors become the pipeline's (`consumer.model.call_errors`), once.

An entity's calls speak the client's language inside (a `NotFound` makes a customer be created again);
what leaves them for the pipeline (the applier, adoption) passes through `as_call_errors`, which maps
each client family to the pipeline's and keeps the text, class name, attempts and HTTP status its dead
letter records. Errors that are no Zoho client's (the pipeline's own, the database's) pass unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from connectors.zoho import errors
from consumer.model.call_errors import (
    CallError,
    CredentialsRejected,
    InDoubt,
    NotInZoho,
    Refused,
    Unavailable,
)


@contextmanager
def as_call_errors() -> Iterator[None]:
    """Run the block with every Zoho client error raised as its `CallError` (chained to the original)."""
    try:
        yield
    except errors.ZohoError as exc:
        raise mapped(exc) from exc


#: Each client family and the pipeline's, the first that matches wins (as httpx's `HTTPCORE_EXC_MAP`);
#: anything else the client raises (transient, rate-limited, the daily budget) it retried until it gave up.
FAMILIES: tuple[tuple[type[errors.ZohoError], type[CallError]], ...] = (
    (errors.AuthError, CredentialsRejected),
    (errors.NotFound, NotInZoho),
    (errors.PermanentError, Refused),
    (errors.InDoubt, InDoubt),
)


def mapped(exc: errors.ZohoError) -> CallError:
    """The pipeline's error for a client's, keeping what its dead letter and sync-log row record."""
    family = next((ours for theirs, ours in FAMILIES if isinstance(exc, theirs)), Unavailable)
    return family(
        str(exc),
        exception_class=type(exc).__name__,
        code=exc.code,
        http_status=exc.http_status,
        attempts=exc.attempts,
    )
