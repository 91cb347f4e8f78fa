"""Benchmark of the ClickHouse sink on embedded chDB (through clickhouse-connect).

1. Sink write throughput: ``BatchWriter`` (usage.aggregates record dicts, version 2, of
   ``VALUES_PER_RECORD`` values each -> rows -> batched insert) beside a raw ``client.insert``
   of the same rows in the same batches, same run (target >= 100,000 rows/s, ratio >= 0.9).
   Avro decoding as the sink does it (``decode_written``) is timed on its own.
2. History query latency (p50/p99) for one workspace, 12 cycles, over N snapshot rows
   (default 10,000,000, generated inside the engine): from the rollup in one query
   (target p99 < 5 ms), and from the detail rows in the same run.
3. CSV export of one cycle with 100,000 rows (query + assembly + CSV).

    .venv/bin/python bench/bench_sink.py [--rows 200000] [--history-rows 10000000]

Prints a table and writes bench/results/bench_sink.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from groundwork.settings import load_settings
from schemas.aggregates import MEMBER_METRICS
from schemas.codec import decode_written, encode_record
from sinks.csv_export import to_csv
from sinks.ddl import migrate
from sinks.history import HistoryReader
from sinks.rows import AGGREGATES
from sinks.shape import parse_time
from sinks.store import StoreHandle
from sinks.writer import BatchWriter

RESULTS = Path(__file__).parent / "results"
BASE = parse_time("2023-01-01T00:00:00Z")

# Values of one (workspace, cycle) that change in one worker batch: an AI call changes
# totals, its member's, provider's and model's counters.
VALUES_PER_RECORD = 8


def records(rows: int) -> list[dict[str, Any]]:
    """usage.aggregates records (version 2) holding ``rows`` values in all."""
    rng = random.Random(7)
    out = []
    for first in range(0, rows, VALUES_PER_RECORD):
        out.append({
            "workspace_id": f"ws{first // VALUES_PER_RECORD % 500}", "cycle_start": BASE,
            "cycle_ends_at": BASE + 1, "plan": "team",
            "entries": [{"dimension": "member", "key": f"member-{i}",
                         "values": [rng.randrange(1_000_000) for _ in MEMBER_METRICS]}
                        for i in range(first, min(first + VALUES_PER_RECORD, rows),
                                       len(MEMBER_METRICS))],
            "version": first, "emitted_at": BASE + first,
        })
    return out


def bench_write(store: StoreHandle, rows: int, batch: int) -> dict[str, float]:
    recs = records(rows)
    client = store.client()
    migrate(client, "bench_raw")
    tuples = [row for r in recs for row in AGGREGATES.to_rows(r)]
    # warm both paths once (first insert pays one-time costs)
    client.insert(AGGREGATES.table, tuples[:batch], column_names=AGGREGATES.columns,
                  column_type_names=AGGREGATES.types, database="bench_raw")
    client.command("TRUNCATE TABLE bench_raw.usage_snapshots")
    start = time.perf_counter()
    for i in range(0, rows, batch):
        client.insert(AGGREGATES.table, tuples[i:i + batch], column_names=AGGREGATES.columns,
                      column_type_names=AGGREGATES.types, database="bench_raw")
    raw_s = time.perf_counter() - start

    # the sink writes into its own database, so the history data below stays as generated
    own_db = store.settings.model_copy(update={"clickhouse_database": "bench_sink"})
    sink_store = StoreHandle(own_db)
    writer = BatchWriter(sink_store, max_rows=batch, max_delay_s=3600)
    sink_store.client()  # connect and migrate outside the timing, like the raw side
    start = time.perf_counter()
    for record in recs:
        writer.add("usage.aggregates", record)
        if writer.due():
            writer.flush()
    writer.flush()
    sink_s = time.perf_counter() - start
    sink_store.close()

    encoded = [encode_record("usage.aggregates", r) for r in recs[:50_000]]
    start = time.perf_counter()
    for data in encoded:
        decode_written(data)
    decode_s = time.perf_counter() - start
    return {"rows": rows, "records": len(recs), "batch_rows": batch,
            "raw_rows_per_s": rows / raw_s, "sink_rows_per_s": rows / sink_s,
            "ratio": raw_s / sink_s, "decode_records_per_s": len(encoded) / decode_s}


GENERATE = """
INSERT INTO meter.usage_snapshots
SELECT
    concat('ws', toString(number % {workspaces})) AS workspace_id,
    addMonths(toDateTime64('2023-01-01 00:00:00', 3, 'UTC'), intDiv(number, {workspaces}) % 24),
    addMonths(toDateTime64('2023-01-01 00:00:00', 3, 'UTC'),
              intDiv(number, {workspaces}) % 24 + 1),
    'team',
    multiIf(k < 8, 'totals', k < 14, 'limits', k < 114, 'member', k < 164, 'machine', 'model'),
    multiIf(k < 14, '', k < 114, concat('member-', toString(intDiv(k - 14, 4))),
            k < 164, concat('m-', toString(intDiv(k - 114, 2))),
            concat('openai/gpt-', toString(intDiv(k - 164, 2)))),
    multiIf(k < 8, ['ai_tokens', 'schedule_runs', 'api_requests_per_cycle',
                    'api_requests_per_minute', 'machines', 'storage_bytes', 'commands',
                    'skill_invocations'][k + 1],
            k < 14, ['machines', 'ai_tokens', 'storage_bytes', 'schedule_runs',
                     'api_requests_per_minute', 'api_requests_per_cycle'][k - 7],
            k < 114, ['ai_tokens', 'chat_tokens', 'schedule_runs', 'commands'][(k - 14) % 4 + 1],
            k < 164, ['commands', 'ai_tokens'][(k - 114) % 2 + 1],
            ['input_tokens', 'output_tokens'][(k - 164) % 2 + 1]),
    toInt64(number % 100000),
    intDiv(number, {workspaces} * 24),
    now64(3),
    NULL
FROM (SELECT number, intDiv(number, {workspaces} * 24) % {keys} AS k
      FROM numbers({rows}))
"""


def wait_for_merges(client: Any, limit_s: float = 120.0) -> bool:
    """Let background merges of the generated data finish (steady state), up to a limit."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if client.query("SELECT count() FROM system.merges").result_rows[0][0] == 0:
            return True
        time.sleep(0.5)
    return False


def bench_history(store: StoreHandle, rows: int, samples: int) -> dict[str, float]:
    client = store.client()
    workspaces = max(1, rows // 10_000)  # ~10,000 rows per workspace over 24 cycles
    start = time.perf_counter()
    # 24 cycles per workspace, 420 distinct keys per cycle: every generated row is distinct
    client.command(GENERATE.format(workspaces=workspaces, rows=rows, keys=420),
                   settings={"max_insert_threads": 2})
    generate_s = time.perf_counter() - start
    settled = wait_for_merges(client)
    parts = client.query("SELECT count() FROM system.parts WHERE database = 'meter' "
                         "AND table = 'usage_snapshots' AND active").result_rows[0][0]
    total = client.query("SELECT count() FROM meter.usage_snapshots").result_rows[0][0]
    reader = HistoryReader(client, "meter")
    rng = random.Random(1)
    for _ in range(20):
        reader.history(f"ws{rng.randrange(workspaces)}")
    times, detail_times = [], []
    for _ in range(samples):
        ws = f"ws{rng.randrange(workspaces)}"
        t = time.perf_counter()
        cycles = reader.history(ws)
        times.append((time.perf_counter() - t) * 1000)
        assert len(cycles) == 12
        t = time.perf_counter()
        reader.history_from_detail(ws)  # the detail rows' history, same run (baseline)
        detail_times.append((time.perf_counter() - t) * 1000)
    times.sort()
    detail_times.sort()
    rollup_rows = client.query("SELECT count() FROM meter.usage_cycles").result_rows[0][0]
    return {"snapshot_rows": int(total), "rollup_rows": int(rollup_rows),
            "workspaces": workspaces, "active_parts": int(parts),
            "generate_s": generate_s, "merges_settled": settled, "samples": samples,
            "p50_ms": statistics.median(times), "p99_ms": times[int(len(times) * 0.99) - 1],
            "max_ms": times[-1], "detail_p50_ms": statistics.median(detail_times),
            "detail_p99_ms": detail_times[int(len(detail_times) * 0.99) - 1]}


def bench_csv(store: StoreHandle, rows: int) -> dict[str, float]:
    client = store.client()
    members = rows // 4
    client.command(f"""
        INSERT INTO meter.usage_snapshots
        SELECT 'csv-ws', toDateTime64('2024-06-01 00:00:00', 3, 'UTC'),
               toDateTime64('2024-07-01 00:00:00', 3, 'UTC'), 'team', 'member',
               concat('member-', toString(number % {members})),
               ['ai_tokens', 'chat_tokens', 'schedule_runs', 'commands']
                   [intDiv(number, {members}) + 1],
               toInt64(number), 1, now64(3), NULL
        FROM numbers({rows})""")
    reader = HistoryReader(client, "meter")
    start = time.perf_counter()
    cycle = reader.cycle("csv-ws", parse_time("2024-06-01T00:00:00Z"))
    query_s = time.perf_counter() - start
    text = to_csv([cycle])
    total_s = time.perf_counter() - start
    lines = text.count("\r\n") - 1
    return {"breakdown_rows": rows, "csv_rows": lines, "query_assemble_s": query_s,
            "total_s": total_s, "csv_bytes": len(text.encode())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows for the write test")
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--history-rows", type=int, default=10_000_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--csv-rows", type=int, default=100_000)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-sink-"))
    store = StoreHandle(load_settings(data_dir=tmp, chdb_path=tmp / "chdb"))
    try:
        write = bench_write(store, args.rows, args.batch)
        history = bench_history(store, args.history_rows, args.samples)
        csv_result = bench_csv(store, args.csv_rows)
    finally:
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)

    lines = [
        ("raw insert (clickhouse-connect)", f"{write['raw_rows_per_s']:,.0f} rows/s", ""),
        ("sink writer (dict -> rows -> insert)", f"{write['sink_rows_per_s']:,.0f} rows/s",
         ">= 100,000"),
        ("sink / raw", f"{write['ratio']:.2f}", ">= 0.9"),
        (f"Avro decode_written, {VALUES_PER_RECORD} values (info)",
         f"{write['decode_records_per_s']:,.0f} records/s", ""),
        (f"history 12 cycles, {history['snapshot_rows']:,} rows: p50",
         f"{history['p50_ms']:.1f} ms", ""),
        ("history p99 (rollup, one query)", f"{history['p99_ms']:.1f} ms", "< 5 ms"),
        ("history from detail rows p50 / p99",
         f"{history['detail_p50_ms']:.1f} / {history['detail_p99_ms']:.1f} ms", ""),
        (f"CSV of one cycle, {csv_result['csv_rows']:,} rows",
         f"{csv_result['total_s'] * 1000:.0f} ms", ""),
    ]
    width = max(len(a) for a, _, _ in lines)
    print(f"{'measure':<{width}}  {'result':>22}  target")
    for name, value, target in lines:
        print(f"{name:<{width}}  {value:>22}  {target}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "bench_sink.json"
    out.write_text(json.dumps({
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "write": write, "history": history, "csv": csv_result,
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
