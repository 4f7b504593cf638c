"""Prometheus metrics of one process, on a registry of its own (so tests can run several engines).

Counters mirror the sync log (outcomes) and the Zoho client (calls, 429s, token refreshes);
`/metrics` on the status server exposes them.
"""

from __future__ import annotations

from collections import Counter as _Tally
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from consumer.model.outcomes import SyncOutcome

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
        self._already_applied = Counter(
            "zoho_cdc_replay_already_applied_total",
            "Replayed records recorded unchanged by their replay memo, without decoding or planning",
            registry=self.registry,
        )
        self._zoho_ahead = Counter(
            "zoho_cdc_zoho_ahead_total",
            "Entities found changed in Zoho on its own (paid in the portal, voided or made inactive by hand)",
            ["entity"],
            registry=self.registry,
        )
        for entity in ("customer", "invoice"):  # exported at 0 from the start, so a rule sees a series
            self._zoho_ahead.labels(entity=entity)
        self._latency = Histogram(
            "zoho_cdc_end_to_end_seconds",
            "Source commit (source.ts_ms) to Zoho reply",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.lag = self._gauge("zoho_cdc_lag_records", "Records behind the end offset", "topic", "partition")
        self.in_flight = self._gauge("zoho_cdc_in_flight_records", "Records held in memory")
        self.group_members = self._gauge("zoho_cdc_group_members", "Live members of the consumer group")
        self.member_partitions = self._gauge(
            "zoho_cdc_group_member_partitions",
            "Partitions held by each member of the consumer group",
            "instance",
        )
        self.org_window_calls = self._gauge(
            "zoho_cdc_zoho_org_window_calls",
            "Calls of the organisation's current rate window, all processes together",
        )
        self.org_rate = self._gauge(
            "zoho_cdc_zoho_org_rate_per_window",
            "The organisation's current (adaptive) calls per window, shared by every process",
        )
        self.org_processes = self._gauge(
            "zoho_cdc_zoho_org_processes", "Processes holding a lease on the organisation's window"
        )
        # Set at scrape time by the status server (read from Kafka, PostgreSQL and the Zoho client).
        self.dlq_depth = self._gauge("zoho_cdc_dlq_depth", "Records in the dead-letter topic")
        self.daily_calls = self._gauge("zoho_cdc_zoho_daily_calls", "Zoho calls spent this UTC day")
        self.daily_limit = self._gauge(
            "zoho_cdc_zoho_daily_limit", "Zoho calls allowed per UTC day (ZOHO_DAILY_LIMIT)"
        )
        self.rate_limit = self._gauge(
            "zoho_cdc_zoho_rate_limit_per_minute",
            "Zoho calls allowed per minute (ZOHO_RATE_PER_MINUTE over ZOHO_RATE_WINDOW_SECONDS)",
        )
        self.zoho_ahead_entities = self._gauge(
            "zoho_cdc_zoho_ahead_entities",
            "Entities Zoho is ahead of now (entity map), by entity type: their source changes are not sent",
            "entity",
        )
        self.slot_active = self._gauge(
            "zoho_cdc_replication_slot_active",
            "1 while Debezium's replication slot is streaming, 0 when inactive or missing",
        )
        self.tally: _Tally[str] = _Tally()
        self._outcome_children: dict[str, Any] = {}
        self.attempts = 0
        self.already_applied = 0
        self._watched: set[int] = set()

    def _gauge(self, name: str, documentation: str, *labels: str) -> Gauge:
        """A gauge on this process's registry, set when it is read or at scrape time."""
        return Gauge(name, documentation, list(labels), registry=self.registry)

    def watch_client(self, client: Any) -> None:
        """Expose the Zoho client's own counters (calls by status, 429s, tokens, limiter wait) here.

        Idempotent per client; clients without `metrics` (test doubles, dry runs) are ignored.
        """
        if getattr(client, "metrics", None) is None or id(client) in self._watched:
            return
        self._watched.add(id(client))
        self.registry.register(ZohoClientCollector(client))

    def group_and_window(self, members: list[dict[str, Any]], budget: dict[str, Any]) -> None:
        """Set the membership and shared-window gauges (read at scrape time)."""
        self.group_members.set(len(members))
        self.member_partitions.clear()
        for m in members:
            self.member_partitions.labels(instance=m["instance"]).set(len(m["partitions"]))
        if "org_calls_this_window" in budget:
            self.org_window_calls.set(budget["org_calls_this_window"])
            self.org_rate.set(budget["org_rate_per_window"])
            self.org_processes.set(len(budget.get("org_members", [])))

    def outcome(self, name: SyncOutcome, count: int = 1) -> None:
        if count:
            child = self._outcome_children.get(name)
            if child is None:  # `labels()` costs more than the increment; a replay counts every record
                child = self._outcome_children[name] = self._events.labels(outcome=name)
            child.inc(count)
            self.tally[name] += count

    def replay_already_applied(self) -> None:
        self._already_applied.inc()
        self.already_applied += 1

    def zoho_ahead_found(self, entity: str) -> None:
        self._zoho_ahead.labels(entity=entity).inc()

    def zoho_calls(self, count: int) -> None:
        if count:
            self._calls.inc(count)
            self.attempts += count

    def latency(self, seconds: float) -> None:
        self._latency.observe(max(seconds, 0.0))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class ZohoClientCollector(Collector):
    """Reads `ZohoClient.metrics` (connectors.zoho.tracking.ClientMetrics) at scrape time."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def collect(self) -> Iterator[Metric]:
        m = self._client.metrics
        calls = CounterMetricFamily(
            "zoho_cdc_zoho_calls",
            "Zoho API attempts by endpoint and HTTP status",
            labels=["endpoint", "status"],
        )
        for (endpoint, status), n in sorted(m.calls.items(), key=str):
            calls.add_metric([endpoint, str(status)], n)
        yield calls
        for name, doc, value in (
            ("zoho_cdc_zoho_http_429", "Zoho replies with HTTP 429 (rate limited)", m.http_429),
            ("zoho_cdc_zoho_token_requests", "Access-token requests sent to Zoho accounts", m.token_requests),
            ("zoho_cdc_zoho_token_refreshes", "Access tokens obtained (refreshes)", m.token_refreshes),
            ("zoho_cdc_zoho_token_refusals", "Token requests refused as too many", m.token_refusals),
            ("zoho_cdc_zoho_retries", "Zoho calls retried", m.retries),
            (
                "zoho_cdc_zoho_limiter_wait_seconds",
                "Time spent waiting for the rate limiter",
                m.limiter_wait_seconds,
            ),
            (
                "zoho_cdc_zoho_daily_budget_wait_seconds",
                "Time spent waiting for the daily budget",
                m.daily_wait_seconds,
            ),
        ):
            yield CounterMetricFamily(name, doc, value=value)
