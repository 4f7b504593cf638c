"""The Zoho client's errors reach the pipeline mapped once; their dead letters record what they did before.

`as_call_errors` is the boundary (`consumer.entities.zoho_boundary`): every client family becomes one of the
pipeline's (`consumer.model.call_errors`), keeping its text, class name, attempts and HTTP status, so a
dead letter's kind, exception class and reason are those the client's error gave before the mapping.
"""

from __future__ import annotations

import pytest

from connectors.zoho import errors
from consumer.entities.zoho_boundary import as_call_errors
from consumer.model.call_errors import (
    CallError,
    CredentialsRejected,
    InDoubt,
    NotInZoho,
    Refused,
    Unavailable,
    ZohoAhead,
)
from consumer.pipeline.effects.dead_lettering import Refusal

FAMILIES = [
    (errors.TransientError, Unavailable),
    (errors.ZohoError, Unavailable),
    (errors.RateLimited, Unavailable),
    (errors.DailyBudgetExhausted, Unavailable),
    (errors.InDoubt, InDoubt),
    (errors.ResponseLost, InDoubt),
    (errors.ReplyUnreadable, InDoubt),
    (errors.AuthError, CredentialsRejected),
    (errors.AccessTokenRejected, CredentialsRejected),
    (errors.RefreshTokenRevoked, CredentialsRejected),
    (errors.PermanentError, Refused),
    (errors.ValidationFailed, Refused),
    (errors.Duplicate, Refused),
    (errors.NotOurs, Refused),
    (errors.NotFound, NotInZoho),
]


def _raised(exc: BaseException) -> BaseException:
    with pytest.raises(BaseException) as caught, as_call_errors():
        raise exc
    return caught.value


@pytest.mark.parametrize(("theirs", "ours"), FAMILIES)
def test_each_client_family_becomes_the_pipelines_keeping_what_its_dead_letter_records(theirs, ours):
    original = theirs("Invalid value passed for email", code=2, http_status=400, attempts=3)
    mapped = _raised(original)
    assert type(mapped) is ours and mapped.__cause__ is original
    assert isinstance(mapped, CallError)
    assert str(mapped) == str(original) == "Invalid value passed for email (code=2, http=400, attempts=3)"
    assert (mapped.exception_class, mapped.code, mapped.http_status, mapped.attempts) == (
        theirs.__name__,
        2,
        400,
        3,
    )


@pytest.mark.parametrize("theirs", [t for t, ours in FAMILIES if ours is not CredentialsRejected])
def test_a_mapped_refusal_is_dead_lettered_as_the_clients_error_was(theirs):
    """The rule before the mapping: `exhausted` for a client error that is no PermanentError, else
    `permanent`, named by the client's class, with its attempts and HTTP status."""
    original = theirs("Zoho said no", code=1000, http_status=503, attempts=8)
    before = Refusal(
        "create_customer: " + str(original),
        "permanent" if isinstance(original, errors.PermanentError) else "exhausted",
        theirs.__name__,
        attempts=8,
        http_status=503,
    )
    mapped = _raised(original)
    assert Refusal.of_error(f"create_customer: {mapped}", mapped) == before  # type: ignore[arg-type]


def test_errors_that_are_no_zoho_clients_pass_the_boundary_unchanged():
    for exc in (ValueError("no natural key"), OSError("database gone"), ZohoAhead("Z1", "paid", "ahead")):
        assert _raised(exc) is exc


def test_a_refusal_that_is_no_call_error_is_permanent_and_named_by_its_class():
    class ParentRefused(Exception):
        pass

    refusal = Refusal.of_error("its customer could not be synced", ParentRefused("refused before"))
    assert (refusal.kind, refusal.exc_class, refusal.attempts, refusal.http_status) == (
        "permanent",
        "ParentRefused",
        0,
        None,
    )
