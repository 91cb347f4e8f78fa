"""Worker benchmark: backlog throughput beside a raw consumer (with an optional py-spy
profile), produce-to-crossing latency, check API latency, restart times, and scale-out
with the rebalance pause. Not a test: prints tables, writes JSON (no timing assertions).

    .venv/bin/python -m bench.bench_worker [--events 1000000] [--throughput-workspaces 2000]
        [--workspaces 10000] [--scale-events 300000] [--profile]
        [--phases throughput,latency,api,restart,scale] [--out bench/results/bench_worker.json]

Phases (each on topics of its own prefix, so runs never see each other's data):

- ``throughput``: a backlog of ``--events`` over ``--throughput-workspaces`` workspaces on
  4 partitions; a raw confluent-kafka consumer with fastavro decode reads the same topics
  first (the baseline), then one worker drains it. Its rate is measured from its first
  commit to its last (steady), and its wall time from the process start. ``--profile``
  samples the worker with py-spy (``record -r 100 -d 30 --format raw``) for 30 s in the
  middle of the drain and summarizes where the time goes (bench/profile_summary.py);
  py-spy pauses the worker at each sample, so a profiled run's rate is a little lower.
- ``latency``: produce-to-crossing latency under a background load of half the rate
  measured above (or ``--latency-rate``): p50 and p99 (target p99 < 250 ms), probes
  from ``--latency-warmup-seconds`` (5 s) into the load on (see ``phase_latency``).
- ``api``: the check API's latency (httpx, and wrk when installed) against the view of
  the worker's outputs.
- ``restart``: ``--workspaces`` workspaces (20 events each) caught up, then: SIGTERM and
  start again with the store intact; SIGKILL and start again (the killed member stays in
  the group until its session times out, METER_WORKER_SESSION_TIMEOUT_MS, 15 s by default,
  before its partitions can be reassigned); SIGTERM, delete ``<data dir>/worker`` and start
  (the changelogs are restored whole). Each: seconds from the new process's start until
  /readyz answers 200 (targets: intact < 3 s, store deleted < 15 s). And the worker's RSS
  after catching up.
- ``scale``: 8 partitions, a backlog of ``--scale-events`` drained by 1, 2, then 4 workers
  (``--scale-workers``) started together, each with its own data dir and web port, on
  fresh topics each: the group's events/s from its first commit to all caught up. Then
  the rebalance pause: one worker under a paced live load (``--rebalance-rate`` events/s
  with crossing probes), a second one started: the longest gap between crossing arrivals
  and the largest crossing latency around the rebalance, and the seconds from starting
  worker 2 until both log ``owns partitions`` (after each assignment's restore).

Uses the broker at METER_KAFKA_BOOTSTRAP, or starts one from deploy/ in a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import fastavro
import httpx
import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from rich.console import Console
from rich.table import Table

from bench.probes import (
    CrossingCollector,
    Delivery,
    paced,
    percentile,
    plan_records,
    probe_plan,
    probe_tokens,
    produce_all,
)
from bench.profile_summary import print_summary, summarize_file
from bench.topics import throwaway_topics
from bench.wrk import wrk_numbers
from deploy import kafka_local
from groundwork.kafka import end_offsets, producer_config
from groundwork.ports import free_port
from groundwork.settings import Settings, load_settings
from meter.workload import Workload, generate_events
from schemas.codec import encode_event, topic_of
from schemas.registry import default_registry
from streams.worker import INPUT_TOPICS
from tests.streams.harness import worker_env

console = Console()
RESULTS = Path(__file__).resolve().parent / "results"
SESSION_TIMEOUT_NOTE = (
    "after SIGKILL the dead member stays in the group until its session times out "
    "(METER_WORKER_SESSION_TIMEOUT_MS, 15 s by default; no static membership), and only "
    "then are its partitions reassigned to the restarted worker: that wait is in this time")


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
    throwaway_topics(settings)
    return settings


BaseRecord = tuple[str, bytes, bytes]  # (DESIGN.md topic name, key, value)


def encode_backlog(wl: Workload) -> list[BaseRecord]:
    """The workload's valid events, encoded, for producing to any topic prefix."""
    return [(topic_of(e), e.workspace_id.encode(), encode_event(e)) for e in generate_events(wl)]


def produce_records(settings: Settings, records: Iterable[BaseRecord]) -> int:
    """Produce (base topic, key, value) records under ``settings``' prefix; return how
    many went to the worker's inputs."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap,
                         "partitioner": "murmur2_random", "linger.ms": 20,
                         "batch.size": 1_000_000, "compression.type": "lz4",
                         "queue.buffering.max.messages": 2_000_000})
    n = 0
    inputs = set(INPUT_TOPICS)
    topics = {base: settings.topic(base) for base in INPUT_TOPICS}
    for base, key, value in records:
        topic = topics.get(base) or settings.topic(base)
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
        n += base in inputs
        if n % 50_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("the backlog was not fully delivered")
    return n


def produce_backlog(settings: Settings, wl: Workload) -> int:
    """Produce the workload's valid events; return how many went to the worker's inputs."""
    return produce_records(settings, ((topic_of(e), e.workspace_id.encode(), encode_event(e))
                                      for e in generate_events(wl)))


def raw_baseline(settings: Settings, total: int) -> float:
    """A plain confluent-kafka consumer with fastavro decode of every value: events/s from
    its first record to its last."""
    registry = default_registry()
    schemas = {v.schema_id: fastavro.parse_schema(v.load())
               for v in registry.versions}  # every version, by id
    ends = end_offsets(settings, INPUT_TOPICS)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"raw-{uuid.uuid4()}", "enable.auto.commit": False})
    consumer.assign([TopicPartition(t, p, 0) for (t, p), end in ends.items() if end > 0])
    from io import BytesIO

    seen = 0
    started: float | None = None  # from the first record: like the worker's steady rate
    while seen < total:
        for msg in consumer.consume(10_000, 1.0):
            value = msg.value()
            if msg.error() is not None or value is None:
                continue
            if started is None:
                started = time.perf_counter()
            schema = schemas[int.from_bytes(value[1:5], "big")]
            fastavro.schemaless_reader(BytesIO(value[5:]), schema)
            seen += 1
    elapsed = time.perf_counter() - (started or 0.0)
    consumer.close()
    return seen / elapsed


# -- workers -----------------------------------------------------------------------------


def start_worker(settings: Settings, log: Path, data_dir: Path | None = None,
                 port: int | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """A `meter worker` process (its own data dir gives it its own instance id)."""
    port = port or free_port()
    env = worker_env(settings, port)
    if data_dir is not None:
        env["METER_DATA_DIR"] = str(data_dir)
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "meter.cli_entry", "worker"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    profile = os.environ.get("BENCH_PROFILE")  # ad hoc: a path, py-spy samples 25 s from start
    if profile:
        subprocess.Popen([py_spy(), "record", "-r", "100", "-d", "25", "-p", str(proc.pid),
                          "-o", f"{profile}.{log.stem}.txt", "--format", "raw"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port


def stop_worker(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
                timeout_s: float = 60) -> float:
    """Send ``sig`` (unless it exited); seconds until it exited (killed after ``timeout_s``)."""
    started = time.perf_counter()
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return time.perf_counter() - started


@contextlib.contextmanager
def worker(settings: Settings, log: Path, data_dir: Path | None = None,
           port: int | None = None) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A running worker: (process, web port); stopped with SIGTERM (if still running)."""
    proc, port = start_worker(settings, log, data_dir, port)
    try:
        yield proc, port
    finally:
        stop_worker(proc, timeout_s=30)


def wait_ready(port: int, procs: list[subprocess.Popen[bytes]], started: float,
               timeout_s: float = 600) -> float:
    """Seconds from ``started`` (perf_counter) until /readyz answers 200."""
    deadline = started + timeout_s
    with httpx.Client(timeout=1) as client:
        while time.perf_counter() < deadline:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a worker exited")
            with contextlib.suppress(httpx.TransportError):
                if client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    return time.perf_counter() - started
            time.sleep(0.05)
    raise RuntimeError(f"the worker was not ready within {timeout_s} s")


def worker_metrics(port: int) -> dict[str, float]:
    """The worker's /metrics: name -> value; a labelled series (consumer lag, LSO gap)
    appears as the sum over its labels under its bare name."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        name = name.partition("{")[0]
        found[name] = found.get(name, 0.0) + float(value)
    return found


_OWNS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*owns partitions \[([\d, ]*)\]")


def ownership(log: Path) -> list[tuple[float, list[int]]]:
    """(wall time, partitions) of each ``owns partitions [...]`` line of a worker log
    (written after each assignment's restore; local time, as logging writes it)."""
    found = []
    with contextlib.suppress(FileNotFoundError), log.open(errors="replace") as lines:
        for line in lines:
            match = _OWNS.match(line)
            if match:
                at = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                parts = [int(p) for p in match.group(2).split(",") if p.strip()]
                found.append((at, parts))
    return found


# -- catching up ---------------------------------------------------------------------------


@dataclass
class Progress:
    elapsed_s: float  # since the worker(s) started
    done: int  # input records committed by the group
    total: int
    first_commit_s: float | None
    done_at_first: int


@dataclass
class CatchUp:
    first_commit_s: float  # from the worker's start until a commit was first seen
    caught_up_s: float  # ... until every input offset was committed
    done_at_first: int  # records committed when the first commit was seen
    total: int  # input records
    timeline: list[tuple[float, int]]  # (wall time, records committed), every poll

    @property
    def steady_per_s(self) -> float:
        """Records/s from the first commit seen to the last (polled every 0.25 s)."""
        span = self.caught_up_s - self.first_commit_s
        if span <= 0 or self.total <= self.done_at_first:
            return self.total / self.caught_up_s if self.caught_up_s > 0 else 0.0
        return (self.total - self.done_at_first) / span

    def rate_since(self, wall: float) -> float | None:
        """Records/s from the first poll at or after ``wall`` (time.time()) to the end."""
        end_t, end_done = self.timeline[-1]
        for t, done in self.timeline:
            if t >= wall:
                return (end_done - done) / (end_t - t) if end_t > t else None
        return None


def catch_up(settings: Settings, procs: list[subprocess.Popen[bytes]], timeout_s: float,
             started: float | None = None,
             on_progress: Callable[[Progress], None] | None = None) -> CatchUp:
    """Until the worker group has committed every input offset; times from ``started``
    (perf_counter, default now). Input topics are written without transactions, so the
    committed offsets sum to the records consumed."""
    group = settings.topic(settings.worker_id)
    ends = {k: v for k, v in end_offsets(settings, INPUT_TOPICS).items() if v > 0}
    total = sum(ends.values())
    started = time.perf_counter() if started is None else started
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group,
                         "enable.auto.commit": False})  # asks; never joins, never commits
    tps = [TopicPartition(t, p) for t, p in ends]
    first: float | None = None
    done_at_first = 0
    timeline: list[tuple[float, int]] = []
    try:
        while time.perf_counter() - started < timeout_s:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a worker exited")
            try:
                found = consumer.committed(tps, timeout=10)
            except KafkaException as exc:  # a busy broker or a coordinator loading: ask again
                console.print(f"[yellow]committed offsets not known yet: {exc}")
                time.sleep(0.5)
                continue
            now = time.perf_counter() - started
            done = sum(min(max(tp.offset, 0), ends[(tp.topic, tp.partition)]) for tp in found)
            timeline.append((time.time(), done))
            if first is None and done > 0:
                first, done_at_first = now, done
            if done >= total:
                return CatchUp(first or now, now, done_at_first, total, timeline)
            if on_progress is not None:
                on_progress(Progress(now, done, total, first, done_at_first))
            time.sleep(0.25)
    finally:
        consumer.close()
    raise RuntimeError(f"the worker did not catch up within {timeout_s} s")


# -- profile -------------------------------------------------------------------------------


def py_spy() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else (shutil.which("py-spy") or "py-spy")


class MidDrainProfiler:
    """Starts ``py-spy record`` on the worker once, so that its ``seconds`` sit in the
    middle of the drain as estimated from the rate since the first commit (or as soon as
    the rate is known, when the drain looks shorter than the profile)."""

    def __init__(self, pid: int, path: Path, seconds: float) -> None:
        self.pid, self.path, self.seconds = pid, path, seconds
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_s: float | None = None  # since the worker's start
        self.started_fraction: float | None = None
        self.estimated_drain_s: float | None = None

    def __call__(self, p: Progress) -> None:
        if self.proc is not None or p.first_commit_s is None:
            return
        since = p.elapsed_s - p.first_commit_s
        if since < 1.0 or p.done <= p.done_at_first:
            return
        rate = (p.done - p.done_at_first) / since
        drain = (p.total - p.done_at_first) / rate
        if p.elapsed_s >= p.first_commit_s + max(0.0, drain / 2 - self.seconds / 2):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.proc = subprocess.Popen(
                [py_spy(), "record", "-r", "100", "-d", str(int(self.seconds)), "-p",
                 str(self.pid), "--format", "raw", "-o", str(self.path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.started_s, self.estimated_drain_s = p.elapsed_s, drain
            self.started_fraction = p.done / p.total

    def finish(self) -> dict[str, Any]:
        """Wait for py-spy to write its file; the summary (or why there is none)."""
        if self.proc is None:
            return {"error": "the drain ended before the profile could start"}
        try:
            _, err = self.proc.communicate(timeout=self.seconds + 60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return {"error": "py-spy did not finish"}
        if self.proc.returncode != 0 or not self.path.exists():
            return {"error": f"py-spy failed: {err.decode(errors='replace').strip()[-300:]}"}
        summary = summarize_file(self.path)
        return {"file": str(self.path), "seconds": self.seconds, "rate_hz": 100,
                "started_s_after_worker_start": round(self.started_s or 0.0, 1),
                "started_at_backlog_fraction": round(self.started_fraction or 0.0, 3),
                # py-spy leaves idle threads out: samples per tick say how busy it was
                "busy_pct": round(100 * summary["samples"] / (self.seconds * 100), 1),
                **summary}


# -- phases --------------------------------------------------------------------------------


def phase_throughput(bootstrap: str, tmp: Path, events: int, workspaces: int,
                     out: dict[str, Any], profile: Path | None, profile_s: float) -> None:
    settings = fresh_settings(bootstrap, tmp / "throughput")
    wl = Workload(seed=1, events=events, workspaces=workspaces, duplicate_rate=0.01,
                  invalid_rate=0.0005)
    t0 = time.perf_counter()
    produced = produce_backlog(settings, wl)
    out["backlog_events"] = produced
    out["backlog_workspaces"] = workspaces
    out["backlog_partitions"] = settings.kafka_partitions
    out["produce_s"] = round(time.perf_counter() - t0, 1)
    console.print(f"backlog: {produced:,} events over {workspaces:,} workspaces in "
                  f"{out['produce_s']} s")
    out["raw_consumer_events_per_s"] = round(raw_baseline(settings, produced))
    console.print(f"raw consumer + fastavro: {out['raw_consumer_events_per_s']:,} events/s")
    started = time.perf_counter()
    with worker(settings, tmp / "worker-throughput.log") as (proc, port):
        profiler = MidDrainProfiler(proc.pid, profile, profile_s) if profile else None
        done = catch_up(settings, [proc], timeout_s=3600, started=started,
                        on_progress=profiler)
        out[f"worker_rss_mb_{workspaces}_workspaces"] = round(rss_mb(proc.pid))
        counters = worker_metrics(port)
        if profiler is not None:
            out["profile"] = profiler.finish()
    out["worker_first_commit_s"] = round(done.first_commit_s, 1)
    out["worker_wall_s"] = round(done.caught_up_s, 1)
    out["worker_events_per_s"] = round(done.steady_per_s)
    out["worker_events_per_s_wall"] = round(produced / done.caught_up_s)
    out["ratio_to_raw"] = round(out["worker_events_per_s"] / out["raw_consumer_events_per_s"], 3)
    batches = int(counters.get("meter_worker_batches_total", 0))
    out["worker_batches"] = batches
    out["worker_events_per_batch"] = round(produced / batches) if batches else None
    out["worker_transactions_aborted"] = int(
        counters.get("meter_worker_transactions_aborted_total", 0))
    out["worker_alignment_timeouts"] = int(
        counters.get("meter_worker_alignment_timeouts_total", 0))
    if profile:
        out.setdefault("notes", {})["throughput_profile"] = (
            "py-spy stops the worker briefly at each of its 100 samples/s: the rate of a "
            "profiled run is a little below an unprofiled one")


def phase_latency(bootstrap: str, tmp: Path, rate: float, seconds: float,
                  out: dict[str, Any], probes_per_s: float = 20.0,
                  warmup_s: float = 5.0) -> None:
    """Produce-to-crossing latency under a background load of ``rate`` events/s.

    The background is the workload's mix over 500 workspaces; the probes are tokens
    events of workspaces planned beforehand whose one event crosses 80, 95 and 100 %.
    The first probe goes ``warmup_s`` into the paced load: in the first ~3 s after the
    topics are created and the load starts, the broker acknowledged the bench's own
    records 100-500 ms late (delivery reports, 2026-12-06) while the worker sat waiting
    for input, and those few seconds alone set the p99 of a 60 s run (1 % is 12 probes).
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
        for e in generate_events(Workload(seed=9,
                                          events=int(rate * (warmup_s + seconds)) + 1000,
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
    unprobed = int(rate * warmup_s)  # paced events before the first probe
    with worker(settings, tmp / "worker-latency.log") as (proc, _):
        catch_up(settings, [proc], timeout_s=300)
        interval = 1.0 / rate
        next_at = paced_from = time.perf_counter()
        for n, (topic, key, value) in enumerate(timed):
            producer.produce(topic, key=key, value=value)
            i = (n - unprobed) // probe_every
            if n >= unprobed and (n - unprobed) % probe_every == 0 and i < probes:
                event = probe_tokens(i)
                sent[event.event_id] = time.time()
                producer.produce(settings.topic("usage.tokens"),
                                 key=event.workspace_id.encode(), value=encode_event(event))
            producer.poll(0)
            next_at += interval
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        achieved = len(timed) / (time.perf_counter() - paced_from)  # the producer kept up?
        producer.flush(10)
        deadline = time.monotonic() + 30
        while len(received) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.2)
    collector.stop()
    latencies = sorted((received[k] - sent[k]) * 1000 for k in sent if k in received)
    out["latency_background_events_per_s"] = round(rate)
    out["latency_background_achieved_per_s"] = round(achieved)
    out["latency_seconds"] = seconds
    out["latency_warmup_seconds"] = warmup_s
    out["latency_probes"] = len(sent)
    out["latency_received"] = len(latencies)
    if latencies:
        out["crossing_latency_p50_ms"] = round(statistics.median(latencies), 1)
        out["crossing_latency_p99_ms"] = round(percentile(latencies, 0.99), 1)
        out["crossing_latency_max_ms"] = round(latencies[-1], 1)


def phase_restart(bootstrap: str, tmp: Path, workspaces: int, out: dict[str, Any]) -> None:
    """Restart times: store intact after SIGTERM, after SIGKILL, and store deleted."""
    settings = fresh_settings(bootstrap, tmp / "restart")
    wl = Workload(seed=3, events=workspaces * 20, workspaces=workspaces, duplicate_rate=0.0,
                  invalid_rate=0.0)
    produced = produce_backlog(settings, wl)
    out["restart_workspaces"] = workspaces
    out["restart_backlog_events"] = produced
    key = f"{workspaces}_workspaces"

    def timed_start(label: str) -> tuple[subprocess.Popen[bytes], int]:
        started = time.perf_counter()
        proc, port = start_worker(settings, tmp / f"worker-restart-{label}.log")
        ready = wait_ready(port, [proc], started)
        counters = worker_metrics(port)
        out[f"restart_{label}_ready_s"] = round(ready, 2)
        out[f"restart_{label}_restored_records"] = int(
            counters.get("meter_worker_restored_records_total", 0))
        console.print(f"restart ({label}): ready {ready:.2f} s after the process start, "
                      f"{out[f'restart_{label}_restored_records']:,} changelog records "
                      "restored")
        return proc, port

    proc, port = start_worker(settings, tmp / "worker-restart-first.log")
    try:
        done = catch_up(settings, [proc], timeout_s=1800)
        out[f"worker_catch_up_s_{key}"] = round(done.caught_up_s, 1)
        out[f"worker_rss_mb_{key}"] = round(rss_mb(proc.pid))
        time.sleep(2.5)  # the worker refreshes its gauges every 2 s
        counters = worker_metrics(port)
        out[f"worker_store_keys_{key}"] = int(counters.get("meter_worker_store_keys", 0))
        out["restart_sigterm_stop_s"] = round(stop_worker(proc), 2)
        # (a) store intact, after SIGTERM
        proc, port = timed_start("intact")
        # (b) store intact, after SIGKILL
        stop_worker(proc, signal.SIGKILL)
        proc, port = timed_start("after_sigkill")
        # (c) store deleted
        stop_worker(proc)
        shutil.rmtree(settings.data_dir / "worker")
        proc, port = timed_start("store_deleted")
        out[f"worker_rss_mb_{key}_after_full_restore"] = round(rss_mb(proc.pid))
    finally:
        stop_worker(proc)
    out.setdefault("notes", {})["restart_after_sigkill_ready_s"] = SESSION_TIMEOUT_NOTE


def _start_group(settings: Settings, tmp: Path, n: int, label: str
                 ) -> list[tuple[subprocess.Popen[bytes], int, Path]]:
    workers = []
    for i in range(n):
        log = tmp / f"worker-{label}-{i + 1}.log"
        proc, port = start_worker(settings, log, settings.data_dir / f"w{i + 1}")
        workers.append((proc, port, log))
    return workers


def _stop_group(workers: list[tuple[subprocess.Popen[bytes], int, Path]]) -> None:
    for proc, _, _ in workers:  # all signalled first: no rebalance storm while stopping
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc, _, _ in workers:
        stop_worker(proc)


def phase_scale(bootstrap: str, tmp: Path, events: int, workspaces: int,
                counts: list[int], out: dict[str, Any]) -> None:
    """The same backlog on 8 partitions drained by 1, 2, 4 workers started together."""
    records = encode_backlog(Workload(seed=7, events=events, workspaces=workspaces,
                                      duplicate_rate=0.01, invalid_rate=0.0005))
    out["scale_partitions"] = 8
    out["scale_workspaces"] = workspaces
    single: float | None = None
    for n in counts:
        settings = fresh_settings(bootstrap, tmp / f"scale-{n}", partitions=8)
        produced = produce_records(settings, records)
        out["scale_backlog_events"] = produced
        if single is None:  # the baseline, once
            out["scale_raw_consumer_events_per_s"] = round(raw_baseline(settings, produced))
        started, started_wall = time.perf_counter(), time.time()
        workers = _start_group(settings, tmp, n, f"scale{n}")
        try:
            done = catch_up(settings, [w[0] for w in workers], timeout_s=3600, started=started)
            rss = [round(rss_mb(proc.pid)) for proc, _, _ in workers]
            processed = [int(worker_metrics(port).get("meter_worker_processed_total", 0))
                         for _, port, _ in workers]
        finally:
            _stop_group(workers)
        owned = [ownership(log) for _, _, log in workers]
        rate = done.steady_per_s
        single = single or rate
        prefix = f"scale_{n}_workers"
        out[f"{prefix}_events_per_s"] = round(rate)
        out[f"{prefix}_speedup"] = round(rate / single, 2)
        out[f"{prefix}_first_commit_s"] = round(done.first_commit_s, 1)
        out[f"{prefix}_wall_s"] = round(done.caught_up_s, 1)
        out[f"{prefix}_events_per_s_wall"] = round(produced / done.caught_up_s)
        if all(owned):  # from the group's last assignment (every worker restored) on
            settled = max(o[-1][0] for o in owned)
            out[f"{prefix}_settled_s"] = round(settled - started_wall, 1)
            after = done.rate_since(settled)
            out[f"{prefix}_events_per_s_settled"] = round(after) if after else None
        out[f"{prefix}_rss_mb"] = rss
        out[f"{prefix}_processed"] = processed
        out[f"{prefix}_assignments"] = [len(o) for o in owned]
        out[f"{prefix}_final_partitions"] = [o[-1][1] if o else [] for o in owned]
        out.setdefault("notes", {})["scale"] = (
            "events/s from the group's first commit to all caught up; 'settled' from the "
            "last worker's 'owns partitions' (the group's final assignment, restored) on. "
            "Workers start together but join a few hundred ms apart: the first ones drain "
            "alone until the rebalance, as '_processed' (per worker) and '_assignments' "
            "show")
        console.print(f"scale: {n} worker(s): {rate:,.0f} events/s from the first commit "
                      f"({done.caught_up_s:.1f} s wall), processed {processed}")


def phase_rebalance(bootstrap: str, tmp: Path, rate: float, seconds: float, workspaces: int,
                    out: dict[str, Any], probes_per_s: float = 10.0) -> None:
    """One worker on 8 partitions under a paced live load; a second worker starts a
    third of the way in: the pause in crossings, and how long until both own partitions."""
    settings = fresh_settings(bootstrap, tmp / "rebalance", partitions=8)
    probes = int(probes_per_s * seconds)
    control, usage = plan_records(settings, rate, seconds, workspaces, probes, seed=13)
    producer = Producer(producer_config(settings, **{"linger.ms": 5}))
    delivery = Delivery()
    produce_all(producer, control, delivery)
    collector = CrossingCollector(settings)
    collector.start()
    sent: dict[str, float] = {}
    produced = [0]
    workers = _start_group(settings, tmp, 1, "rebalance")
    try:
        catch_up(settings, [workers[0][0]], timeout_s=600)
        load = threading.Thread(
            target=paced, name="paced-load",
            args=(producer, usage, rate, probes, settings.topic("usage.tokens"), sent,
                  produced, delivery), daemon=True)
        load_started = time.time()
        load.start()
        time.sleep(seconds / 3)
        second_at, second_perf = time.time(), time.perf_counter()
        proc, port = start_worker(settings, tmp / "worker-rebalance-2.log",
                                  settings.data_dir / "w2")
        workers.append((proc, port, tmp / "worker-rebalance-2.log"))
        second_ready = wait_ready(port, [w[0] for w in workers], second_perf, timeout_s=300)
        both_at: float | None = None
        owners: list[list[int]] = []
        deadline = time.time() + 300
        while both_at is None and time.time() < deadline:
            latest = [[o for o in ownership(log) if o[0] >= second_at - 0.5]
                      for _, _, log in workers]
            if all(latest):
                parts = [set(lines[-1][1]) for lines in latest]
                if not parts[0] & parts[1] and len(parts[0] | parts[1]) == 8:
                    both_at = max(lines[-1][0] for lines in latest)
                    owners = [sorted(p) for p in parts]
            time.sleep(0.2)
        load.join()
        if producer.flush(60):
            raise RuntimeError("the paced events were not all delivered")
        catch_up(settings, [w[0] for w in workers], timeout_s=600)
        deadline_s = time.monotonic() + 30
        while len(collector.received) < len(sent) and time.monotonic() < deadline_s:
            time.sleep(0.2)
    finally:
        _stop_group(workers)
        collector.stop()
    received = collector.received
    if both_at is None:
        raise RuntimeError("the two workers never both reported owning partitions")
    arrivals = sorted(received[k] for k in sent if k in received)
    latency = {k: (received[k] - sent[k]) * 1000 for k in sent if k in received}

    def max_gap(lo: float, hi: float) -> tuple[float, float]:
        """(longest gap between crossing arrivals that began in [lo, hi], in ms; when)."""
        points = [lo, *(a for a in arrivals if a >= lo)]
        gaps = [(b - a, a) for a, b in itertools.pairwise(points) if a <= hi]
        gap, at = max(gaps, default=(0.0, lo))
        return gap * 1000, at

    def stats(lo: float, hi: float) -> list[float]:
        return sorted(v for k, v in latency.items() if lo <= sent[k] < hi)

    load_end = load_started + seconds
    before = stats(load_started + 5, second_at)
    around = stats(second_at, both_at + 5)
    after = stats(both_at + 5, load_end)
    gap_before, _ = max_gap(load_started + 5, second_at)
    gap_around, gap_at = max_gap(second_at, min(load_end, both_at + 10))
    prefix = "rebalance"
    out[f"{prefix}_load_events_per_s"] = round(rate)
    out[f"{prefix}_load_seconds"] = seconds
    out[f"{prefix}_probes_sent"] = len(sent)
    out[f"{prefix}_probes_received"] = len(arrivals)
    out[f"{prefix}_both_own_partitions_s"] = round(both_at - second_at, 2)
    out[f"{prefix}_owners"] = owners
    out[f"{prefix}_worker2_ready_s"] = round(second_ready, 2)
    out[f"{prefix}_max_crossing_gap_before_ms"] = round(gap_before)
    out[f"{prefix}_max_crossing_gap_ms"] = round(gap_around)
    out[f"{prefix}_max_crossing_gap_starts_s"] = round(gap_at - second_at, 2)
    for label, values in (("before", before), ("around", around), ("after", after)):
        if values:
            out[f"{prefix}_latency_{label}_p50_ms"] = round(percentile(values, 0.5))
            out[f"{prefix}_latency_{label}_p99_ms"] = round(percentile(values, 0.99))
            out[f"{prefix}_latency_{label}_max_ms"] = round(values[-1])
    out.setdefault("notes", {})["rebalance"] = (
        "times from starting worker 2; 'around' = probes sent from then until 5 s after "
        "both workers logged owning partitions, 'before'/'after' = the rest of the load; "
        "gaps are between arrivals of probe crossings (10 probes/s, so ~100 ms apart "
        "when nothing stalls)")
    console.print(f"rebalance: both own partitions {both_at - second_at:.2f} s after worker 2 "
                  f"started; longest crossing gap {gap_around:,.0f} ms (before: "
                  f"{gap_before:,.0f} ms)")


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
        catch_up(settings, [proc], timeout_s=300)
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
    numbers = wrk_numbers(result.stdout)
    found: dict[str, Any] = {f"api_wrk_{k}": round(numbers[k], 2) for k in ("p50_ms", "p99_ms")
                             if k in numbers}
    if "non_2xx" in numbers:
        found["api_wrk_non_2xx"] = int(numbers["non_2xx"])
    if "requests_per_s" in numbers:
        found["api_wrk_requests_per_s"] = round(numbers["requests_per_s"])
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


def report(out: dict[str, Any]) -> None:
    table = Table(title="meter worker benchmark")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in out.items():
        if isinstance(value, dict):
            continue
        table.add_row(key, f"{value:,}" if isinstance(value, int | float) else str(value))
    console.print(table)
    profile = out.get("profile")
    if profile and "by_area_pct" in profile:
        print_summary(profile, title=f"worker profile, {profile['seconds']:.0f} s mid-drain")
    elif profile:
        console.print(f"[yellow]profile: {profile.get('error')}")
    for key, note in out.get("notes", {}).items():
        console.print(f"note ({key}): {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000,
                        help="throughput backlog (events)")
    parser.add_argument("--throughput-workspaces", type=int, default=2_000,
                        help="workspaces of the throughput and scale backlogs and the "
                             "rebalance load")
    parser.add_argument("--workspaces", type=int, default=10_000,
                        help="workspaces of the restart phase (20 events each)")
    parser.add_argument("--latency-rate", type=float, default=0.0,
                        help="background events/s for latency (default: half the measured "
                             "throughput)")
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--latency-warmup-seconds", type=float, default=5.0,
                        help="seconds of the paced load before the first probe")
    parser.add_argument("--scale-events", type=int, default=300_000)
    parser.add_argument("--scale-workers", default="1,2,4",
                        help="worker counts of the scale-out runs, the first is the reference")
    parser.add_argument("--rebalance-rate", type=float, default=1000.0,
                        help="events/s of the live load during the rebalance")
    parser.add_argument("--rebalance-seconds", type=float, default=60.0,
                        help="seconds of live load; worker 2 starts a third of the way in")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the worker mid-drain in the throughput phase")
    parser.add_argument("--profile-seconds", type=float, default=30.0)
    parser.add_argument("--phases", default="throughput,latency,api,restart,scale")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_worker.json",
                        help="the JSON results (the raw profile goes to profiles/ beside it)")
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    unknown = phases - {"throughput", "latency", "api", "restart", "scale"}
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {"cpus": os.cpu_count()}
    tmp = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    profile = (args.out.parent / "profiles" / f"{args.out.stem}_throughput.txt"
               if args.profile else None)
    try:
        with broker() as bootstrap:
            if "throughput" in phases:
                phase_throughput(bootstrap, tmp, args.events, args.throughput_workspaces, out,
                                 profile, args.profile_seconds)
            if "latency" in phases:
                # Half the maximum rate measured above (or given), as the issue asks.
                rate = args.latency_rate or max(100.0,
                                                out.get("worker_events_per_s", 8000) / 2)
                phase_latency(bootstrap, tmp, rate=rate, seconds=args.latency_seconds,
                              out=out, warmup_s=args.latency_warmup_seconds)
            if "api" in phases:
                phase_api(bootstrap, tmp, out)
            if "restart" in phases:
                phase_restart(bootstrap, tmp, args.workspaces, out)
            if "scale" in phases:
                counts = [int(n) for n in args.scale_workers.split(",")]
                phase_scale(bootstrap, tmp, args.scale_events, args.throughput_workspaces,
                            counts, out)
                phase_rebalance(bootstrap, tmp, args.rebalance_rate, args.rebalance_seconds,
                                args.throughput_workspaces, out)
    except BaseException:
        console.print(f"[red]failed; the workers' logs stay in {tmp}")
        raise
    report(out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    console.print(f"written {args.out}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
