"""The operator's verdict at a glance: green, amber or red, with the reasons, from plain facts.

`History` keeps the last hour of samples (lag, DLQ depth, cumulative Zoho calls) taken by the status
server; `assess` is a pure function of those samples and the current `HealthFacts`, so every rule is
table-tested without Kafka, PostgreSQL or Zoho. Red means nothing is syncing; amber means it syncs but
something needs a look.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from consumer.model.outcomes import SyncOutcome

HISTORY_SECONDS = 3600.0
LAG_TREND_SECONDS = 300.0  # lag rising through this whole span counts as "growing"
DLQ_TREND_SECONDS = 900.0
MIN_TREND_SAMPLES = 3

Level = Literal["green", "amber", "red"]
_RANK: dict[Level, int] = {"green": 0, "amber": 1, "red": 2}


@dataclass(frozen=True)
class Sample:
    """One look at the service: unix time, total lag, DLQ depth (None when Kafka did not answer) and
    the Zoho client's cumulative call count."""

    at: float
    lag: int | None
    dlq_depth: int | None
    zoho_calls: int


@dataclass
class History:
    """Samples of the last hour, oldest first."""

    span_seconds: float = HISTORY_SECONDS
    samples: deque[Sample] = field(default_factory=deque)

    def add(self, sample: Sample) -> None:
        if self.samples and sample.at < self.samples[-1].at:
            return  # clocks only move forward here
        self.samples.append(sample)
        while self.samples and self.samples[0].at < sample.at - self.span_seconds:
            self.samples.popleft()

    def since(self, start: float) -> list[Sample]:
        return [s for s in self.samples if s.at >= start]

    def calls_per_minute(self, now: float) -> list[tuple[float, int]]:
        """Zoho calls in each whole minute of the last hour: (minute start, calls), oldest first.

        Calls between two samples are counted in the minute of the later one; the first sample's
        count (calls since the process started) goes to its own minute.
        """
        first_minute = (now // 60) * 60 - (self.span_seconds - 60)
        buckets = {first_minute + 60 * i: 0 for i in range(int(self.span_seconds // 60))}
        previous = 0
        for s in self.samples:
            minute = (s.at // 60) * 60
            if minute in buckets:
                buckets[minute] += max(s.zoho_calls - previous, 0)
            previous = s.zoho_calls
        return sorted(buckets.items())


@dataclass(frozen=True)
class HealthFacts:
    """What is true right now, besides the sampled history."""

    kafka_reachable: bool = True
    slot_name: str = ""
    slot_active: bool | None = None  # None: no such slot in this database
    token_refused: str | None = None  # Zoho refused our credentials (the message)
    token_throttled: bool = False  # token requests refused as too many; backing off
    daily_paused_until: str | None = None
    limiter_paused_seconds: float = 0.0
    slot_retained_bytes: int | None = None  # WAL PostgreSQL keeps for the slot
    slot_warn_bytes: int = 1 << 30
    outcomes_last_hour: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Health:
    level: Level
    reasons: tuple[str, ...]

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "syncing normally"

    def as_dict(self) -> dict[str, object]:
        return {"level": self.level, "reasons": list(self.reasons), "summary": self.summary}


#: Stale outcomes in an hour, with nothing applied, that mean a restore rather than a few replays.
MOVED_BACK_MIN_STALE = 10


def moved_back(outcomes: dict[str, int]) -> bool:
    """Every recent event older (by LSN) than what was applied, and none applied: after a restore into a
    new cluster LSNs restart lower, so every change would be skipped as stale, silently."""
    applied = outcomes.get(SyncOutcome.SYNCED, 0) + outcomes.get(SyncOutcome.UNCHANGED, 0)
    return outcomes.get(SyncOutcome.STALE, 0) >= MOVED_BACK_MIN_STALE and applied == 0


def _growing(values: list[int]) -> bool:
    """Never falling and higher at the end than at the start."""
    return (
        len(values) >= MIN_TREND_SAMPLES
        and all(b >= a for a, b in zip(values, values[1:], strict=False))
        and values[-1] > values[0]
    )


Finding = tuple[Level, str]


def assess(samples: list[Sample], facts: HealthFacts, now: float) -> Health:
    """The worst level found and every reason, worst first (in the order the rules are listed)."""
    found = [finding for rule in _FACT_RULES if (finding := rule(facts)) is not None]
    found += [finding for trend in _TREND_RULES if (finding := trend(samples, now)) is not None]
    level: Level = max((lvl for lvl, _ in found), key=_RANK.__getitem__, default="green")
    ordered = sorted(found, key=lambda f: -_RANK[f[0]])
    return Health(level, tuple(reason for _, reason in ordered))


def _token_refused(facts: HealthFacts) -> Finding | None:
    if not facts.token_refused:
        return None
    return ("red", f"Zoho refused the token: set ZOHO_REFRESH_TOKEN ({facts.token_refused})")


def _slot_not_streaming(facts: HealthFacts) -> Finding | None:
    if facts.slot_active is None:
        return ("red", f"replication slot {facts.slot_name!r} does not exist: Debezium is not capturing")
    if not facts.slot_active:
        return ("red", f"replication slot {facts.slot_name!r} is inactive: relay or connector stopped")
    return None


def _slot_retains_much(facts: HealthFacts) -> Finding | None:
    retained = facts.slot_retained_bytes
    if retained is None or retained <= facts.slot_warn_bytes:
        return None
    mib = retained / 2**20
    reason = f"replication slot {facts.slot_name!r} retains {mib:.0f} MiB of WAL (over SLOT_WAL_WARN_BYTES)"
    return ("amber", reason + ": PostgreSQL cannot free it until Debezium reads on")


def _positions_moved_back(facts: HealthFacts) -> Finding | None:
    if not moved_back(facts.outcomes_last_hour):
        return None
    stale = facts.outcomes_last_hour[SyncOutcome.STALE]
    reason = f"source positions moved backwards for every entity ({stale} stale in the last hour, none"
    return ("red", reason + " applied): was the database restored? run `zoho-cdc backfill --resync`")


def _kafka_unreachable(facts: HealthFacts) -> Finding | None:
    return None if facts.kafka_reachable else ("red", "Kafka does not answer: lag and DLQ unknown")


def _daily_budget_spent(facts: HealthFacts) -> Finding | None:
    if not facts.daily_paused_until:
        return None
    return ("red", f"daily Zoho budget spent: paused until {facts.daily_paused_until}")


def _rate_limited(facts: HealthFacts) -> Finding | None:
    if not facts.limiter_paused_seconds > 0:
        return None
    return ("amber", f"Zoho rate limit hit (429): paused {facts.limiter_paused_seconds:.0f} s")


def _token_throttled(facts: HealthFacts) -> Finding | None:
    if not facts.token_throttled:
        return None
    return ("amber", "Zoho refused token requests as too many: backing off")


def _lag_growing(samples: list[Sample], now: float) -> Finding | None:
    lags = [s.lag for s in samples if s.at >= now - LAG_TREND_SECONDS and s.lag is not None]
    if not _growing(lags):
        return None
    return ("amber", f"lag growing: {lags[0]} → {lags[-1]} records in {LAG_TREND_SECONDS / 60:.0f} min")


def _dlq_growing(samples: list[Sample], now: float) -> Finding | None:
    depths = [s.dlq_depth for s in samples if s.at >= now - DLQ_TREND_SECONDS and s.dlq_depth is not None]
    if len(depths) < 2 or depths[-1] <= depths[0]:
        return None
    return ("amber", f"DLQ growing: +{depths[-1] - depths[0]} in {DLQ_TREND_SECONDS / 60:.0f} min")


#: The rules over what is true now, then those over the sampled history, in the order reasons are listed.
_FACT_RULES = (
    _token_refused,
    _slot_not_streaming,
    _slot_retains_much,
    _positions_moved_back,
    _kafka_unreachable,
    _daily_budget_spent,
    _rate_limited,
    _token_throttled,
)
_TREND_RULES = (_lag_growing, _dlq_growing)
