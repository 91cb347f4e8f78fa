"""The sink's counters and gauges, rendered in the Prometheus text format (0.0.4)."""

from __future__ import annotations

import threading
from collections import defaultdict


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


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

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP meter_sink_rows_written_total Rows inserted into ClickHouse, per table.",
                "# TYPE meter_sink_rows_written_total counter",
            ]
            for table, count in sorted(self.rows_written.items()):
                lines.append(f'meter_sink_rows_written_total{{table="{_escape(table)}"}} {count}')
            lines += [
                "# HELP meter_sink_batches_total Batches written and committed.",
                "# TYPE meter_sink_batches_total counter",
                f"meter_sink_batches_total {self.batches}",
                "# HELP meter_sink_insert_retries_total Failed store operations retried.",
                "# TYPE meter_sink_insert_retries_total counter",
                f"meter_sink_insert_retries_total {self.insert_retries}",
                "# HELP meter_sink_undecodable_total Records the sink could not decode.",
                "# TYPE meter_sink_undecodable_total counter",
                f"meter_sink_undecodable_total {self.undecodable}",
                "# HELP meter_sink_commits_refused_total Offset commits the group refused "
                "(the batch is re-read and rewritten).",
                "# TYPE meter_sink_commits_refused_total counter",
                f"meter_sink_commits_refused_total {self.commits_refused}",
                "# HELP meter_sink_store_ready 1 when the store answered the last operation.",
                "# TYPE meter_sink_store_ready gauge",
                f"meter_sink_store_ready {int(self.store_ready)}",
                "# HELP meter_sink_last_flush_timestamp_ms Wall clock of the last committed batch.",
                "# TYPE meter_sink_last_flush_timestamp_ms gauge",
                f"meter_sink_last_flush_timestamp_ms {self.last_flush_ms}",
                "# HELP meter_sink_consumer_lag Records behind the high watermark, per partition.",
                "# TYPE meter_sink_consumer_lag gauge",
            ]
            for (topic, partition), lag in sorted(self.lag.items()):
                lines.append(
                    f'meter_sink_consumer_lag{{topic="{_escape(topic)}",partition="{partition}"}}'
                    f" {lag}"
                )
        return "\n".join(lines) + "\n"
