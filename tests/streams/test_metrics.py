"""The worker's /metrics text (streams/metrics.py): counters, gauges, lag per partition."""

from __future__ import annotations

import json

from prometheus_client import REGISTRY, generate_latest

from streams.metrics import WorkerMetrics


def test_counters_gauges_and_lag_render_in_prometheus_text() -> None:
    metrics = WorkerMetrics(processed=5, fence_violations=1, workspaces_cached=3,
                            store_keys=7, lag={"t.usage.tokens:1": 12},
                            lso_gap={"t.usage.tokens:1": 2})
    text = metrics.render()
    # prometheus_client writes values as floats and labels in name order
    assert "# TYPE meter_worker_processed_total counter\nmeter_worker_processed_total 5.0\n" in text
    assert "meter_worker_fence_violations_total 1.0\n" in text
    assert ("# TYPE meter_worker_workspaces_cached gauge\nmeter_worker_workspaces_cached 3.0\n"
            in text)
    assert "# TYPE meter_worker_store_keys gauge\nmeter_worker_store_keys 7.0\n" in text
    assert 'meter_worker_consumer_lag{partition="1",topic="t.usage.tokens"} 12.0\n' in text
    assert 'meter_worker_lso_gap{partition="1",topic="t.usage.tokens"} 2.0\n' in text
    assert "workspaces_cached_total" not in text  # gauges are not counters


def test_each_worker_renders_its_own_registry_and_none_writes_to_the_global_one() -> None:
    first, second = WorkerMetrics(processed=5), WorkerMetrics(processed=9)
    assert "meter_worker_processed_total 5.0\n" in first.render()
    assert "meter_worker_processed_total 9.0\n" in second.render()
    assert "meter_worker" not in generate_latest(REGISTRY).decode()


def test_owned_partitions_render_one_sample_each() -> None:
    text = WorkerMetrics(owned_partitions=[0, 2]).render()
    assert "# TYPE meter_worker_partition_owned gauge\n" in text
    samples = [line for line in text.splitlines()
               if line.startswith("meter_worker_partition_owned{")]
    assert samples == [
        'meter_worker_partition_owned{partition="0"} 1.0',
        'meter_worker_partition_owned{partition="2"} 1.0',
    ]
    assert "meter_worker_partition_owned{" not in WorkerMetrics().render()


def test_lag_and_open_transaction_gap_come_from_librdkafka_statistics() -> None:
    def partition(app: int, nxt: int, hi: int, ls: int) -> dict[str, object]:
        return {"fetch_state": "active", "app_offset": app, "next_offset": nxt,
                "hi_offset": hi, "ls_offset": ls}

    stats = {"topics": {
        "t.usage.tokens": {"partitions": {
            "0": partition(app=40, nxt=50, hi=60, ls=55),  # an open transaction: 5
            "1": partition(app=-1001, nxt=10, hi=10, ls=10),  # nothing handed over yet
            "-1": partition(app=0, nxt=0, hi=0, ls=0)}},  # librdkafka's internal partition
        "t.other": {"partitions": {"0": partition(app=0, nxt=0, hi=9, ls=9)}}}}
    metrics = WorkerMetrics()
    metrics.record_stats(json.dumps(stats), {"t.usage.tokens"})
    assert metrics.lag == {"t.usage.tokens:0": 15, "t.usage.tokens:1": 0}
    assert metrics.lso_gap == {"t.usage.tokens:0": 5, "t.usage.tokens:1": 0}
