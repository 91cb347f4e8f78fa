"""`meter publish` throughput to the real broker vs a plain producer of pre-encoded bytes.

    METER_KAFKA_BOOTSTRAP=127.0.0.1:19092 .venv/bin/python -m bench.bench_publish [--events N]

Writes a workload file, creates topics under a fresh prefix, then times
1. `meter publish FILE` end to end (process start, parse, validate, encode, produce,
   flush: every delivery acknowledged);
2. a plain confluent-kafka producer (same settings: idempotent, acks=all,
   murmur2_random, same linger and batching) sending the already-encoded bytes and flushing.
Prints a table and writes bench/results/publish.json. Topics are left behind under
the prefix it prints (delete them or reset the dev broker).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer
from rich.console import Console
from rich.table import Table

from bench.topics import throwaway_topics
from groundwork.kafka import producer_config
from groundwork.settings import load_settings
from meter.workload import Workload, generate_events, write_jsonl
from schemas.codec import encode_event, topic_of
from schemas.publisher import PRODUCER_DEFAULTS

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000)
    args = parser.parse_args()
    console = Console()
    settings = load_settings(topic_prefix=f"bench{uuid.uuid4().hex[:8]}.")
    throwaway_topics(settings)
    console.print(f"topics under prefix {settings.topic_prefix!r} on {settings.kafka_bootstrap}")
    wl = Workload(seed=21, events=args.events, workspaces=200, invalid_rate=0,
                  duplicate_rate=0, now_ms=int(time.time() * 1000) - 600_000)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "workload.jsonl"
        lines = write_jsonl(path, wl)
        env = {**os.environ, "METER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
               "METER_TOPIC_PREFIX": settings.topic_prefix}
        meter = str(Path(sys.executable).with_name("meter"))
        started = time.perf_counter()
        done = subprocess.run([meter, "publish", str(path)], env=env, cwd=tmp,
                              capture_output=True, text=True)
        cli_s = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"meter publish failed:\n{done.stderr}")

    prepared = [(settings.topic(topic_of(e)), e.workspace_id.encode(), encode_event(e))
                for e in generate_events(wl)]
    producer = Producer(producer_config(settings, **PRODUCER_DEFAULTS))
    failed = 0

    def report(err: object, _msg: object) -> None:
        nonlocal failed
        failed += err is not None

    started = time.perf_counter()
    for topic, key, value in prepared:
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(60)
    raw_s = time.perf_counter() - started
    if failed or left:
        raise SystemExit(f"plain producer: {failed} failed, {left} undelivered")

    rates = {"meter publish (file -> acked)": lines / cli_s,
             "plain producer, pre-encoded bytes": len(prepared) / raw_s}
    table = Table(title=f"publish to {settings.kafka_bootstrap} ({lines:,} lines)")
    table.add_column("what")
    table.add_column("seconds", justify="right")
    table.add_column("events/s", justify="right")
    table.add_row("meter publish (file -> acked)", f"{cli_s:.2f}",
                  f"{rates['meter publish (file -> acked)']:,.0f}")
    table.add_row("plain producer, pre-encoded bytes", f"{raw_s:.2f}",
                  f"{rates['plain producer, pre-encoded bytes']:,.0f}")
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "publish.json").write_text(json.dumps({
        "lines": lines, "seconds": {"meter_publish": round(cli_s, 3),
                                    "plain_producer": round(raw_s, 3)},
        "rates_per_s": {k: round(v) for k, v in rates.items()},
        "target_meter_publish_per_s": 50_000,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
