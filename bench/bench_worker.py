"""Worker benchmark: sustained events/s beside a raw consumer, crossing latency, API latency,
RSS with many workspaces, and recovery time. Not a test: prints a table, writes JSON.

    .venv/bin/python -m bench.bench_worker [--events 1000000] [--workspaces 10000]

Uses the broker at METER_KAFKA_BOOTSTRAP, or starts one from deploy/ in a temp dir.
Every phase runs on its own topic prefix, so runs never see each other's data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import httpx
import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from rich.console import Console
from rich.table import Table

from bench.probes import CrossingCollector, percentile, probe_plan, probe_tokens
from deploy import kafka_local
from deploy.topics import create_topics
from meter.ports import free_port
from meter.settings import Settings, load_settings
from meter.topic_reader import end_offsets
from meter.workload import Workload, generate_events
from schemas.codec import encode_event, topic_of
from schemas.registry import default_registry
from streams.worker import INPUT_TOPICS
from tests.streams.harness import committed, worker_env

console = Console()
RESULTS = Path(__file__).resolve().parent / "results"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def broker() -> Iterator[str]:
    external = os.environ.get("METER_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    home = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
    settings = load_settings(data_dir=home, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    kafka_local.start(settings)
    try:
        yield settings.kafka_bootstrap
    finally:
        kafka_local.stop(settings)
        shutil.rmtree(home, ignore_errors=True)


def fresh_settings(bootstrap: str, data: Path, partitions: int = 4) -> Settings:
    settings = load_settings(kafka_bootstrap=bootstrap, kafka_partitions=partitions,
                             topic_prefix=f"bench{uuid.uuid4().hex[:8]}.", data_dir=data,
                             api_token="bench-token")
    create_topics(settings)
    return settings


def produce_backlog(settings: Settings, wl: Workload) -> int:
    """Produce the workload's valid events; return how many went to the worker's inputs."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap,
                         "partitioner": "murmur2_random", "linger.ms": 20,
                         "batch.size": 1_000_000, "compression.type": "lz4",
                         "queue.buffering.max.messages": 2_000_000})
    n = 0
    inputs = set(INPUT_TOPICS)
    for event in generate_events(wl):
        base = topic_of(event)
        while True:
            try:
                producer.produce(settings.topic(base),
                                 key=event.workspace_id.encode(), value=encode_event(event))
                break
            except BufferError:
                producer.poll(0.1)
        n += base in inputs
        if n % 50_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("the backlog was not fully delivered")
    return n


def raw_baseline(settings: Settings, total: int) -> float:
    """A plain confluent-kafka consumer with fastavro decode of every value: events/s."""
    registry = default_registry()
    schemas = {v.schema_id: fastavro.parse_schema(v.load())
               for v in registry.versions}  # every version, by id
    ends = end_offsets(settings, INPUT_TOPICS)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"raw-{uuid.uuid4()}", "enable.auto.commit": False})
    consumer.assign([TopicPartition(t, p, 0) for (t, p), end in ends.items() if end > 0])
    from io import BytesIO

    seen = 0
    started = time.perf_counter()
    while seen < total:
        for msg in consumer.consume(10_000, 1.0):
            value = msg.value()
            if msg.error() is not None or value is None:
                continue
            schema = schemas[int.from_bytes(value[1:5], "big")]
            fastavro.schemaless_reader(BytesIO(value[5:]), schema)
            seen += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return seen / elapsed


@contextlib.contextmanager
def worker(settings: Settings, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    env = worker_env(settings, port)
    command = [sys.executable, "-m", "meter.cli_entry", "worker"]
    with log.open("ab") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    profile = os.environ.get("BENCH_PROFILE")  # a path: py-spy samples the worker for 25 s
    if profile:
        subprocess.Popen(["py-spy", "record", "-r", "100", "-d", "25", "-p", str(proc.pid),
                          "-o", f"{profile}.{log.stem}.txt", "--format", "raw"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc, port
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_committed(settings: Settings, proc: subprocess.Popen[bytes], timeout_s: float
                   ) -> tuple[float, float]:
    """(seconds until the first commit, seconds until every input offset is committed)."""
    group = settings.topic_prefix + settings.worker_id
    ends = {k: v for k, v in end_offsets(settings, INPUT_TOPICS).items() if v > 0}
    started = time.perf_counter()
    first = None
    while time.perf_counter() - started < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError("the worker exited")
        done = committed(settings, group, ends)
        if first is None and any(v > 0 for v in done.values()):
            first = time.perf_counter() - started
        if all(done.get(k, -1) >= end for k, end in ends.items()):
            return first or 0.0, time.perf_counter() - started
        time.sleep(0.25)
    raise RuntimeError(f"the worker did not catch up within {timeout_s} s")


def phase_throughput(bootstrap: str, tmp: Path, events: int, out: dict[str, Any]) -> None:
    settings = fresh_settings(bootstrap, tmp / "throughput")
    wl = Workload(seed=1, events=events, workspaces=500, duplicate_rate=0.01,
                  invalid_rate=0.0005)
    t0 = time.perf_counter()
    produced = produce_backlog(settings, wl)
    out["backlog_events"] = produced
    out["produce_s"] = round(time.perf_counter() - t0, 1)
    console.print(f"backlog: {produced:,} events in {out['produce_s']} s")
    out["raw_consumer_events_per_s"] = round(raw_baseline(settings, produced))
    console.print(f"raw consumer + fastavro: {out['raw_consumer_events_per_s']:,} events/s")
    with worker(settings, tmp / "worker-throughput.log") as (proc, _):
        first, total = wait_committed(settings, proc, timeout_s=3600)
        out["worker_rss_mb_500_workspaces"] = round(rss_mb(proc.pid))
    steady = total - first
    out["worker_wall_s"] = round(total, 1)
    out["worker_startup_s"] = round(first, 1)
    out["worker_events_per_s"] = round(produced / steady)
    out["ratio_to_raw"] = round(out["worker_events_per_s"] / out["raw_consumer_events_per_s"], 3)


def phase_latency(bootstrap: str, tmp: Path, rate: float, seconds: float,
                  out: dict[str, Any], probes_per_s: float = 20.0) -> None:
    """Produce-to-crossing latency under a background load of ``rate`` events/s.

    The background is the workload's mix over 500 workspaces; the probes are tokens
    events of workspaces planned beforehand whose one event crosses 80, 95 and 100 %.
    """
    settings = fresh_settings(bootstrap, tmp / "latency")
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap,
                         "partitioner": "murmur2_random", "linger.ms": 1})
    probes = int(probes_per_s * seconds)
    start = int(time.time() * 1000)
    for i in range(probes):
        plan = probe_plan(i, start - 1000)
        producer.produce(settings.topic("quota.plans"), key=plan.workspace_id.encode(),
                         value=encode_event(plan))
    background = [
        (settings.topic(topic_of(e)), e.workspace_id.encode(), encode_event(e))
        for e in generate_events(Workload(seed=9, events=int(rate * seconds) + 1000,
                                          workspaces=500, duplicate_rate=0.0,
                                          invalid_rate=0.0, now_ms=start))
    ]
    warmup, timed = background[:1000], background[1000:]
    for topic, key, value in warmup:  # the 500 workspaces' plans and first events
        producer.produce(topic, key=key, value=value)
    producer.flush(30)
    collector = CrossingCollector(settings)
    collector.start()
    received = collector.received
    sent: dict[str, float] = {}
    probe_every = max(1, int(rate / probes_per_s))
    with worker(settings, tmp / "worker-latency.log") as (proc, _):
        wait_committed(settings, proc, timeout_s=300)
        interval = 1.0 / rate
        next_at = time.perf_counter()
        for n, (topic, key, value) in enumerate(timed):
            producer.produce(topic, key=key, value=value)
            i = n // probe_every
            if n % probe_every == 0 and i < probes:
                event = probe_tokens(i)
                sent[event.event_id] = time.time()
                producer.produce(settings.topic("usage.tokens"),
                                 key=event.workspace_id.encode(), value=encode_event(event))
            producer.poll(0)
            next_at += interval
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        producer.flush(10)
        deadline = time.monotonic() + 30
        while len(received) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.2)
    collector.stop()
    latencies = sorted((received[k] - sent[k]) * 1000 for k in sent if k in received)
    out["latency_background_events_per_s"] = rate
    out["latency_probes"] = len(sent)
    out["latency_received"] = len(latencies)
    if latencies:
        out["crossing_latency_p50_ms"] = round(statistics.median(latencies), 1)
        out["crossing_latency_p99_ms"] = round(percentile(latencies, 0.99), 1)


def phase_rss(bootstrap: str, tmp: Path, workspaces: int, out: dict[str, Any]) -> None:
    settings = fresh_settings(bootstrap, tmp / "rss")
    wl = Workload(seed=3, events=workspaces * 20, workspaces=workspaces, duplicate_rate=0.0,
                  invalid_rate=0.0)
    produce_backlog(settings, wl)
    with worker(settings, tmp / "worker-rss.log") as (proc, port):
        wait_committed(settings, proc, timeout_s=1800)
        out[f"worker_rss_mb_{workspaces}_workspaces"] = round(rss_mb(proc.pid))
        proc.terminate()
        proc.wait(60)
    shutil.rmtree(settings.data_dir / "faust", ignore_errors=True)  # recover from changelog
    with worker(settings, tmp / "worker-recover.log") as (proc, port):
        started = time.perf_counter()
        deadline = started + 600
        while time.perf_counter() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        out[f"recovery_s_from_changelog_{workspaces}_workspaces"] = round(
            time.perf_counter() - started, 1)


def phase_api(bootstrap: str, tmp: Path, out: dict[str, Any], requests: int = 20_000,
              concurrency: int = 16) -> None:
    settings = fresh_settings(bootstrap, tmp / "api")
    wl = Workload(seed=5, events=20_000, workspaces=200)
    produce_backlog(settings, wl)
    port = free_port()
    env = dict(os.environ, METER_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
               METER_TOPIC_PREFIX=settings.topic_prefix, METER_API_PORT=str(port),
               METER_API_TOKEN="bench-token")
    with worker(settings, tmp / "worker-api.log") as (proc, _):
        wait_committed(settings, proc, timeout_s=300)
        with (tmp / "api.log").open("wb") as log:
            api = subprocess.Popen([sys.executable, "-m", "meter.cli_entry", "api"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                time.sleep(0.2)
            latencies = asyncio.run(_hammer(base, wl.workspace_ids(), requests, concurrency))
            if shutil.which("wrk"):  # a load generator that is not itself Python
                out.update(_wrk(base, wl.workspace_ids()[0], tmp, concurrency))
        finally:
            api.terminate()
            api.wait(10)
    latencies.sort()
    out["api_requests"] = len(latencies)
    out["api_concurrency"] = concurrency
    out["api_httpx_p50_ms"] = round(statistics.median(latencies), 2)
    out["api_httpx_p99_ms"] = round(latencies[int(len(latencies) * 0.99) - 1], 2)


def _wrk(base: str, workspace: str, tmp: Path, connections: int) -> dict[str, Any]:
    """POST /v1/check for 15 s with wrk (2 threads): its own latency percentiles."""
    script = tmp / "check.lua"
    body = orjson.dumps({"workspace_id": workspace, "quota": "ai_tokens", "amount": 1})
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{body.decode()}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.headers["Authorization"] = "Bearer bench-token"\n')
    result = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", "-d15s", "--latency", "-s", str(script),
         f"{base}/v1/check"], capture_output=True, text=True, check=True)
    found: dict[str, Any] = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("50%", "99%"):
            value = parts[1]
            ms = (float(value[:-2]) if value.endswith("ms") else
                  float(value[:-2]) / 1000 if value.endswith("us") else float(value[:-1]) * 1000)
            found[f"api_wrk_p{parts[0][:-1]}_ms"] = round(ms, 2)
        if line.startswith("Requests/sec:"):
            found["api_wrk_requests_per_s"] = round(float(line.split()[1]))
        if "Non-2xx" in line:
            found["api_wrk_non_2xx"] = int(line.split()[-1])
    return found


async def _hammer(base: str, workspaces: list[str], total: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    headers = {"Authorization": "Bearer bench-token"}
    quotas = ["ai_tokens", "api_requests_per_minute", "schedule_runs", "machines"]

    async def one_client(k: int, client: httpx.AsyncClient) -> None:
        for i in range(k, total, concurrency):
            body = {"workspace_id": workspaces[i % len(workspaces)],
                    "quota": quotas[i % len(quotas)], "amount": 1}
            t = time.perf_counter()
            response = await client.post(f"{base}/v1/check", json=body, headers=headers)
            latencies.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200, response.text

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        await asyncio.gather(*(one_client(k, client) for k in range(concurrency)))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workspaces", type=int, default=10_000)
    parser.add_argument("--latency-rate", type=float, default=0.0,
                        help="probe rate for latency (default: half the measured max)")
    parser.add_argument("--phases", default="throughput,latency,api,rss")
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    out: dict[str, Any] = {"events": args.events, "cpus": os.cpu_count()}
    tmp = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    with broker() as bootstrap:
        if "throughput" in phases:
            phase_throughput(bootstrap, tmp, args.events, out)
        if "latency" in phases:
            # Half the maximum rate measured above (or given), as the issue asks.
            rate = args.latency_rate or max(100.0, out.get("worker_events_per_s", 8000) / 2)
            phase_latency(bootstrap, tmp, rate=rate, seconds=30, out=out)
        if "api" in phases:
            phase_api(bootstrap, tmp, out)
        if "rss" in phases:
            phase_rss(bootstrap, tmp, args.workspaces, out)
    table = Table(title="meter worker benchmark")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in out.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int | float) else str(value))
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "bench_worker.json"
    path.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    console.print(f"written {path}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
