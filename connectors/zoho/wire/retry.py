"""The retry policy: decides by error family only, never by message text.

Transient errors and rate limits are retried with exponential backoff and full jitter, within
`max_attempts` and `max_seconds`; permanent and auth errors never are, nor is a write in doubt
(`InDoubt`): the caller reads what Zoho holds and settles from that before anything is sent again.
Waits for the daily budget and for a slot of the rate window are not charged to `max_seconds` (the budget
and the window decide how long those take).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from connectors.zoho import errors
from connectors.zoho.wire.protocol import CODE_RATE_PER_MINUTE


@dataclass
class RetryPolicy:
    # no defaults: they are the service's settings, passed in through `ZohoConfig`
    max_attempts: int
    max_seconds: float
    base_seconds: float
    cap_seconds: float
    rng: random.Random = field(default_factory=random.Random)

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]."""
        return self.rng.uniform(0, min(self.cap_seconds, self.base_seconds * 2 ** max(0, attempt - 1)))

    def delay(self, error: errors.ZohoError, attempt: int, elapsed: float) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to give up and raise `error`."""
        if attempt >= self.max_attempts:
            return None
        if isinstance(error, errors.DailyBudgetExhausted):
            return 0.0  # the daily budget makes the next attempt wait for the new day
        if isinstance(error, errors.RateLimited):
            if error.code == CODE_RATE_PER_MINUTE or error.retry_after is not None:
                wait = 0.0  # the pacer has paused every caller; waiting here too would double it
            else:
                wait = self.backoff(attempt)
        elif isinstance(error, errors.TransientError):
            wait = self.backoff(attempt)
        else:
            return None
        if elapsed + wait > self.max_seconds:
            return None
        return wait
