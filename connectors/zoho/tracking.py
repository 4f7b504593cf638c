"""Who spent which calls: a per-task tracker for the sync log and client-wide counters for metrics.

`tracking()` binds a tracker to the current asyncio context, so many concurrent tasks each see only
their own attempts; every attempt is also added to the client-wide `ClientMetrics`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CallRecord:
    """One HTTP attempt: endpoint template, HTTP status (None when no reply), Zoho code and duration."""

    endpoint: str
    http_status: int | None
    code: int | None
    seconds: float
    error: str | None = None


@dataclass
class CallTracker:
    """The attempts made inside one `client.tracking()` block."""

    calls: list[CallRecord] = field(default_factory=list)
    budget_wait_seconds: float = 0.0

    @property
    def attempts(self) -> int:
        return len(self.calls)

    @property
    def http_status(self) -> int | None:
        """Status of the last attempt that got a reply."""
        for call in reversed(self.calls):
            if call.http_status is not None:
                return call.http_status
        return None


_active: ContextVar[tuple[CallTracker, ...]] = ContextVar("zoho_call_trackers", default=())


@contextmanager
def tracking() -> Iterator[CallTracker]:
    """Count the attempts made by this task (nested blocks each see their own and their children's)."""
    tracker = CallTracker()
    token = _active.set((*_active.get(), tracker))
    try:
        yield tracker
    finally:
        _active.reset(token)


def record(call: CallRecord) -> None:
    for tracker in _active.get():
        tracker.calls.append(call)


def record_budget_wait(seconds: float) -> None:
    for tracker in _active.get():
        tracker.budget_wait_seconds += seconds


@dataclass
class ClientMetrics:
    """Client-wide counters, read by the metrics endpoint."""

    calls: Counter = field(default_factory=Counter)  # (endpoint, status or "no-reply") -> count
    http_429: int = 0
    token_requests: int = 0
    token_refreshes: int = 0
    token_refusals: int = 0
    limiter_wait_seconds: float = 0.0
    daily_wait_seconds: float = 0.0
    retries: int = 0

    def count(self, call: CallRecord) -> None:
        self.calls[(call.endpoint, call.http_status if call.http_status is not None else "no-reply")] += 1
        if call.http_status == 429:
            self.http_429 += 1

    def snapshot(self) -> dict[str, object]:
        return {
            "calls": {f"{ep} {status}": n for (ep, status), n in sorted(self.calls.items(), key=str)},
            "http_429": self.http_429,
            "token_requests": self.token_requests,
            "token_refreshes": self.token_refreshes,
            "token_refusals": self.token_refusals,
            "limiter_wait_seconds": round(self.limiter_wait_seconds, 3),
            "daily_wait_seconds": round(self.daily_wait_seconds, 3),
            "retries": self.retries,
        }
