"""CSV export for finance: one row per cycle, dimension, key and metric; RFC 4180; UTF-8."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from sinks.csv_export import COLUMNS, to_csv, write_csv
from sinks.history import HistoryReader
from sinks.shape import parse_time
from sinks.writer import BatchWriter

GOLDEN = Path(__file__).parent / "golden" / "history_w1.csv"
JAN, FEB, MAR, APR = (parse_time(f"2025-0{m}-01T00:00:00Z") for m in (1, 2, 3, 4))


def rec(start: int, end: int, dimension: str, key: str, metric: str, value: int | None,
        version: int) -> dict[str, Any]:
    """A usage.aggregates record of version 1 (one value), as the sink reads it."""
    return {"workspace_id": "w1", "cycle_start": start, "cycle_ends_at": end, "plan": "team",
            "dimension": dimension, "key": key, "metric": metric, "value": value,
            "version": version, "emitted_at": 0}


def write_sample(writer: BatchWriter) -> None:
    rows = [
        (JAN, FEB, "totals", "", "ai_tokens", 120),
        (JAN, FEB, "totals", "", "storage_bytes", 2048),
        (JAN, FEB, "totals", "", "machines", 2),
        (JAN, FEB, "limits", "", "ai_tokens", 1000),
        (JAN, FEB, "limits", "", "machines", None),
        (JAN, FEB, "member", 'o\'brien, "jr"', "ai_tokens", 100),
        (JAN, FEB, "member", "zoë", "ai_tokens", 20),
        (JAN, FEB, "member", "zoë", "chat_tokens", 20),
        (JAN, FEB, "machine", "m1\nm2", "commands", 3),
        (JAN, FEB, "provider", "openai", "input_tokens", 100),
        (JAN, FEB, "provider", "openai", "output_tokens", 20),
        (JAN, FEB, "model", "openai/gpt-4o/mini", "input_tokens", 100),
        (JAN, FEB, "model", "openai/gpt-4o/mini", "output_tokens", 20),
        (JAN, FEB, "skill", "web-search", "invocations", 1),
        (MAR, APR, "totals", "", "commands", 5),
        # cost: integer micro-dollars, exact in the CSV (usage.aggregates v3 metrics)
        (JAN, FEB, "totals", "", "cost_micros", 1_234_567),
        (JAN, FEB, "totals", "", "unpriced_tokens", 7),
        (JAN, FEB, "member", "zoë", "cost_micros", 1_234_567),
        (JAN, FEB, "model", "openai/gpt-4o/mini", "cost_micros", 1_234_567),
    ]
    for version, row in enumerate(rows, start=1):
        writer.add("usage.aggregates", rec(*row, version=version))
    writer.flush()


def test_history_csv_matches_the_golden_file(writer: BatchWriter,
                                             reader: HistoryReader) -> None:
    write_sample(writer)
    text = to_csv(reader.history("w1"))
    assert text == GOLDEN.read_bytes().decode("utf-8")


def test_csv_is_rfc4180_and_reads_back_losslessly(writer: BatchWriter,
                                                   reader: HistoryReader) -> None:
    write_sample(writer)
    text = to_csv(reader.history("w1"))
    assert text.endswith("\r\n")
    assert '"o\'brien, ""jr"""' in text
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert tuple(parsed[0]) == COLUMNS
    keys = {row[6] for row in parsed[1:]}
    assert {'o\'brien, "jr"', "zoë", "m1\nm2", "openai/gpt-4o/mini"} <= keys
    unlimited = [r for r in parsed if r[5:8] == ["limits", "", "machines"]]
    assert [r[8] for r in unlimited] == ["", "", ""]  # Jan, Feb (no events), Mar
    months = [r[1] for r in parsed[1:]]
    assert sorted(set(months)) == ["2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z",
                                   "2025-03-01T00:00:00Z"]


def test_one_cycle_export_to_a_file_is_utf8(writer: BatchWriter, reader: HistoryReader,
                                            tmp_path: Path) -> None:
    write_sample(writer)
    target = tmp_path / "jan.csv"
    with target.open("w", encoding="utf-8", newline="") as out:
        count = write_csv([reader.cycle("w1", JAN)], out)
    data = target.read_bytes()
    assert "zoë".encode() in data and not data.startswith(b"\xef\xbb\xbf")
    assert data.count(b"\r\n") == count + 1  # header and rows; the key's line break is quoted
    assert b'"m1\nm2"' in data
