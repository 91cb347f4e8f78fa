"""Codec throughput on the workload's mix: ours (with validation) vs raw fastavro.

    .venv/bin/python -m bench.bench_codec [--events 200000]

- decode: ``schemas.codec.decode_event`` (framing + Avro + ``validate`` -> typed event)
  vs ``fastavro.schemaless_reader`` on the same bodies with the schemas as they are
  (timestamp-millis -> datetime), and with the logical types stripped (ints, like ours).
- encode: ``encode_event(event)`` (framing included) vs ``schemaless_writer`` of
  ready-made dicts.
- JSON lines: ``parse_line`` (orjson + ``validate``) on the same events.
Prints a table and writes bench/results/codec.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from rich.console import Console
from rich.table import Table

from meter.workload import Workload, generate_events
from schemas.codec import decode_event, encode_event, event_record, strip_logical_types, topic_of
from schemas.jsonl import dumps_event, parse_line
from schemas.registry import default_registry

RESULTS = Path(__file__).resolve().parent / "results"


def best_rate(count: int, run: Callable[[], None], repeat: int = 3) -> float:
    """Items per second of the best of `repeat` runs."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()

    events = list(generate_events(Workload(seed=11, events=args.events, workspaces=50,
                                           invalid_rate=0, duplicate_rate=0)))
    n = len(events)
    encoded = [encode_event(e) for e in events]
    bodies = [b[5:] for b in encoded]
    lines = [dumps_event(e) for e in events]
    topics = [topic_of(e) for e in events]
    records = [event_record(e) for e in events]
    registry = default_registry().current
    with_logical = {t: parse_schema(v.load()) for t, v in registry.items()}
    stripped = {t: parse_schema(strip_logical_types(v.load())) for t, v in registry.items()}

    def ours_decode() -> None:
        for data in encoded:
            decode_event(data)

    def raw_decode_logical() -> None:
        for body, topic in zip(bodies, topics, strict=True):
            schemaless_reader(BytesIO(body), with_logical[topic], None)

    def raw_decode_stripped() -> None:
        for body, topic in zip(bodies, topics, strict=True):
            schemaless_reader(BytesIO(body), stripped[topic], None)

    def ours_encode() -> None:
        for event in events:
            encode_event(event)

    def raw_encode() -> None:
        for record, topic in zip(records, topics, strict=True):
            out = BytesIO()
            schemaless_writer(out, stripped[topic], record)
            out.getvalue()

    def ours_parse_line() -> None:
        for line in lines:
            parse_line(line, now_ms=None)

    rates: dict[str, float] = {
        "decode_event (ours, validated)": best_rate(n, ours_decode),
        "fastavro read, schemas as is": best_rate(n, raw_decode_logical),
        "fastavro read, no logical types": best_rate(n, raw_decode_stripped),
        "encode_event (ours, framed)": best_rate(n, ours_encode),
        "fastavro write, ready dicts": best_rate(n, raw_encode),
        "parse_line (orjson + validate)": best_rate(n, ours_parse_line),
    }
    ratios = {
        "decode: ours slower than fastavro as-is by (target <= 1.5)":
            rates["fastavro read, schemas as is"] / rates["decode_event (ours, validated)"],
        "decode: ours slower than fastavro without logical types by":
            rates["fastavro read, no logical types"] / rates["decode_event (ours, validated)"],
        "encode: ours slower than fastavro by":
            rates["fastavro write, ready dicts"] / rates["encode_event (ours, framed)"],
    }
    table = Table(title=f"codec on the workload mix ({n:,} events, best of 3, one core)")
    table.add_column("what")
    table.add_column("events/s", justify="right")
    table.add_column("µs/event", justify="right")
    for name, rate in rates.items():
        table.add_row(name, f"{rate:,.0f}", f"{1e6 / rate:.2f}")
    for name, ratio in ratios.items():
        table.add_row(name, f"{ratio:.2f}x", "")
    Console().print(table)
    RESULTS.mkdir(exist_ok=True)
    result: dict[str, Any] = {"events": n, "rates_per_s": {k: round(v) for k, v in rates.items()},
                              "ratios": {k: round(v, 3) for k, v in ratios.items()},
                              "python": platform.python_version(), "machine": platform.machine()}
    (RESULTS / "codec.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
