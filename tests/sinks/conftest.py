"""Fixtures of the sink tests: a fresh embedded chDB store per test (closed after it).

chDB hosts one data path per process, so every client a test opens is closed at
teardown before the next test opens its own path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from groundwork.settings import Settings, load_settings
from sinks.history import HistoryReader
from sinks.store import StoreHandle
from sinks.writer import BatchWriter


@pytest.fixture
def store_settings(tmp_path: Path, chdb_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path, chdb_path=chdb_path, clickhouse_url=None,
                         clickhouse_database="meter")


@pytest.fixture
def store(store_settings: Settings) -> Iterator[StoreHandle]:
    handle = StoreHandle(store_settings)
    yield handle
    handle.close()


@pytest.fixture
def client(store: StoreHandle) -> Client:
    return store.client()


@pytest.fixture
def writer(store: StoreHandle) -> BatchWriter:
    return BatchWriter(store, max_rows=1_000_000, max_delay_s=3600)


@pytest.fixture
def reader(store: StoreHandle) -> HistoryReader:
    return HistoryReader(store.client(), store.database)
