"""The worker's /metrics text (streams/metrics.py): counters, gauges, lag per partition."""

from __future__ import annotations

from streams.metrics import WorkerMetrics


def test_counters_gauges_and_lag_render_in_prometheus_text() -> None:
    metrics = WorkerMetrics(processed=5, seeks=1, workspaces_cached=3, ids_remembered=7,
                            lag={"t.usage.tokens:1": 12})
    text = metrics.render()
    assert "# TYPE meter_worker_processed_total counter\nmeter_worker_processed_total 5\n" in text
    assert "meter_worker_seeks_total 1\n" in text
    assert "# TYPE meter_worker_workspaces_cached gauge\nmeter_worker_workspaces_cached 3\n" in text
    assert "# TYPE meter_worker_ids_remembered gauge\nmeter_worker_ids_remembered 7\n" in text
    assert 'meter_worker_consumer_lag{topic="t.usage.tokens",partition="1"} 12\n' in text
    assert "workspaces_cached_total" not in text  # gauges are not counters
