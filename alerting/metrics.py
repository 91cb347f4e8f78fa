"""A small Prometheus registry for the alerting consumer (text exposition format 0.0.4)."""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from typing import Final

LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                          30.0, 60.0, 300.0)


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    body = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                    for k, v in pairs)
    return "{" + body + "}"


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

    def outcome(self, channel: str, outcome: str) -> None:
        self.deliveries[(channel, outcome)] += 1

    def attempt(self, channel: str) -> None:
        self.attempts[channel] += 1

    def latency(self, channel: str, seconds: float) -> None:
        counts = self._latency_counts.setdefault(channel, [0] * (len(LATENCY_BUCKETS) + 1))
        counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._latency_sum[channel] += seconds

    def render(self) -> str:
        lines = [
            "# HELP meter_alert_deliveries_total Delivery outcomes by channel.",
            "# TYPE meter_alert_deliveries_total counter",
        ]
        for (channel, outcome), n in sorted(self.deliveries.items()):
            lines.append("meter_alert_deliveries_total"
                         f"{_labels((('channel', channel), ('outcome', outcome)))} {n}")
        lines += ["# HELP meter_alert_attempts_total Send attempts by channel.",
                  "# TYPE meter_alert_attempts_total counter"]
        for channel, n in sorted(self.attempts.items()):
            lines.append(f"meter_alert_attempts_total{_labels((('channel', channel),))} {n}")
        lines += [
            "# HELP meter_alert_retry_queue_depth Deliveries waiting to be retried.",
            "# TYPE meter_alert_retry_queue_depth gauge",
            f"meter_alert_retry_queue_depth {self.retry_queue_depth}",
            "# HELP meter_alert_in_flight Crossings consumed without a recorded outcome.",
            "# TYPE meter_alert_in_flight gauge",
            f"meter_alert_in_flight {self.in_flight}",
            "# HELP meter_alert_crossings_total Crossings consumed.",
            "# TYPE meter_alert_crossings_total counter",
            f"meter_alert_crossings_total {self.crossings_consumed}",
            "# HELP meter_alert_delivery_latency_seconds Crossing consumed to delivered.",
            "# TYPE meter_alert_delivery_latency_seconds histogram",
        ]
        for channel, counts in sorted(self._latency_counts.items()):
            running = 0
            for bound, n in zip((*LATENCY_BUCKETS, math.inf), counts, strict=True):
                running += n
                le = "+Inf" if bound == math.inf else repr(bound)
                lines.append("meter_alert_delivery_latency_seconds_bucket"
                             f"{_labels((('channel', channel), ('le', le)))} {running}")
            lines.append("meter_alert_delivery_latency_seconds_sum"
                         f"{_labels((('channel', channel),))} {self._latency_sum[channel]}")
            lines.append("meter_alert_delivery_latency_seconds_count"
                         f"{_labels((('channel', channel),))} {running}")
        return "\n".join(lines) + "\n"
