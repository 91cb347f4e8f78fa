"""The dashboard reading through a running sink's HTTP read API (the embedded store is
owned by the sink process), and its CSV download against the CLI's, byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dashboard.checkapi import CheckApi
from dashboard.sources import SinkSource, StoreSource, choose_source
from groundwork.ports import free_port
from groundwork.settings import Settings
from sinks.http_api import ReadService, make_server
from sinks.http_api import serve_in_thread as serve_sink
from sinks.metrics import SinkMetrics
from sinks.store import StoreHandle
from tests.dashboard import data
from tests.dashboard.page import parse
from tests.dashboard.serving import serving_dashboard


@pytest.fixture(scope="module")
def sink_url(store_settings: Settings) -> Iterator[str]:
    """The sink's read API on the loaded store (what `meter sink` serves)."""
    handle = StoreHandle(store_settings)
    server = make_server("127.0.0.1", 0, ReadService(handle, SinkMetrics()))
    serve_sink(server)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        handle.close()


@pytest.fixture(scope="module")
def via_sink(sink_url: str) -> Iterator[str]:
    source = SinkSource(sink_url)
    check_api = CheckApi(f"http://127.0.0.1:{free_port()}", None)
    try:
        with serving_dashboard(source, check_api) as url:
            yield url
    finally:
        source.close()


def test_auto_picks_the_running_sink_and_falls_back_to_the_store(
        store_settings: Settings, sink_url: str) -> None:
    port = int(sink_url.rsplit(":", 1)[1])
    chosen = choose_source(store_settings.model_copy(update={"sink_port": port}))
    assert isinstance(chosen, SinkSource)
    chosen.close()
    alone = choose_source(store_settings.model_copy(update={"sink_port": free_port()}))
    assert isinstance(alone, StoreSource)
    alone.close()


def test_the_page_renders_from_the_sinks_read_api(via_sink: str) -> None:
    response = httpx.get(via_sink + "/workspace", params={"id": "acme"}, timeout=60)
    assert response.status_code == 200
    page = parse(response.text)
    cards = {c.attrs["data-quota"]: int(c.attrs["data-used"]) for c in page.find_all("article")
             if "data-quota" in c.attrs}
    assert cards == {q: data.CURRENT["totals"][q] for q in cards}
    assert "no check API token is configured" in page.all_text
    alerts = [e for e in page.find_all("li") if "data-alert" in e.attrs]
    # the sink serves GET /v1/alerts
    assert [a.attrs["data-alert"] for a in alerts] == [c["alert_id"] for c in data.CROSSINGS]


def test_the_index_lists_the_workspaces_the_sink_serves(via_sink: str) -> None:
    page = parse(httpx.get(via_sink + "/", timeout=60).text)
    rows = [r.attrs["data-workspace"] for r in page.find_all("tr") if "data-workspace" in r.attrs]
    assert rows == ["acme", "beta"]  # the sink serves GET /v1/workspaces
    assert page.find_all("form", action="/workspace")


def test_csv_download_equals_the_cli_export_byte_for_byte(
        via_sink: str, sink_url: str, store_settings: Settings, tmp_path: Path) -> None:
    env = {**os.environ, "METER_SINK_PORT": sink_url.rsplit(":", 1)[1],
           "METER_CHDB_PATH": str(store_settings.chdb_path), "METER_DATA_DIR": str(tmp_path)}
    env.pop("METER_CLICKHOUSE_URL", None)
    meter = [sys.executable, "-m", "meter.cli_entry"]
    for args, params in (
        ([], {"cycles": "12"}),
        (["--cycle", data.FEB], {"cycle": data.FEB}),
    ):
        target = tmp_path / "export.csv"
        done = subprocess.run([*meter, "history", "acme", "--csv", str(target), *args],
                              env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        download = httpx.get(via_sink + "/export.csv", params={"workspace": "acme", **params},
                             timeout=60)
        assert download.status_code == 200
        assert download.content == target.read_bytes()


def test_the_dashboard_command_serves_from_the_sink(sink_url: str, tmp_path: Path) -> None:
    """`python -m dashboard --source sink` (what `meter dashboard` runs) in its own process."""
    port = free_port()
    env = {**os.environ, "METER_SINK_PORT": sink_url.rsplit(":", 1)[1],
           "METER_API_PORT": str(free_port()), "METER_DATA_DIR": str(tmp_path)}
    env.pop("METER_API_TOKEN", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "dashboard", "--source", "sink", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # up to about 30 s
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.communicate()[1]
            time.sleep(0.1)
        health = httpx.get(base + "/healthz", timeout=10).json()
        assert health["source"] == f"the sink's read API at {sink_url}"
        page = parse(httpx.get(base + "/workspace", params={"id": "acme"}, timeout=60).text)
        used = [int(c.attrs["data-used"]) for c in page.find_all("article")
                if "data-quota" in c.attrs]
        assert used == [data.CURRENT["totals"][q] for q in data.LIMITS]
    finally:
        process.terminate()
        process.communicate(timeout=20)
