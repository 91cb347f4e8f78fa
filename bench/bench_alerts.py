"""Alerting benchmark: crossing published -> signed webhook received.

Runs `meter alerts` as a separate process against a real broker (METER_KAFKA_BOOTSTRAP,
default 127.0.0.1:19092) on fresh, prefixed topics, with real HTTP receivers on
127.0.0.1 that verify every signature with `standardwebhooks`. Three phases:

1. latency: crossings at a steady rate to healthy receivers -> p50 / p99;
2. throughput: a burst over many workspaces -> deliveries per second;
3. isolation: phase 1 again while one workspace's endpoint never answers in time
   (it times out and is retried) -> the other workspaces' p50 / p99.

Prints a table and writes bench/results/alerts-<timestamp>.json.
Usage: .venv/bin/python bench/bench_alerts.py [--rate 100] [--seconds 10] [--burst 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test receivers and factories live in tests/

from bench.topics import throwaway_topics  # noqa: E402
from groundwork.kafka import producer_config  # noqa: E402
from groundwork.settings import Settings, load_settings  # noqa: E402
from schemas.codec import encode_record  # noqa: E402
from tests.alerting.factories import crossing  # noqa: E402
from tests.alerting.kafka_helpers import settings_item  # noqa: E402
from tests.alerting.receivers import Script, WebhookReceiver  # noqa: E402

SECRET = "whsec_" + base64.b64encode(b"bench-secret-0123456789abcdef").decode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def start_consumer(settings: Settings, group: str) -> subprocess.Popen[str]:
    env = dict(os.environ,
               METER_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
               METER_TOPIC_PREFIX=settings.topic_prefix,
               METER_DELIVERY_ALLOW_HOSTS='["127.0.0.1"]',
               METER_DELIVERY_TIMEOUT_S="1.0",
               METER_DELIVERY_MAX_ATTEMPTS="3",
               METER_DELIVERY_BACKOFF_BASE_S="0.2",
               METER_ALERTS_GROUP_ID=group)
    proc = subprocess.Popen([str(ROOT / ".venv/bin/meter"), "alerts", "--metrics-port", "0"],
                            env=env, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "consuming" not in line:
        proc.kill()
        raise SystemExit(f"meter alerts did not start: {line}{proc.stderr.read()}")
    return proc


class Run:
    """Publishes crossings and matches what the receiver got to when it was published."""

    def __init__(self, settings: Settings, rx: WebhookReceiver) -> None:
        self.settings = settings
        self.rx = rx
        self.producer = Producer(producer_config(settings))
        self.published: dict[str, float] = {}
        self.topic = settings.topic("quota.thresholds")
        self.seq = 0

    def publish(self, workspace: str) -> str:
        """One crossing (a fresh arm, so a fresh alert id); returns its alert id."""
        self.seq += 1
        c = crossing(80, workspace=workspace, event_id=f"b{self.seq}", arm=self.seq + 1)
        self.published[c.alert_id] = time.time()
        self.producer.produce(self.topic, key=workspace.encode(),
                              value=encode_record("quota.thresholds", c._asdict()))
        self.producer.poll(0)
        return c.alert_id

    def latencies(self, workspaces: set[str] | None = None) -> list[float]:
        out = []
        for r in self.rx.received:
            sent = self.published.get(r.webhook_id)
            if sent is not None and r.status < 300 and (
                    workspaces is None or r.path in workspaces):
                out.append(r.at_wall - sent)
        return out

    async def wait_for(self, ids: set[str], timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = {r.webhook_id for r in self.rx.received if r.status < 300}
            if ids <= got:
                return
            await asyncio.sleep(0.05)
        raise SystemExit(f"only {len(ids & got)} of {len(ids)} deliveries arrived")


async def steady(run: Run, workspaces: list[str], rate: float, seconds: float) -> set[str]:
    ids: set[str] = set()
    start = time.monotonic()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        ids.add(run.publish(workspaces[i % len(workspaces)]))
    run.producer.flush(30)
    return ids


async def main(args: argparse.Namespace) -> dict[str, Any]:
    settings = load_settings(topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
                             kafka_partitions=args.partitions)
    throwaway_topics(settings)
    async with WebhookReceiver() as rx:
        healthy = [f"ws{i:04d}" for i in range(args.workspaces)]
        slow = "slow-ws"
        for ws in healthy:
            rx.scripts[ws] = Script(secret=SECRET)
        rx.scripts[slow] = Script(delay_s=3.0, secret=SECRET)
        items = [settings_item(ws, email=False, webhook=rx.url(ws), secret=SECRET)
                 for ws in [*healthy, slow]]
        producer = Producer(producer_config(settings))
        for key, value in items:
            producer.produce(settings.topic("alerting.settings"), key=key.encode(), value=value)
        producer.flush(30)
        proc = start_consumer(settings, f"bench-{uuid.uuid4().hex[:6]}")
        try:
            run = Run(settings, rx)
            # warm-up: connections, JIT-free but caches and the consumer's first fetch
            await run.wait_for(await steady(run, healthy[:20], 50, 0.4))
            rx.received.clear()

            ids = await steady(run, healthy, args.rate, args.seconds)
            await run.wait_for(ids)
            lat_healthy = [x for x in run.latencies() if x >= 0]
            rx.received.clear()

            t0 = time.time()
            burst_ids = {run.publish(healthy[i % len(healthy)]) for i in range(args.burst)}
            run.producer.flush(30)
            await run.wait_for(burst_ids)
            last = max(r.at_wall for r in rx.received if r.webhook_id in burst_ids)
            burst_rate = len(burst_ids) / (last - t0)
            lat_burst = run.latencies()
            rx.received.clear()

            run.publish(slow)
            ids = await steady(run, healthy, args.rate, args.seconds)
            for _ in range(3):
                run.publish(slow)
            run.producer.flush(30)
            await run.wait_for(ids)
            lat_isolated = run.latencies(set(healthy))
            slow_answers = sum(1 for r in rx.received if r.path == slow)
        finally:
            proc.terminate()
            proc.wait(30)
    return {
        "workspaces": args.workspaces, "partitions": args.partitions,
        "latency_healthy": {"rate_per_s": args.rate, "n": len(lat_healthy),
                            "p50_ms": percentile(lat_healthy, 50) * 1000,
                            "p99_ms": percentile(lat_healthy, 99) * 1000,
                            "mean_ms": statistics.fmean(lat_healthy) * 1000},
        "throughput_burst": {"n": len(burst_ids), "deliveries_per_s": burst_rate,
                             "p50_ms": percentile(lat_burst, 50) * 1000,
                             "p99_ms": percentile(lat_burst, 99) * 1000},
        "latency_with_one_endpoint_timing_out": {
            "rate_per_s": args.rate, "n": len(lat_isolated),
            "p50_ms": percentile(lat_isolated, 50) * 1000,
            "p99_ms": percentile(lat_isolated, 99) * 1000,
            "slow_endpoint_late_answers": slow_answers},
    }


def table(result: dict[str, Any]) -> str:
    rows = [
        ("healthy receivers, steady rate", result["latency_healthy"]),
        ("burst (throughput)", result["throughput_burst"]),
        ("one endpoint timing out", result["latency_with_one_endpoint_timing_out"]),
    ]
    lines = [f"{'phase':34} {'n':>6} {'p50 ms':>9} {'p99 ms':>9} {'deliv/s':>9}"]
    for name, r in rows:
        rate = r.get("deliveries_per_s")
        lines.append(f"{name:34} {r['n']:>6} {r['p50_ms']:>9.1f} {r['p99_ms']:>9.1f} "
                     f"{(f'{rate:.0f}' if rate else '-'):>9}")
    ok_p99 = result["latency_healthy"]["p99_ms"] <= 2000
    ok_rate = result["throughput_burst"]["deliveries_per_s"] >= 200
    lines.append(f"targets: p99 <= 2000 ms {'met' if ok_p99 else 'MISSED'}; "
                 f">= 200 deliveries/s {'met' if ok_rate else 'MISSED'}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="crossings/s in phases 1, 3")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=3000)
    parser.add_argument("--workspaces", type=int, default=300)
    parser.add_argument("--partitions", type=int, default=4)
    arguments = parser.parse_args()
    outcome = asyncio.run(main(arguments))
    print(table(outcome))
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"alerts-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(outcome, indent=2) + "\n")
    print(f"wrote {path}", file=sys.stderr)
