"""Pins the chDB behaviour (through clickhouse-connect) that the sink's design relies on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import clickhouse_connect
from clickhouse_connect.driver.client import Client


def test_argmax_skips_null_arguments_so_reads_wrap_values_in_a_tuple(client: Client) -> None:
    client.command("CREATE TABLE pin_null (k String, v Nullable(Int64), ver UInt64) "
                   "ENGINE = ReplacingMergeTree(ver) ORDER BY k")
    client.insert("pin_null", [("a", 5, 1)])
    client.insert("pin_null", [("a", None, 2)])  # a newer "unlimited"
    plain, wrapped = client.query(
        "SELECT argMax(v, ver), argMax(tuple(v), ver).1 FROM pin_null").result_rows[0]
    assert plain == 5  # NULL skipped: wrong for us
    assert wrapped is None


def test_integer_milliseconds_go_into_datetime64_3_as_ticks(client: Client) -> None:
    client.command("CREATE TABLE pin_dt (t DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY t")
    client.insert("pin_dt", [(1_743_465_600_123,)], column_names=["t"],
                  column_type_names=["DateTime64(3, 'UTC')"])
    assert client.query("SELECT toUnixTimestamp64Milli(t), toString(t) FROM pin_dt"
                        ).result_rows == [(1_743_465_600_123, "2025-04-01 00:00:00.123")]


def test_identical_blocks_are_both_kept_on_non_replicated_tables(client: Client) -> None:
    # Reads never depend on this (they are idempotent by data); pinned so a change is seen.
    client.command("CREATE TABLE pin_dup (k String) ENGINE = MergeTree ORDER BY k")
    client.insert("pin_dup", [("a",)])
    client.insert("pin_dup", [("a",)])
    assert client.query("SELECT count() FROM pin_dup").result_rows == [(2,)]


def test_a_second_process_cannot_open_a_path_this_process_holds(client: Client,
                                                               chdb_path: Path) -> None:
    code = ("import clickhouse_connect, sys\n"
            f"clickhouse_connect.get_client(dsn='chdb://{chdb_path}')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode != 0
    assert "Unable to open the chdb engine" in result.stderr


def test_one_process_hosts_one_path_at_a_time(client: Client, tmp_path: Path) -> None:
    try:
        clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'elsewhere'}")
    except Exception as exc:
        assert "already initialized" in str(exc)
    else:
        raise AssertionError("a second path opened in the same process")
