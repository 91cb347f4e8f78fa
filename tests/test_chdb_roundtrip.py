"""clickhouse-connect reaches an embedded chDB store: DDL, insert, parameterized select."""

from __future__ import annotations

from pathlib import Path

import clickhouse_connect
import pytest


def test_ddl_insert_select_round_trip_on_chdb(chdb_path: Path,
                                            request: pytest.FixtureRequest) -> None:
    client = clickhouse_connect.get_client(dsn=f"chdb://{chdb_path}")
    # chDB allows one data path per process: release it for the other tests.
    request.addfinalizer(client.close)
    client.command(
        "CREATE TABLE IF NOT EXISTS roundtrip (ws String, at DateTime64(3, 'UTC'), n UInt64) "
        "ENGINE = MergeTree ORDER BY (ws, at)"
    )
    client.insert("roundtrip", [["w1", 1_700_000_000_123, 5], ["w2", 1_700_000_000_456, 7]],
                  column_names=["ws", "at", "n"])
    rows = client.query(
        "SELECT ws, toUnixTimestamp64Milli(at), n FROM roundtrip WHERE ws = {ws:String}",
        parameters={"ws": "w1"},
    ).result_rows
    assert rows == [("w1", 1_700_000_000_123, 5)]
    injected = client.query("SELECT count() FROM roundtrip WHERE ws = {ws:String}",
                            parameters={"ws": "x' OR 1=1 --"}).result_rows
    assert injected == [(0,)]
