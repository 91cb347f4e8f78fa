"""Benchmark of quota checks: the embedded ``QuotaView`` and the HTTP check API.

1. Embedded ``QuotaView.check()``: p50/p99 per call over 10,000 workspaces read from a
   real ``quota.state`` topic (target p99 < 20 us), beside a bare dict lookup of the same
   records in the same run (the floor).
2. Where one HTTP check's time goes at one process: the embedded answer, the whole ASGI app
   called in process (auth, hot route, JSON), and the rest (uvicorn's HTTP, the loop,
   the socket) from wrk's requests/s.
3. ``POST /v1/check`` with wrk (2 threads, 16 connections, 15 s, requests spread over
   the workspaces) at 1 process and at ``--workers`` processes on one port (target p99
   < 2 ms); the batch route with 100 items per call at 1 process.

    .venv/bin/python bench/bench_check.py [--workspaces 10000] [--workers 2]

Needs the broker (METER_KAFKA_BOOTSTRAP) and ``wrk``. Prints a table and writes
bench/results/bench_check.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import Producer
from starlette.types import Message

from bench.provenance import git_commit
from bench.topics import throwaway_topics
from bench.wrk import wrk_numbers
from groundwork.ports import free_port
from groundwork.settings import Settings, load_settings
from schemas.codec import encode_record
from schemas.events import QUOTAS
from streams.api import create_api
from streams.quota_view import QuotaView

RESULTS = Path(__file__).parent / "results"
TOKEN = "bench-token"
NOW = 1_772_532_030_000


def state_record(workspace: str, rng: random.Random) -> dict[str, Any]:
    """A quota.state record as the worker writes it (limits and usage varied)."""
    quotas = []
    for quota in QUOTAS:
        limit = rng.choice([None, 100, 1_000, 1_000_000])
        used = rng.randrange(0, 1_200_000)
        quotas.append({"quota": quota, "used": used, "limit": limit, "plan_limit": limit,
                       "percent": None if limit is None else used * 100 // limit,
                       "decision": "allow"})
    return {"workspace_id": workspace, "version": 1, "as_of": NOW, "event_time": NOW,
            "plan": "team", "cycle_anchor": 1_772_323_200_000, "timezone": "UTC",
            "cycle_start": 1_772_323_200_000, "cycle_ends_at": 1_775_001_600_000,
            "machine_ids": ["box0"], "quotas": quotas, "api_minute": None}


def publish(settings: Settings, n: int) -> list[str]:
    rng = random.Random(7)
    workspaces = [f"ws-{i:05d}" for i in range(n)]
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 20})
    topic = settings.topic("quota.state")
    for ws in workspaces:
        record = state_record(ws, rng)
        producer.produce(topic, key=ws.encode(), value=encode_record("quota.state", record))
        producer.poll(0)
    assert producer.flush(60) == 0
    return workspaces


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


def bench_embedded(view: QuotaView, workspaces: list[str], calls: int) -> dict[str, Any]:
    rng = random.Random(3)
    picks = [(rng.choice(workspaces), rng.choice(QUOTAS)) for _ in range(calls)]
    clock = time.perf_counter_ns
    check = view.check
    times: list[float] = []
    for ws, quota in picks:
        t = clock()
        check(ws, quota, 1)
        times.append((clock() - t) / 1000)
    lookup = view.state.get
    floor: list[float] = []
    for ws, _ in picks:
        t = clock()
        lookup(ws)
        floor.append((clock() - t) / 1000)
    times.sort()
    floor.sort()
    return {"embedded_calls": calls,
            "embedded_p50_us": round(percentile(times, 0.5), 2),
            "embedded_p99_us": round(percentile(times, 0.99), 2),
            "embedded_mean_us": round(statistics.fmean(times), 2),
            "dict_lookup_p50_us": round(percentile(floor, 0.5), 2),
            "dict_lookup_p99_us": round(percentile(floor, 0.99), 2)}


def bench_asgi(settings: Settings, view: QuotaView, workspaces: list[str],
               calls: int) -> dict[str, Any]:
    """The app's own time per check: ASGI call in process, no server, no socket."""
    app = create_api(settings, view=view.state)
    bodies = [orjson.dumps({"workspace_id": workspaces[i % len(workspaces)],
                            "quota": QUOTAS[i % len(QUOTAS)], "amount": 1})
              for i in range(calls)]
    headers = [(b"authorization", f"Bearer {TOKEN}".encode()),
               (b"content-type", b"application/json")]

    async def run() -> list[float]:
        times = []
        for body in bodies:
            scope = {"type": "http", "method": "POST", "path": "/v1/check", "headers": headers,
                     "query_string": b"", "http_version": "1.1", "scheme": "http",
                     "root_path": "", "server": ("127.0.0.1", 1), "client": ("127.0.0.1", 2)}
            sent: list[Message] = []

            async def receive(body: bytes = body) -> Message:
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: Message, sent: list[Message] = sent) -> None:
                sent.append(message)

            t = time.perf_counter_ns()
            await app(scope, receive, send)
            times.append((time.perf_counter_ns() - t) / 1000)
            assert sent[0]["status"] == 200
        return times

    times = sorted(asyncio.run(run()))
    return {"asgi_p50_us": round(percentile(times, 0.5), 2),
            "asgi_p99_us": round(percentile(times, 0.99), 2)}


def full_collection_ms(view: QuotaView) -> dict[str, float]:
    """One full GC collection with the view loaded, as ``meter api`` would pause for it,
    and the same after ``gc.freeze`` (the API's heap policy, streams/heap.py)."""
    import gc

    def timed() -> float:
        t = time.perf_counter()
        gc.collect()
        return round((time.perf_counter() - t) * 1000, 2)

    unfrozen = max(timed() for _ in range(3))
    gc.freeze()
    frozen = timed()
    gc.unfreeze()
    return {"gc_tracked_objects": len(gc.get_objects()), "gc_full_ms": unfrozen,
            "gc_full_frozen_ms": frozen, "view_workspaces": len(view)}


@contextlib.contextmanager
def api_server(settings: Settings, workers: int, log: Path) -> Any:
    port = free_port()
    env = dict(os.environ, METER_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
               METER_TOPIC_PREFIX=settings.topic_prefix, METER_API_PORT=str(port),
               METER_API_TOKEN=TOKEN, METER_API_WORKERS=str(workers))
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "meter.cli_entry", "api"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        ready = 0
        # each worker process holds its own view: wait until readyz answers 200 many times
        # in a row (connections land on any process)
        while ready < 20 * workers:
            assert time.monotonic() < deadline, log.read_text()
            try:
                ok = httpx.get(f"{base}/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                ok = False
            ready = ready + 1 if ok else 0
            if not ok:
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(20)


def wrk(base: str, route: str, body_lua: str, tmp: Path, seconds: int) -> dict[str, Any]:
    script = tmp / "check.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {TOKEN}"\n' + body_lua)
    result = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "-s", str(script), f"{base}{route}"],
        capture_output=True, text=True, check=True)
    numbers = wrk_numbers(result.stdout)
    found: dict[str, Any] = {"non_2xx": int(numbers.get("non_2xx", 0))}
    found |= {k: round(numbers[k], 3) for k in ("p50_ms", "p90_ms", "p99_ms") if k in numbers}
    if "requests_per_s" in numbers:
        found["requests_per_s"] = round(numbers["requests_per_s"])
    return found


def lua_bodies(workspaces: list[str], batch: int) -> str:
    """A request() that walks 100 distinct bodies (1 or ``batch`` checks each)."""
    rng = random.Random(11)
    bodies = []
    for _ in range(100):
        items = [{"workspace_id": rng.choice(workspaces), "quota": rng.choice(QUOTAS),
                  "amount": 1} for _ in range(batch)]
        body = orjson.dumps(items[0] if batch == 1 else {"items": items}).decode()
        bodies.append("[==[" + body + "]==]")
    return ("local bodies = {" + ",".join(bodies) + "}\nlocal i = 0\n"
            "request = function()\n  i = i % #bodies + 1\n"
            "  return wrk.format(nil, nil, nil, bodies[i])\nend\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspaces", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_check.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(),
                           "cpus": os.cpu_count(), "workspaces": args.workspaces}
    out["commit"] = git_commit()
    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp_name:
        tmp = Path(tmp_name)
        settings = load_settings(
            kafka_bootstrap=os.environ.get("METER_KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
            kafka_partitions=4, topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
            data_dir=tmp / "data", api_token=TOKEN, api_stale_after_s=3600 * 24 * 365 * 10)
        throwaway_topics(settings)
        workspaces = publish(settings, args.workspaces)
        view = QuotaView(settings).start()
        assert view.wait_ready(120)
        deadline = time.monotonic() + 60
        while len(view) < args.workspaces:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        out.update(full_collection_ms(view))
        out.update(bench_embedded(view, workspaces, args.calls))
        out.update(bench_asgi(settings, view, workspaces, 20_000))
        view.stop()
        single = lua_bodies(workspaces, 1)
        for workers in (1, args.workers):
            with api_server(settings, workers, tmp / f"api-{workers}.log") as base:
                found = wrk(base, "/v1/check", single, tmp, args.seconds)
                out.update({f"http_{workers}p_{k}": v for k, v in found.items()})
                if workers == 1:
                    found = wrk(base, "/v1/check/batch", lua_bodies(workspaces, 100), tmp,
                                args.seconds)
                    out.update({f"batch100_1p_{k}": v for k, v in found.items()})
    rps = out["http_1p_requests_per_s"]
    out["http_1p_server_us_per_request"] = round(1e6 / rps, 1)
    out["notes"] = ("shared 2-core machine (other engineers' builds and tests ran alongside); "
                    "wrk runs on the same 2 cores as the server processes")
    rows = [("embedded check p50 / p99 (us)",
             f"{out['embedded_p50_us']} / {out['embedded_p99_us']}", "p99 < 20"),
            ("dict lookup p50 / p99 (us)",
             f"{out['dict_lookup_p50_us']} / {out['dict_lookup_p99_us']}", "floor"),
            ("full GC pause with the view, unfrozen / frozen (ms)",
             f"{out['gc_full_ms']} / {out['gc_full_frozen_ms']}", ""),
            ("ASGI app per check p50 / p99 (us)", f"{out['asgi_p50_us']} / {out['asgi_p99_us']}",
             ""),
            ("HTTP server time per request at 1 process (us)",
             f"{out['http_1p_server_us_per_request']}", "")]
    for workers in (1, args.workers):
        p = f"http_{workers}p_"
        rows.append((f"HTTP check {workers} proc p50 / p99 (ms), req/s",
                     f"{out.get(p + 'p50_ms')} / {out.get(p + 'p99_ms')}, "
                     f"{out.get(p + 'requests_per_s')}", "p99 < 2"))
    rows.append(("batch of 100, 1 proc p50 / p99 (ms), calls/s",
                 f"{out.get('batch100_1p_p50_ms')} / {out.get('batch100_1p_p99_ms')}, "
                 f"{out.get('batch100_1p_requests_per_s')}", ""))
    width = max(len(r[0]) for r in rows)
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<28} {target}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
