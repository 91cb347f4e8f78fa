"""Sustained load: one `meter worker` under a fixed event rate for minutes, with the worker's
RSS, its consumer lag, its local store's keys and the crossing latency sampled every
second. Not a test: prints a per-minute table (crossing p50/p99, RSS) and a summary with
an honest verdict against the targets (RSS slope after the warm-up < 1 MB/min, every
minute's crossing p99 < 500 ms), writes JSON (every sample and the summary) to --out
(default bench/results/bench_load.json).

    .venv/bin/python -m bench.bench_load [--rate 2000] [--duration 1800] [--workspaces 10000]
        [--out bench/results/bench_load.json]

Uses the broker at METER_KAFKA_BOOTSTRAP, or starts one from deploy/ in a temp dir, on a
topic prefix of its own. The control events (plans, alert settings, machines) of the
workload and the probe workspaces' plans go first and the worker catches up on them; then
the usage events are produced at --rate events/s, timed around the wall clock, plus
--probes-per-s tokens events that each cross 100 % of a probe workspace's quota
(bench/probes.py): their produce time against the crossing's arrival on quota.thresholds
is the latency. At the end the worker must catch up and its processed count
(meter_worker_processed_total) must equal the events produced. "Flat": the least-squares
RSS slope after the warm-up (--warmup, default a sixth of the run, at least 30 s) is below
--flat-mb-per-min.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from rich.table import Table

from bench.bench_worker import (
    RESULTS,
    broker,
    catch_up,
    console,
    fresh_settings,
    rss_mb,
    worker_metrics,
)
from bench.bench_worker import worker as running_worker
from bench.probes import CrossingCollector, Delivery, paced, percentile, plan_records, produce_all
from groundwork.kafka import producer_config
from groundwork.settings import Settings
from streams.worker import INPUT_TOPICS


class Sampler(threading.Thread):
    """Every second: worker RSS, consumer lag of the worker group on the input topics
    (end offsets minus committed), the worker's local store keys (RocksDB's estimate,
    refreshed every 2 s by the worker) and records queued for alignment, events produced
    so far, crossings arrived since the last sample and their latencies."""

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
        store_keys = queued = gc_collections = gc_pause_s = None
        try:
            gauges = worker_metrics(self.port)
            store_keys = int(gauges["meter_worker_store_keys"])
            queued = int(gauges["meter_worker_queued"])
            gc_collections = int(gauges["meter_worker_gc_full_collections_total"])
            gc_pause_s = gauges["meter_worker_gc_full_pause_seconds_total"]
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        latencies = []
        for event_id, arrived in list(self.collector.received.items()):
            if event_id not in self._seen and event_id in self.sent:
                self._seen.add(event_id)
                latencies.append(round((arrived - self.sent[event_id]) * 1000, 1))
        latencies.sort()
        return {"t": round(t, 2), "phase": self.phase, "rss_mb": rss, "lag": lag,
                "store_keys": store_keys, "queued": queued,
                "gc_full_collections": gc_collections, "gc_full_pause_s": gc_pause_s,
                "produced": self.produced[0], "crossings": len(latencies),
                "latency_p50_ms": percentile(latencies, 0.5) if latencies else None,
                "latency_p99_ms": percentile(latencies, 0.99) if latencies else None,
                "latencies_ms": latencies}

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(points) < 2:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    num = sum((t - mean_t) * (y - mean_y) for t, y in points)
    den = sum((t - mean_t) ** 2 for t, _ in points)
    return num / den * 60 if den else 0.0


def gc_in_minute(group: list[dict[str, Any]]) -> dict[str, Any]:
    """The worker's full garbage collections within a group of samples (the counters'
    difference between its first and last sample) and the time stopped in them."""
    seen = [s for s in group if s.get("gc_full_collections") is not None]
    if len(seen) < 2:
        return {"gc_full_collections": None, "gc_full_pause_ms": None}
    return {"gc_full_collections": seen[-1]["gc_full_collections"]
            - seen[0]["gc_full_collections"],
            "gc_full_pause_ms": round((seen[-1]["gc_full_pause_s"]
                                       - seen[0]["gc_full_pause_s"]) * 1000, 1)}


def summarize(samples: list[dict[str, Any]], warmup_s: float, flat_mb_per_min: float,
              p99_target_ms: float = 500.0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
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
        keys = [s["store_keys"] for s in group if s.get("store_keys") is not None]
        lat = sorted(x for s in group for x in s["latencies_ms"])
        rows.append({"minute": label, "samples": len(group),
                     "events": group[-1]["produced"] - prev_produced,
                     "rss_min_mb": min(rss, default=None), "rss_max_mb": max(rss, default=None),
                     "rss_mean_mb": round(statistics.fmean(rss), 1) if rss else None,
                     "lag_max": max(lags, default=None),
                     "store_keys_max": max(keys, default=None), "crossings": len(lat),
                     **gc_in_minute(group),
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
    keys = [s["store_keys"] for s in load if s.get("store_keys") is not None]
    minutes = [r for r in rows if r["minute"] != "drain"]
    over = [r["minute"] for r in minutes
            if r["latency_p99_ms"] is None or r["latency_p99_ms"] >= p99_target_ms]
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
        "latency_p99_target_ms": p99_target_ms,
        "latency_worst_minute_p99_ms": max((r["latency_p99_ms"] for r in minutes
                                            if r["latency_p99_ms"] is not None), default=None),
        "latency_every_minute_p99_below_target": bool(minutes) and not over,
        "latency_minutes_over_target": over,  # a minute without crossings counts as over
        "store_keys_first": keys[0] if keys else None,
        "store_keys_last": keys[-1] if keys else None,
    }
    return rows, summary


def run(bootstrap: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    wall = time.perf_counter()
    settings = fresh_settings(bootstrap, tmp / "load")
    probes = int(args.probes_per_s * args.duration)
    control, usage = plan_records(settings, args.rate, args.duration, args.workspaces, probes)
    console.print(f"topic prefix {settings.topic_prefix}: {len(control):,} control events, "
                  f"{len(usage):,} usage events, {probes} probes")
    producer = Producer(producer_config(settings, **{"linger.ms": 5}))
    delivery = Delivery()
    produce_all(producer, control, delivery)
    produced = [0]  # paced events (usage and probes) produced so far
    sent: dict[str, float] = {}
    collector = CrossingCollector(settings)
    collector.start()
    with running_worker(settings, tmp / "worker-load.log") as (proc, port):
        catch_up(settings, [proc], timeout_s=600)
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
        catch_up(settings, [proc], timeout_s=1800)
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
    rows, summary = summarize(sampler.samples, args.warmup, args.flat_mb_per_min,
                              args.p99_target_ms)
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
        "dead_lettered": int(counters.get("meter_worker_dead_lettered_total", -1)),
        "transactions_aborted": int(counters.get("meter_worker_transactions_aborted_total", -1)),
        "wall_s": round(time.perf_counter() - wall, 1),
        "worker_counters": counters,
    })
    if delivery.first_error:
        summary["first_delivery_error"] = delivery.first_error
    return {"params": {"rate": args.rate, "duration_s": args.duration,
                       "workspaces": args.workspaces, "probes_per_s": args.probes_per_s,
                       "warmup_s": args.warmup, "p99_target_ms": args.p99_target_ms,
                       "cpus": os.cpu_count()},
            "summary": summary, "minutes": rows, "samples": sampler.samples}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:,}" if isinstance(value, int | float) else str(value)


def report(result: dict[str, Any]) -> None:
    table = Table(title="meter worker under sustained load, per minute (RSS in MB; keys: "
                        "local store keys; cross: crossings measured)")
    columns = {"minute": "minute", "events": "events", "rss_min_mb": "RSS min",
               "rss_max_mb": "RSS max", "lag_max": "lag max", "store_keys_max": "keys",
               "crossings": "cross", "latency_p50_ms": "p50 ms", "latency_p99_ms": "p99 ms",
               "gc_full_collections": "full GCs", "gc_full_pause_ms": "GC ms"}
    for key, header in columns.items():
        table.add_column(header, justify="left" if key == "minute" else "right")
    for row in result["minutes"]:
        table.add_row(*(_fmt(row.get(key)) for key in columns))
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
    target = summary["latency_p99_target_ms"]
    if summary["latency_every_minute_p99_below_target"]:
        console.print(f"[green]crossing p99 below {target:,.0f} ms in every minute[/] (worst "
                      f"{_fmt(summary['latency_worst_minute_p99_ms'])} ms)")
    else:
        console.print(f"[red]crossing p99 NOT below {target:,.0f} ms in minutes "
                      f"{', '.join(summary['latency_minutes_over_target'])}[/] (worst "
                      f"{_fmt(summary['latency_worst_minute_p99_ms'])} ms)")
    match = "[green]match" if summary["counts_match"] else "[red]MISMATCH"
    console.print(f"events in {summary['events_in']:,}, counted by the worker "
                  f"{summary['events_counted']:,}: {match}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=2000.0, help="usage events/s")
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds of load")
    parser.add_argument("--workspaces", type=int, default=10_000)
    parser.add_argument("--probes-per-s", type=float, default=2.0,
                        help="threshold-crossing probes per second (latency)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds left out of the RSS slope (default: a sixth of the "
                             "duration, at least 30)")
    parser.add_argument("--flat-mb-per-min", type=float, default=1.0,
                        help="RSS slope below which RSS counts as flat")
    parser.add_argument("--p99-target-ms", type=float, default=500.0,
                        help="crossing p99 every minute must stay below this")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_load.json")
    args = parser.parse_args()
    if args.warmup is None:
        args.warmup = max(30.0, args.duration / 6)
    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    try:
        with broker() as bootstrap:
            result = run(bootstrap, tmp, args)
    except BaseException:
        console.print(f"[red]failed; the worker's log stays in {tmp}")
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    console.print(f"written {args.out}")


if __name__ == "__main__":
    main()
