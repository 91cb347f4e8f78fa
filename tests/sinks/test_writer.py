"""The batching writer: rows land once per key whatever is written twice (idempotent by data)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from groundwork.settings import Settings
from sinks.history import HistoryReader
from sinks.records import usage_records
from sinks.store import StoreHandle
from sinks.writer import Backoff, BatchWriter, Position, SinkStopped

APRIL = 1_743_465_600_000  # 2025-04-01T00:00:00Z
MAY = 1_746_057_600_000


def aggregate(metric: str, value: int | None, version: int, *, ws: str = "w1",
              dimension: str = "totals", key: str = "") -> dict[str, Any]:
    """A usage.aggregates record of version 1 (one value), as the sink reads it."""
    return {"workspace_id": ws, "cycle_start": APRIL, "cycle_ends_at": MAY, "plan": "pro",
            "dimension": dimension, "key": key, "metric": metric, "value": value,
            "version": version, "emitted_at": APRIL + version}


def crossing(alert_id: str, threshold: int) -> dict[str, Any]:
    return {"alert_id": alert_id, "workspace_id": "w1", "quota": "ai_tokens",
            "threshold": threshold, "arm": 1, "highest_in_event": True, "current": 900,
            "limit": 1000, "cycle_start": APRIL, "cycle_ends_at": MAY, "crossed_at": APRIL + 5,
            "event_id": "e1", "enforcement": "allow"}


def delivery(alert_id: str, channel: str, status: str) -> dict[str, Any]:
    return {"delivery_id": f"{alert_id}|{channel}|1|{status}", "alert_id": alert_id,
            "workspace_id": "w1", "channel": channel, "status": status, "attempt": 1,
            "detail": None, "target": "https://hooks.example/x", "quota": "ai_tokens",
            "threshold": 80, "recorded_at": APRIL + 9}


def totals(client: Client) -> dict[str, int | None]:
    rows = client.query(
        "SELECT metric, value FROM meter.usage_latest WHERE workspace_id = 'w1' "
        "AND dimension = 'totals'").result_rows
    return {str(metric): value for metric, value in rows}


def test_flush_returns_the_next_offset_of_each_partition_after_writing(
        writer: BatchWriter, client: Client) -> None:
    writer.add("usage.aggregates", aggregate("ai_tokens", 10, 1), Position("t.agg", 0, 41))
    writer.add("usage.aggregates", aggregate("commands", 2, 2), Position("t.agg", 0, 42))
    writer.add("quota.thresholds", crossing("w1/a/ai_tokens/80", 80), Position("t.thr", 3, 7))
    offsets = writer.flush()
    assert sorted(offsets, key=str) == sorted(
        [Position("t.agg", 0, 43), Position("t.thr", 3, 8)], key=str)
    assert writer.pending == 0
    assert totals(client) == {"ai_tokens": 10, "commands": 2}


def test_a_record_without_entries_writes_no_row_and_its_offset_is_committed(
        writer: BatchWriter, client: Client) -> None:
    writer.add("usage.aggregates", {**aggregate("ai_tokens", 1, 1), "entries": []},
               Position("t.agg", 1, 9))
    assert writer.pending == 0
    assert writer.flush() == [Position("t.agg", 1, 10)]
    assert client.query("SELECT count() FROM meter.usage_snapshots").result_rows == [(0,)]


def test_a_record_that_fails_to_map_halfway_leaves_no_part_of_a_row(
        writer: BatchWriter, client: Client) -> None:
    writer.add("usage.aggregates", aggregate("ai_tokens", 10, 1))
    broken = {**aggregate("commands", 0, 2), "entries": [
        {"dimension": "totals", "key": "", "values": [11, 0, 0, 0, 0, 0, 5]},
        {"dimension": "member", "key": "m1"}]}  # no values: fails after the first entry
    with pytest.raises(KeyError):
        writer.add("usage.aggregates", broken)
    writer.add("usage.aggregates", aggregate("commands", 2, 3))
    assert writer.pending == 2
    writer.flush()
    assert totals(client) == {"ai_tokens": 10, "commands": 2}
    assert client.query("SELECT count() FROM meter.usage_snapshots").result_rows == [(2,)]


def test_the_same_batch_written_twice_changes_no_number(
        writer: BatchWriter, client: Client) -> None:
    batch = [aggregate("ai_tokens", 10, 1), aggregate("ai_tokens", 30, 2),
             aggregate("commands", 4, 2)]
    for _ in range(2):
        for record in batch:
            writer.add("usage.aggregates", record)
        writer.add("quota.thresholds", crossing("w1/2025-04-01T00:00:00Z/ai_tokens/80", 80))
        writer.add("alerting.deliveries", delivery("w1/x/ai_tokens/80", "email", "delivered"))
        writer.flush()
    assert totals(client) == {"ai_tokens": 30, "commands": 4}
    assert client.query("SELECT count() FROM meter.crossings").result_rows == [(1,)]
    assert client.query("SELECT count() FROM meter.deliveries").result_rows == [(1,)]


def test_a_batch_composed_differently_after_a_restart_changes_no_number(
        writer: BatchWriter, client: Client) -> None:
    stream = [aggregate("ai_tokens", v * 10, v) for v in range(1, 7)]
    writer.add("usage.aggregates", stream[0])
    writer.add("usage.aggregates", stream[1])
    writer.add("usage.aggregates", stream[2])
    writer.flush()
    # crash before the commit: the restart re-reads from offset 1, in other batches
    writer.add("usage.aggregates", stream[1])
    writer.flush()
    for record in stream[2:]:
        writer.add("usage.aggregates", record)
    writer.flush()
    assert totals(client) == {"ai_tokens": 60}


def test_an_older_version_written_later_does_not_win(writer: BatchWriter, client: Client) -> None:
    writer.add("usage.aggregates", aggregate("storage_bytes", 500, 7))
    writer.flush()
    writer.add("usage.aggregates", aggregate("storage_bytes", 900, 3))
    writer.flush()
    assert totals(client) == {"storage_bytes": 500}


def test_an_unlimited_limit_after_a_number_reads_as_unlimited(
        writer: BatchWriter, reader: HistoryReader) -> None:
    writer.add("usage.aggregates", aggregate("ai_tokens", 1000, 1, dimension="limits"))
    writer.flush()
    writer.add("usage.aggregates", aggregate("ai_tokens", None, 2, dimension="limits"))
    writer.flush()
    (cycle,) = reader.history("w1")
    assert cycle.limits["ai_tokens"] is None


def test_dead_letters_and_plans_are_idempotent_by_their_identity(
        writer: BatchWriter, client: Client) -> None:
    dead = {"source_topic": "usage.tokens", "partition": 2, "offset": 17,
            "reason": "undecodable", "detail": "bad magic byte", "original": b"\x01\xff",
            "seen_at": APRIL}
    plan = {"workspace_id": "w1", "event_id": "p1", "occurred_at": APRIL, "plan": "pro",
            "cycle_anchor": APRIL, "timezone": "UTC",
            "limits": {"ai_tokens": 1000, "machines": 3}, "owners": ["a@example.com"]}
    for seen_at in (APRIL, APRIL + 60_000):  # redelivered later: still one dead letter
        writer.add("usage.deadletter", {**dead, "seen_at": seen_at})
        writer.add("quota.plans", plan)
        writer.flush()
    assert client.query(
        "SELECT count(), any(reason), any(hex(original)) FROM meter.dead_letters FINAL"
    ).result_rows == [(1, "undecodable", "01FF")]
    assert client.query("SELECT count() FROM meter.plans FINAL").result_rows == [(1,)]


def test_a_replay_usage_json_loads_and_reads_back_exactly(
        writer: BatchWriter, reader: HistoryReader, acceptance_dir: Path) -> None:
    expected = json.loads(
        (acceptance_dir / "breakdowns_no_plan" / "expected_usage.json").read_text())
    for record in usage_records(expected):
        writer.add("usage.aggregates", record)
    writer.flush()
    cycles = reader.history("wn")
    got = {c.to_json()["cycle_start"]: c.to_json() for c in cycles}
    for start, want in expected["workspaces"]["wn"]["cycles"].items():
        have = dict(got[start])
        assert have.pop("cycle_start") == start
        assert have.pop("status") == "provisional"
        # the acceptance file predates costs: no cost was written, none is read back
        cost = have.pop("cost")
        assert (cost["total"], cost["unpriced_tokens"], cost["prices"]) == (0, 0, None)
        assert have == want


def test_a_refusing_server_is_retried_and_no_row_is_dropped_or_acknowledged(
        tmp_path: Path) -> None:
    with socket_that_refuses() as port:
        store = StoreHandle(Settings(clickhouse_url=f"http://127.0.0.1:{port}/",
                                     data_dir=tmp_path))
        writer = BatchWriter(store, backoff=Backoff(initial_s=0.01, max_s=0.05))
        writer.add("usage.aggregates", aggregate("ai_tokens", 10, 1), Position("t", 0, 5))
        outcome: list[object] = []

        def flush() -> None:
            try:
                outcome.append(writer.flush())
            except SinkStopped as exc:
                outcome.append(exc)

        thread = threading.Thread(target=flush)
        thread.start()
        while writer.metrics.insert_retries < 3:
            thread.join(0.05)
        writer.stop.set()
        thread.join(60)
    assert len(outcome) == 1 and isinstance(outcome[0], SinkStopped)  # no offsets to commit
    assert writer.pending == 1  # the row is still held


@contextmanager
def socket_that_refuses() -> Iterator[int]:
    """A port on 127.0.0.1 that nothing listens on (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def test_cost_of_a_replay_reads_back_from_history_to_the_micro_dollar(
        writer: BatchWriter, reader: HistoryReader) -> None:
    from meter.workload import Workload, generate_lines
    from tests.streams.harness import replay_lines

    lines = list(generate_lines(Workload(workspaces=3, events=3_000, seed=17)))
    usage, _ = replay_lines(lines)
    for record in usage_records(usage):
        writer.add("usage.aggregates", record)
    writer.flush()
    checked = 0
    for ws, body in usage["workspaces"].items():
        got = {c.to_json()["cycle_start"]: c.to_json() for c in reader.history(ws, cycles=12)}
        detail = {c.to_json()["cycle_start"]: c.prices_version
                  for c in reader.history_from_detail(ws, cycles=12)}
        for start, cycle in body["cycles"].items():
            assert detail[start] == cycle["cost"]["prices"]
            want = cycle["cost"]
            assert want["prices"].startswith("genai-prices ")
            have = got[start]["cost"]
            assert have == want  # the price table version included
            checked += want["total"] > 0 and want["unpriced_tokens"] > 0
    assert checked  # priced and unpriced models both occurred
