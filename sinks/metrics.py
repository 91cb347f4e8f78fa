"""The sink's counters and gauges, exposed through prometheus_client.

The sink keeps its numbers as plain attributes (cheap to bump on the hot path);
``SinkMetrics`` is also a prometheus_client collector that turns them into metric
families at scrape time, registered in a registry of its own (not the global one),
so several services in one process do not collide.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


class SinkMetrics:
    """Thread-safe counters: rows written, batches, retries, lag per partition."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows_written: defaultdict[str, int] = defaultdict(int)
        self.batches = 0
        self.insert_retries = 0
        self.undecodable = 0
        self.commits_refused = 0
        self.lag: dict[tuple[str, int], int] = {}
        self.store_ready = False
        self.last_flush_ms = 0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def wrote(self, table: str, rows: int) -> None:
        with self._lock:
            self.rows_written[table] += rows

    def batch_done(self, now_ms: int) -> None:
        with self._lock:
            self.batches += 1
            self.last_flush_ms = now_ms

    def retried(self) -> None:
        with self._lock:
            self.insert_retries += 1

    def commit_refused(self) -> None:
        with self._lock:
            self.commits_refused += 1

    def skipped_undecodable(self) -> None:
        with self._lock:
            self.undecodable += 1

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        with self._lock:
            self.lag[(topic, partition)] = lag

    def collect(self) -> Iterator[Metric]:
        """The metric families of a scrape (prometheus_client's collector protocol)."""
        with self._lock:
            rows = CounterMetricFamily("meter_sink_rows_written_total",
                                       "Rows inserted into ClickHouse, per table.",
                                       labels=["table"])
            for table, count in sorted(self.rows_written.items()):
                rows.add_metric([table], count)
            lag = GaugeMetricFamily("meter_sink_consumer_lag",
                                    "Records behind the high watermark, per partition.",
                                    labels=["topic", "partition"])
            for (topic, partition), behind in sorted(self.lag.items()):
                lag.add_metric([topic, str(partition)], behind)
            families: list[Metric] = [
                rows,
                CounterMetricFamily("meter_sink_batches_total",
                                    "Batches written and committed.", value=self.batches),
                CounterMetricFamily("meter_sink_insert_retries_total",
                                    "Failed store operations retried.",
                                    value=self.insert_retries),
                CounterMetricFamily("meter_sink_undecodable_total",
                                    "Records the sink could not decode.", value=self.undecodable),
                CounterMetricFamily("meter_sink_commits_refused_total",
                                    "Offset commits the group refused "
                                    "(the batch is re-read and rewritten).",
                                    value=self.commits_refused),
                GaugeMetricFamily("meter_sink_store_ready",
                                  "1 when the store answered the last operation.",
                                  value=int(self.store_ready)),
                GaugeMetricFamily("meter_sink_last_flush_timestamp_ms",
                                  "Wall clock of the last committed batch.",
                                  value=self.last_flush_ms),
                lag,
            ]
        yield from families

    def render(self) -> str:
        """The Prometheus text exposition of this sink's registry."""
        return generate_latest(self.registry).decode()
