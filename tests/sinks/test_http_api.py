"""The sink's HTTP side: health, readiness, metrics, and the read API the CLI uses."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from groundwork.settings import Settings
from sinks.history import CycleNotFound
from sinks.http_api import ReadService, make_server, serve_in_thread
from sinks.metrics import SinkMetrics
from sinks.reads import RemoteReads
from sinks.shape import iso, parse_time
from sinks.store import StoreHandle
from sinks.writer import BatchWriter

PRICES = "genai-prices 0.2.5"
JAN, FEB, MAR = (parse_time(f"2025-0{m}-01T00:00:00Z") for m in (1, 2, 3))


def rec(start: int, end: int, metric: str, value: int, version: int,
        ws: str = "w1") -> dict[str, Any]:
    """A usage.aggregates record of version 1 (one value), as the sink reads it."""
    return {"workspace_id": ws, "cycle_start": start, "cycle_ends_at": end, "plan": None,
            "dimension": "totals", "key": "", "metric": metric, "value": value,
            "version": version, "emitted_at": 0}


@pytest.fixture
def api(store: StoreHandle, writer: BatchWriter) -> Iterator[str]:
    writer.add("usage.aggregates", rec(JAN, FEB, "ai_tokens", 10, 1))
    writer.add("usage.aggregates", rec(FEB, MAR, "ai_tokens", 25, 2))
    writer.add("usage.aggregates", rec(FEB, MAR, "commands", 3, 3, ws="x' OR 1=1 --"))
    writer.add("usage.aggregates", {**rec(FEB, MAR, "cost_micros", 1_234_567, 4),
                                     "prices_version": PRICES})
    writer.flush()
    read_store = StoreHandle(store.settings)
    server = make_server("127.0.0.1", 0, ReadService(read_store, writer.metrics))
    serve_in_thread(server)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        read_store.close()


def test_health_readiness_and_metrics(api: str) -> None:
    assert httpx.get(api + "/healthz").status_code == 200
    assert httpx.get(api + "/readyz").status_code == 200
    metrics = httpx.get(api + "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'meter_sink_rows_written_total{table="usage_snapshots"} 4' in metrics.text
    assert "meter_sink_batches_total 1" in metrics.text


def test_readiness_is_false_while_the_store_cannot_be_reached(tmp_path: Path) -> None:
    settings = Settings(clickhouse_url="http://127.0.0.1:9/", data_dir=tmp_path)
    server = make_server("127.0.0.1", 0, ReadService(StoreHandle(settings), SinkMetrics()))
    serve_in_thread(server)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert httpx.get(base + "/readyz", timeout=30).status_code == 503
        assert httpx.get(base + "/v1/history", params={"workspace": "w1"},
                         timeout=30).status_code == 503
    finally:
        server.shutdown()
        server.server_close()


def test_remote_reads_return_history_cycles_and_csv(api: str) -> None:
    reads = RemoteReads(api)
    try:
        cycles = reads.history("w1")
        assert [(c["cycle_start"], c["status"], c["totals"]["ai_tokens"]) for c in cycles] == [
            ("2025-01-01T00:00:00Z", "provisional", 10),
            ("2025-02-01T00:00:00Z", "provisional", 25)]
        # each cycle says which price table priced it (none: metered before costs)
        assert [c["cost"]["prices"] for c in cycles] == [None, PRICES]
        assert reads.cycle("w1", FEB)["cost"]["prices"] == PRICES
        assert reads.cycle("w1", JAN)["totals"]["ai_tokens"] == 10
        with pytest.raises(CycleNotFound):
            reads.cycle("w1", JAN + 1000)  # the next second names no cycle (S2)
        evil = reads.history("x' OR 1=1 --")
        assert [c["totals"]["commands"] for c in evil] == [3]
        rows = list(csv.reader(io.StringIO(reads.csv("w1", cycle_start=FEB), newline="")))
        assert {r[1] for r in rows[1:]} == {"2025-02-01T00:00:00Z"}
    finally:
        reads.close()


def test_bad_parameters_are_400(api: str) -> None:
    assert httpx.get(api + "/v1/history").status_code == 400
    assert httpx.get(api + "/v1/history", params={"workspace": "w1", "cycles": "0"}
                     ).status_code == 400
    assert httpx.get(api + "/v1/cycle", params={"workspace": "w1", "cycle": "soon"}
                     ).status_code == 400


def test_the_cli_reads_through_the_sink_that_owns_the_store(api: str, store: StoreHandle,
                                                            tmp_path: Path) -> None:
    port = api.rsplit(":", 1)[1]
    env = {**os.environ, "METER_SINK_PORT": port, "COLUMNS": "200",
           "METER_CHDB_PATH": str(store.settings.chdb_path)}
    env.pop("METER_CLICKHOUSE_URL", None)
    target = tmp_path / "w1.csv"
    meter = [str(Path(sys.executable).parent / "meter")]
    shown = subprocess.run([*meter, "history", "w1", "--csv", str(target)], env=env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert shown.returncode == 0, shown.stderr
    assert "2025-02-01T00:00:00Z" in shown.stdout and "25" in shown.stdout
    assert target.read_bytes().startswith(b"workspace_id,cycle_start,")
    assert b",totals,,cost_micros,1234567\r\n" in target.read_bytes()  # exact, no float
    assert "$1.234567" in shown.stdout and PRICES in shown.stdout
    current = subprocess.run([*meter, "usage", "w1"], env=env, capture_output=True, text=True,
                             timeout=120, check=False)
    assert current.returncode == 0, current.stderr
    assert "2025-02-01T00:00:00Z" in current.stdout
    assert "cost: $1.234567" in current.stdout
    assert f"priced with {PRICES}" in current.stdout
    missing = subprocess.run([*meter, "usage", "nobody"], env=env, capture_output=True,
                             text=True, timeout=120, check=False)
    assert missing.returncode == 2 and "no usage recorded" in missing.stderr


def test_meter_usage_forecasts_the_open_cycle(api: str, store: StoreHandle,
                                              writer: BatchWriter) -> None:
    """1,000 AI tokens in the first 10 days of a 30-day cycle open now, limit 2,000: at
    that pace 100 % comes on day 20 (streams/core/forecast.py)."""
    import time

    day = 86_400_000
    start = (int(time.time() * 1000) // 1000) * 1000 - 10 * day
    head = {"workspace_id": "wf", "cycle_start": start, "cycle_ends_at": start + 30 * day,
            "plan": "team", "version": 1, "emitted_at": 0}
    writer.add("usage.aggregates", {**head, "entries": [
        {"dimension": "totals", "key": "", "values": [1_000, 0, 0, 0, 0, 0, 0, 0]},
        {"dimension": "limits", "key": "", "values": [None, 2_000, None, None, None, None]}]})
    writer.flush()
    env = {**os.environ, "METER_SINK_PORT": api.rsplit(":", 1)[1], "COLUMNS": "250",
           "METER_CHDB_PATH": str(store.settings.chdb_path)}
    env.pop("METER_CLICKHOUSE_URL", None)
    shown = subprocess.run([str(Path(sys.executable).parent / "meter"), "usage", "wf"], env=env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert shown.returncode == 0, shown.stderr
    day_20 = iso(start + 20 * day)[:10]
    assert f"reaches 100 % on {day_20}" in shown.stdout, shown.stdout
