"""Sustained load: one `meter worker` under a fixed event rate for minutes, with the worker's
RSS, its consumer lag and the crossing latency sampled every second. RSS must stay flat.
Not a test: prints a per-minute table and a summary with an honest verdict, writes JSON
(every sample and the summary) to bench/results/bench_load.json.

    .venv/bin/python -m bench.bench_load [--rate 1000] [--duration 300] [--workspaces 2000]

Uses the broker at METER_KAFKA_BOOTSTRAP, or starts one from deploy/ in a temp dir, on a
topic prefix of its own. The control events (plans, alert settings, machines) of the
workload and the probe workspaces' plans go first and the worker catches up on them; then
the usage events are produced at --rate events/s, timed around the wall clock, plus
--probes-per-s tokens events that each cross 100 % of a probe workspace's quota
(bench/probes.py): their produce time against the crossing's arrival on quota.thresholds
is the latency. At the end the worker must catch up and its processed count must equal
the events produced. "Flat": the least-squares RSS slope after the warm-up is below
--flat-mb-per-min.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from rich.table import Table

from bench.bench_worker import RESULTS, broker, console, fresh_settings, rss_mb, wait_committed
from bench.bench_worker import worker as running_worker
from bench.probes import CrossingCollector, percentile, probe_plan, probe_tokens
from meter.settings import Settings
from meter.workload import Workload, generate_events
from schemas.codec import encode_event, topic_of
from streams.worker import INPUT_TOPICS

Record = tuple[str, bytes, bytes]  # (real topic, key, value)


def plan_records(settings: Settings, rate: float, duration: float, workspaces: int,
                 probes: int) -> tuple[list[Record], list[Record]]:
    """(control records to produce first, usage records to pace), timed so the usage
    events' occurred_at runs from now to now + duration, like live traffic."""
    now = int(time.time() * 1000)
    wl = Workload(seed=11, events=int(rate * duration), workspaces=workspaces,
                  duplicate_rate=0.0, invalid_rate=0.0, now_ms=now + int(duration * 1000),
                  span_days=duration / 86_400)
    control: list[Record] = []
    usage: list[Record] = []
    for event in generate_events(wl):
        record = (settings.topic(topic_of(event)), event.workspace_id.encode(),
                  encode_event(event))
        (usage if event.occurred_at >= wl.start_ms else control).append(record)
    for i in range(probes):
        plan = probe_plan(i, now - 1000)
        control.append((settings.topic("quota.plans"), plan.workspace_id.encode(),
                        encode_event(plan)))
    return control, usage


class Delivery:
    """Delivery reports of the producer: how many landed, how many failed."""

    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0
        self.first_error: str | None = None

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failed += 1
            self.first_error = self.first_error or str(err)


def produce_all(producer: Producer, records: list[Record], on_delivery: Delivery) -> None:
    for topic, key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("the control events were not all delivered")


class Sampler(threading.Thread):
    """Every second: worker RSS, consumer lag of the worker group on the input topics
    (end offsets minus committed), events produced so far, crossings arrived since the
    last sample and their latencies."""

    def __init__(self, settings: Settings, pid: int, port: int, sent: dict[str, float],
                 collector: CrossingCollector, produced: list[int]) -> None:
        super().__init__(daemon=True, name="load-sampler")
        self.settings, self.pid, self.port, self.sent = settings, pid, port, sent
        self.collector, self.produced = collector, produced
        self.samples: list[dict[str, Any]] = []
        self.phase = "load"
        self.t0 = time.monotonic()
        self._stop_event = threading.Event()
        self._seen: set[str] = set()

    def run(self) -> None:
        group = self.settings.topic_prefix + self.settings.worker_id
        consumer = Consumer({"bootstrap.servers": self.settings.kafka_bootstrap,
                             "group.id": group, "enable.auto.commit": False})  # never joins
        try:
            tps = [TopicPartition(topic, p)
                   for topic in (self.settings.topic(t) for t in INPUT_TOPICS)
                   for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions]
            for tick in itertools.count(1):
                if self._stop_event.wait(max(0.0, self.t0 + tick - time.monotonic())):
                    break
                self.samples.append(self._sample(consumer, tps))
        finally:
            consumer.close()

    def _sample(self, consumer: Consumer, tps: list[TopicPartition]) -> dict[str, Any]:
        t = time.monotonic() - self.t0
        try:
            rss = round(rss_mb(self.pid), 1)
        except OSError:  # the worker is gone
            rss = None
        lag: int | None = None
        try:
            done = {(tp.topic, tp.partition): tp.offset
                    for tp in consumer.committed(tps, timeout=5)}
            lag = 0
            for tp in tps:
                end = consumer.get_watermark_offsets(tp, timeout=5, cached=False)[1]
                lag += max(0, end - max(0, done[(tp.topic, tp.partition)]))
        except Exception as exc:  # a slow broker: a gap in the lag series, said so
            console.print(f"[yellow]lag sample failed at {t:.0f} s: {exc}")
        try:  # the S6 event ids the worker holds: what its heap grows with by design
            ids = int(worker_metrics(self.port)["meter_worker_ids_remembered"])
        except (httpx.HTTPError, KeyError):
            ids = None
        latencies = []
        for event_id, arrived in list(self.collector.received.items()):
            if event_id not in self._seen and event_id in self.sent:
                self._seen.add(event_id)
                latencies.append(round((arrived - self.sent[event_id]) * 1000, 1))
        latencies.sort()
        return {"t": round(t, 2), "phase": self.phase, "rss_mb": rss, "lag": lag, "ids": ids,
                "produced": self.produced[0], "crossings": len(latencies),
                "latency_p50_ms": percentile(latencies, 0.5) if latencies else None,
                "latency_p99_ms": percentile(latencies, 0.99) if latencies else None,
                "latencies_ms": latencies}

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


def paced(producer: Producer, usage: list[Record], rate: float, probes: int,
          probe_topic: str, sent: dict[str, float], produced: list[int],
          on_delivery: Delivery) -> float:
    """Produce ``usage`` at ``rate`` events/s, a probe (to ``probe_topic``) every
    len(usage)/probes events; return the seconds it took. ``produced[0]`` counts every
    record produced."""
    probe_every = max(1, len(usage) // probes) if probes else 0
    started = time.perf_counter()
    n = probe = 0
    while n < len(usage):
        due = min(len(usage), int((time.perf_counter() - started) * rate) + 1)
        while n < due:
            topic, key, value = usage[n]
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
            except BufferError:
                producer.poll(0.05)
                continue
            if probe_every and n % probe_every == 0 and probe < probes:
                event = probe_tokens(probe)
                sent[event.event_id] = time.time()
                producer.produce(probe_topic, key=event.workspace_id.encode(),
                                 value=encode_event(event), on_delivery=on_delivery)
                probe += 1
                produced[0] += 1
            n += 1
            produced[0] += 1
        producer.poll(0)
        time.sleep(max(0.0, started + (n + 1) / rate - time.perf_counter()))
    return time.perf_counter() - started


def worker_metrics(port: int) -> dict[str, float]:
    """The worker's /metrics counters: name -> value (labelled series left out)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and not line.startswith("#") and "{" not in parts[0]:
            found[parts[0]] = float(parts[1])
    return found


def bytes_per_remembered_id(n: int = 200_000) -> float:
    """Heap bytes one S6 id costs in ``IdWindow`` (a UUID text and its time), measured
    with tracemalloc: turns the worker's ids gauge into MB."""
    import tracemalloc
    import uuid

    from streams.core.dedup import IdWindow

    ids = [str(uuid.uuid4()) for _ in range(n)]  # the strings live in the window
    window = IdWindow()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, event_id in enumerate(ids):
        window.remember(event_id, 1_772_532_000_000 + i)
    del ids
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # the id strings were allocated before tracing: add their size
    text = sys.getsizeof(str(uuid.uuid4()))
    return used / n + text


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(points) < 2:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    num = sum((t - mean_t) * (y - mean_y) for t, y in points)
    den = sum((t - mean_t) ** 2 for t, _ in points)
    return num / den * 60 if den else 0.0


def summarize(samples: list[dict[str, Any]], warmup_s: float, flat_mb_per_min: float
              ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(per-minute rows, summary) of the samples."""
    load = [s for s in samples if s["phase"] == "load"]
    groups: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        label = str(int(s["t"] // 60)) if s["phase"] == "load" else s["phase"]
        groups.setdefault(label, []).append(s)
    rows = []
    prev_produced = 0
    for label, group in groups.items():
        rss = [s["rss_mb"] for s in group if s["rss_mb"] is not None]
        lags = [s["lag"] for s in group if s["lag"] is not None]
        lat = sorted(x for s in group for x in s["latencies_ms"])
        rows.append({"minute": label, "samples": len(group),
                     "events": group[-1]["produced"] - prev_produced,
                     "rss_min_mb": min(rss, default=None), "rss_max_mb": max(rss, default=None),
                     "lag_max": max(lags, default=None), "crossings": len(lat),
                     "latency_p50_ms": percentile(lat, 0.5) if lat else None,
                     "latency_p99_ms": percentile(lat, 0.99) if lat else None})
        prev_produced = group[-1]["produced"]
    rss_points = [(s["t"], s["rss_mb"]) for s in load if s["rss_mb"] is not None]
    end_t = load[-1]["t"] if load else 0.0
    first = [y for t, y in rss_points if t < 60]
    last = [y for t, y in rss_points if t >= end_t - 60]
    slope = slope_per_min([(t, y) for t, y in rss_points if t >= warmup_s])
    half = slope_per_min([(t, y) for t, y in rss_points if t >= end_t / 2])
    all_lat = sorted(x for s in samples for x in s["latencies_ms"])
    lags = [s["lag"] for s in samples if s["lag"] is not None]
    summary = {
        "rss_first_minute_mb": round(statistics.fmean(first), 1) if first else None,
        "rss_last_minute_mb": round(statistics.fmean(last), 1) if last else None,
        "rss_max_mb": max((y for _, y in rss_points), default=None),
        "rss_slope_mb_per_min": round(slope, 3),
        "rss_slope_from_s": warmup_s,
        "rss_slope_second_half_mb_per_min": round(half, 3),  # a ramp, or a steady growth?
        "rss_flat": abs(slope) < flat_mb_per_min,
        "rss_flat_threshold_mb_per_min": flat_mb_per_min,
        "lag_max": max(lags, default=None),
        "lag_max_during_load": max((s["lag"] for s in load if s["lag"] is not None),
                                   default=None),
        "latency_p50_ms": percentile(all_lat, 0.5) if all_lat else None,
        "latency_p99_ms": percentile(all_lat, 0.99) if all_lat else None,
        "latency_max_ms": all_lat[-1] if all_lat else None,
        "crossings_measured": len(all_lat),
    }
    return rows, summary


def ids_share(samples: list[dict[str, Any]], warmup_s: float, id_bytes: float,
              rss_slope: float) -> dict[str, Any]:
    """How much of the RSS slope the growth of the S6 id memory accounts for."""
    points = [(s["t"], float(s["ids"])) for s in samples
              if s["phase"] == "load" and s["ids"] is not None and s["t"] >= warmup_s]
    ids_slope = slope_per_min(points)  # ids per minute
    explained = ids_slope * id_bytes / 2**20
    return {"ids_remembered_end": max((int(s["ids"]) for s in samples if s["ids"] is not None),
                                      default=None),
            "ids_per_min": round(ids_slope),
            "bytes_per_id": round(id_bytes, 1),
            "rss_slope_from_ids_mb_per_min": round(explained, 3),
            "rss_slope_without_ids_mb_per_min": round(rss_slope - explained, 3)}


def run(bootstrap: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    wall = time.perf_counter()
    settings = fresh_settings(bootstrap, tmp / "load")
    probes = int(args.probes_per_s * args.duration)
    control, usage = plan_records(settings, args.rate, args.duration, args.workspaces, probes)
    console.print(f"topic prefix {settings.topic_prefix}: {len(control):,} control events, "
                  f"{len(usage):,} usage events, {probes} probes")
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap,
                         "partitioner": "murmur2_random", "enable.idempotence": True,
                         "linger.ms": 5, "compression.type": "lz4"})
    delivery = Delivery()
    produce_all(producer, control, delivery)
    produced = [0]  # paced events (usage and probes) produced so far
    sent: dict[str, float] = {}
    collector = CrossingCollector(settings)
    collector.start()
    with running_worker(settings, tmp / "worker-load.log") as (proc, port):
        wait_committed(settings, proc, timeout_s=600)
        console.print(f"worker {proc.pid} caught up on the control events; "
                      f"{args.rate:,.0f} events/s for {args.duration:.0f} s")
        sampler = Sampler(settings, proc.pid, port, sent, collector, produced)
        sampler.start()
        load_s = paced(producer, usage, args.rate, probes, settings.topic("usage.tokens"),
                       sent, produced, delivery)
        if producer.flush(60):
            raise RuntimeError("the paced events were not all delivered")
        sampler.phase = "drain"
        drain = time.perf_counter()
        wait_committed(settings, proc, timeout_s=600)
        drain_s = time.perf_counter() - drain
        deadline = time.monotonic() + 30
        while len(collector.received) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)  # one more sample takes the last crossings in
        sampler.stop()
        counters = worker_metrics(port)
        rss_end = round(rss_mb(proc.pid), 1)
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited with {proc.returncode}")
    collector.stop()
    rows, summary = summarize(sampler.samples, args.warmup, args.flat_mb_per_min)
    summary.update(ids_share(sampler.samples, args.warmup, bytes_per_remembered_id(),
                             summary["rss_slope_mb_per_min"]))
    counted = int(counters.get("meter_worker_processed_total", -1))
    summary.update({
        "events_in": delivery.delivered, "events_failed": delivery.failed,
        "events_counted": counted, "counts_match": counted == delivery.delivered,
        "events_control": len(control), "events_paced": produced[0],
        "probes_sent": len(sent), "probes_received": len(collector.received),
        "load_s": round(load_s, 1),
        "achieved_rate_per_s": round(produced[0] / load_s, 1),
        "drain_s_after_load": round(drain_s, 1),
        "rss_after_drain_mb": rss_end,
        "wall_s": round(time.perf_counter() - wall, 1),
        "worker_counters": counters,
    })
    if delivery.first_error:
        summary["first_delivery_error"] = delivery.first_error
    return {"params": {"rate": args.rate, "duration_s": args.duration,
                       "workspaces": args.workspaces, "probes_per_s": args.probes_per_s,
                       "warmup_s": args.warmup, "cpus": os.cpu_count()},
            "summary": summary, "minutes": rows, "samples": sampler.samples}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:,}" if isinstance(value, int | float) else str(value)


def report(result: dict[str, Any]) -> None:
    table = Table(title="meter worker under sustained load, per minute (RSS in MB)")
    columns = {"minute": "minute", "events": "events", "rss_min_mb": "RSS min",
               "rss_max_mb": "RSS max", "lag_max": "lag max", "crossings": "crossings",
               "latency_p50_ms": "p50 ms", "latency_p99_ms": "p99 ms"}
    for key, header in columns.items():
        table.add_column(header, justify="left" if key == "minute" else "right")
    for row in result["minutes"]:
        table.add_row(*(_fmt(row[key]) for key in columns))
    console.print(table)
    summary = result["summary"]
    table = Table(title="summary")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if key != "worker_counters":
            table.add_row(key, _fmt(value))
    console.print(table)
    verdict = ("[green]RSS flat" if summary["rss_flat"] else "[red]RSS NOT flat")
    console.print(f"{verdict}: {summary['rss_slope_mb_per_min']:+.3f} MB/min after "
                  f"{summary['rss_slope_from_s']:.0f} s (threshold "
                  f"{summary['rss_flat_threshold_mb_per_min']} MB/min); first minute "
                  f"{summary['rss_first_minute_mb']} MB, last minute "
                  f"{summary['rss_last_minute_mb']} MB")
    console.print(f"S6 event ids held: {_fmt(summary['ids_remembered_end'])} at the end, "
                  f"{_fmt(summary['ids_per_min'])}/min x {summary['bytes_per_id']} B = "
                  f"{summary['rss_slope_from_ids_mb_per_min']:+.3f} MB/min of the slope; "
                  f"without them {summary['rss_slope_without_ids_mb_per_min']:+.3f} MB/min")
    match = "[green]match" if summary["counts_match"] else "[red]MISMATCH"
    console.print(f"events in {summary['events_in']:,}, counted by the worker "
                  f"{summary['events_counted']:,}: {match}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="usage events/s")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load")
    parser.add_argument("--workspaces", type=int, default=2000)
    parser.add_argument("--probes-per-s", type=float, default=2.0,
                        help="threshold-crossing probes per second (latency)")
    parser.add_argument("--warmup", type=float, default=30.0,
                        help="seconds left out of the RSS slope")
    parser.add_argument("--flat-mb-per-min", type=float, default=1.0,
                        help="RSS slope below which RSS counts as flat")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    try:
        with broker() as bootstrap:
            result = run(bootstrap, tmp, args)
    except BaseException:
        console.print(f"[red]failed; the worker's log stays in {tmp}")
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    report(result)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "bench_load.json"
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    console.print(f"written {path}")


if __name__ == "__main__":
    main()
