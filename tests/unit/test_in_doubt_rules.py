"""Which replies leave a write in doubt, and that the retry policy never resends one (issue 22, item 3).

Pure rules, checked over every HTTP status and body shape: a reply is in doubt exactly when it is no Zoho
envelope (no `code`) and not a plain 4xx refusal; an idempotent request is never in doubt (sending it
again is safe); the retry policy gives up on every in-doubt error, whatever the attempt or the time spent.
"""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from connectors.zoho import errors
from connectors.zoho.wire.in_doubt import in_doubt_as_sent
from connectors.zoho.wire.protocol import error_from_reply
from connectors.zoho.wire.retry import RetryPolicy

statuses = st.integers(200, 599)
codes = st.sampled_from([0, 2, 4, 44, 45, 57, 1000, 1001, 1002, 1070, 2006, 3062])
envelopes = st.builds(lambda code, message: {"code": code, "message": message}, codes, st.text(max_size=20))
not_envelopes = st.one_of(
    st.none(),  # an HTML page or any body that is not JSON
    st.lists(st.integers(), max_size=3),  # JSON, but not an object
    st.dictionaries(st.sampled_from(["invoice", "message", "error"]), st.text(max_size=5), max_size=2),
)


@given(status=statuses, body=not_envelopes)
def test_a_reply_without_an_envelope_is_in_doubt_unless_it_is_a_4xx(status, body):
    error = error_from_reply(status, body)
    assert error is not None  # never read as a success
    in_doubt = status >= 500 or status < 400
    assert isinstance(error, errors.InDoubt) == in_doubt, (status, body, error)


@given(status=statuses, body=envelopes)
def test_a_zoho_envelope_is_never_in_doubt(status, body):
    error = error_from_reply(status, body)
    assert not isinstance(error, errors.InDoubt)
    if status >= 500 and body["code"] not in (44, 45, 1070):
        assert isinstance(error, errors.TransientError)  # Zoho said it failed: a plain retry


@given(
    status=statuses,
    body=st.one_of(envelopes, not_envelopes),
    method=st.sampled_from(["GET", "PUT", "DELETE", "POST"]),
)
def test_only_a_post_stays_in_doubt(status, body, method):
    error = error_from_reply(status, body)
    if error is None:
        return
    decided = in_doubt_as_sent(error, method)
    assert isinstance(decided, errors.InDoubt) == (method == "POST" and isinstance(error, errors.InDoubt))
    if isinstance(error, errors.InDoubt) and method != "POST":
        assert type(decided) is errors.TransientError and decided.http_status == status


@given(
    kind=st.sampled_from([errors.ResponseLost, errors.ReplyUnreadable]),
    attempt=st.integers(1, 20),
    elapsed=st.floats(0, 1000),
)
def test_the_retry_policy_never_resends_a_write_in_doubt(kind, attempt, elapsed):
    policy = RetryPolicy(
        max_attempts=50, max_seconds=10_000, base_seconds=0.1, cap_seconds=5, rng=random.Random(0)
    )
    assert policy.delay(kind("in doubt", http_status=502), attempt, elapsed) is None
    assert policy.delay(errors.TransientError("failed", http_status=500), attempt, elapsed) is not None
