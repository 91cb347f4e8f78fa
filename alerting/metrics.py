"""The alerting consumer's metrics, exposed through prometheus_client.

The numbers are plain attributes bumped by the consumer; ``AlertMetrics`` is also a
prometheus_client collector that turns them into metric families at scrape time, in a
registry of its own (not the global one), so several services in one process do not
collide.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterator
from itertools import accumulate
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                          30.0, 60.0, 300.0)


class AlertMetrics:
    """Deliveries by channel and outcome, attempts, retry queue depth, latency."""

    def __init__(self) -> None:
        self.deliveries: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.attempts: defaultdict[str, int] = defaultdict(int)
        self.retry_queue_depth = 0
        self.in_flight = 0
        self.crossings_consumed = 0
        self._latency_counts: dict[str, list[int]] = {}
        self._latency_sum: defaultdict[str, float] = defaultdict(float)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def outcome(self, channel: str, outcome: str) -> None:
        self.deliveries[(channel, outcome)] += 1

    def attempt(self, channel: str) -> None:
        self.attempts[channel] += 1

    def latency(self, channel: str, seconds: float) -> None:
        counts = self._latency_counts.setdefault(channel, [0] * (len(LATENCY_BUCKETS) + 1))
        counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._latency_sum[channel] += seconds

    def collect(self) -> Iterator[Metric]:
        """The metric families of a scrape (prometheus_client's collector protocol)."""
        deliveries = CounterMetricFamily("meter_alert_deliveries_total",
                                         "Delivery outcomes by channel.",
                                         labels=["channel", "outcome"])
        for (channel, outcome), n in sorted(self.deliveries.items()):
            deliveries.add_metric([channel, outcome], n)
        attempts = CounterMetricFamily("meter_alert_attempts_total", "Send attempts by channel.",
                                       labels=["channel"])
        for channel, n in sorted(self.attempts.items()):
            attempts.add_metric([channel], n)
        latency = HistogramMetricFamily("meter_alert_delivery_latency_seconds",
                                        "Crossing consumed to delivered.", labels=["channel"])
        for channel, counts in sorted(self._latency_counts.items()):
            # the buckets' bounds as this module always printed them (repr, "+Inf")
            bounds = [*(repr(bound) for bound in LATENCY_BUCKETS), "+Inf"]
            latency.add_metric([channel], list(zip(bounds, accumulate(counts), strict=True)),
                               self._latency_sum[channel])
        yield deliveries
        yield attempts
        yield GaugeMetricFamily("meter_alert_retry_queue_depth",
                                "Deliveries waiting to be retried.", value=self.retry_queue_depth)
        yield GaugeMetricFamily("meter_alert_in_flight",
                                "Crossings consumed without a recorded outcome.",
                                value=self.in_flight)
        yield CounterMetricFamily("meter_alert_crossings_total", "Crossings consumed.",
                                  value=self.crossings_consumed)
        yield latency

    def render(self) -> str:
        """The Prometheus text exposition of this consumer's registry."""
        return generate_latest(self.registry).decode()
