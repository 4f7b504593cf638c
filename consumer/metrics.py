"""Prometheus metrics of one process, on a registry of its own (so tests can run several engines).

Counters mirror the sync log (outcomes) and the Zoho client (calls, 429s, token refreshes);
`/metrics` on the status server exposes them.
"""

from __future__ import annotations

from collections import Counter as _Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._events = Counter(
            "zoho_cdc_events_total", "Change events by sync outcome", ["outcome"], registry=self.registry
        )
        self._calls = Counter(
            "zoho_cdc_zoho_attempts_total", "Zoho API attempts made", registry=self.registry
        )
        self._latency = Histogram(
            "zoho_cdc_end_to_end_seconds",
            "Source commit (source.ts_ms) to Zoho reply",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.lag = Gauge(
            "zoho_cdc_lag_records",
            "Records behind the end offset",
            ["topic", "partition"],
            registry=self.registry,
        )
        self.in_flight = Gauge("zoho_cdc_in_flight_records", "Records held in memory", registry=self.registry)
        self.tally: _Tally[str] = _Tally()
        self.attempts = 0

    def outcome(self, name: str, count: int = 1) -> None:
        if count:
            self._events.labels(outcome=name).inc(count)
            self.tally[name] += count

    def zoho_calls(self, count: int) -> None:
        if count:
            self._calls.inc(count)
            self.attempts += count

    def latency(self, seconds: float) -> None:
        self._latency.observe(max(seconds, 0.0))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
