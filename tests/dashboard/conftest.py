"""Fixtures of the dashboard tests: a real chDB store loaded through the sink's writer,
a real check API, and the dashboard, each served over HTTP on 127.0.0.1.

The store is module-scoped (loading it once keeps the suite fast); chDB hosts one
data path per process, so every client is closed when the module ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard.checkapi import CheckApi
from dashboard.server import serve_in_thread
from dashboard.sources import StoreSource
from groundwork.ports import free_port
from groundwork.settings import Settings, load_settings
from schemas.codec import encode_record
from sinks.store import StoreHandle
from sinks.writer import BatchWriter
from streams.api import create_api
from streams.state_view import QuotaStateView
from tests.dashboard import data
from tests.dashboard.serving import serving_dashboard

TOKEN = "dashboard-test-token"


@pytest.fixture(scope="module")
def store_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of a fresh chDB store holding ``tests.dashboard.data``."""
    home = tmp_path_factory.mktemp("dashboard-store")
    settings = load_settings(data_dir=home, chdb_path=home / "chdb", clickhouse_url=None,
                             clickhouse_database="meter", api_token=TOKEN)
    handle = StoreHandle(settings)
    writer = BatchWriter(handle, max_rows=1_000_000, max_delay_s=3600)
    for record in data.aggregate_records():
        writer.add("usage.aggregates", record)
    for crossing in data.CROSSINGS:
        writer.add("quota.thresholds", crossing)
    for delivery in data.DELIVERIES:
        writer.add("alerting.deliveries", delivery)
    writer.flush()
    try:
        yield settings
    finally:
        handle.close()


@pytest.fixture(scope="module")
def check_api_url(store_settings: Settings) -> Iterator[str]:
    """The real check API (streams.api) holding acme's quota.state record, clock at NOW."""
    view = QuotaStateView(store_settings)
    record = data.quota_state_record()
    view.apply(b"acme", encode_record("quota.state", record))
    running = serve_in_thread(create_api(store_settings, view=view, clock_ms=lambda: data.NOW))
    try:
        yield running.url
    finally:
        running.stop()


@pytest.fixture(scope="module")
def store_source(store_settings: Settings) -> Iterator[StoreSource]:
    source = StoreSource(store_settings)
    try:
        yield source
    finally:
        source.close()


@pytest.fixture(scope="module")
def dashboard_url(store_source: StoreSource, check_api_url: str) -> Iterator[str]:
    """The dashboard on the store, with decisions from the real check API."""
    check_api = CheckApi(check_api_url, load_settings(api_token=TOKEN).api_token)
    with serving_dashboard(store_source, check_api) as url:
        yield url


@pytest.fixture(scope="module")
def dashboard_without_api(store_source: StoreSource) -> Iterator[str]:
    """The dashboard with no check API listening (a closed port)."""
    token = load_settings(api_token=TOKEN).api_token
    check_api = CheckApi(f"http://127.0.0.1:{free_port()}", token, timeout_s=1.0)
    with serving_dashboard(store_source, check_api) as url:
        yield url


@pytest.fixture
def artifacts_dir() -> Path:
    """test-artifacts/dashboard at the repo root (git-ignored)."""
    path = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
    path.mkdir(parents=True, exist_ok=True)
    return path
