"""Benchmark: `meter replay` over generated logs (not a test).

Runs the replay through the command's own code path (``meter.commands.replay.run_replay``:
line parsing and validation by ``schemas.jsonl.parse_line``, the metering core, the
three output files), each run in a fresh child process so that its peak RSS is its own.
Reports events/s on one core and peak RSS, for logs of different lengths (RSS must not
grow with the log) and different numbers of workspaces (it may grow with those), and
writes JSON to bench/results/bench_replay.json.

    .venv/bin/python bench/bench_replay.py                 # 1,000,000 events, the table
    .venv/bin/python bench/bench_replay.py --events 200000 --profile   # + cProfile top 25
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BASE_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
PROVIDERS = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-sonnet"),
             ("google", "gemini-2.0-flash")]
SURFACES = ["chat", "agent", "skill", "schedule"]


def _iso(ms: int) -> str:
    t = time.gmtime(ms // 1000)
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:"
            f"{t.tm_sec:02d}.{ms % 1000:03d}Z")


def generate(path: Path, events: int, workspaces: int, span_days: float = 27.0,
             seed: int = 7) -> None:
    """A realistic mix over ~3 months: tokens 40 %, api 20 %, commands 15 %, skills 10 %,
    schedule runs 5 %, storage 4 %, machines 2 %, one plan per workspace and some
    top-ups, 0.5 % exact duplicates and 0.2 % invalid lines."""
    try:  # the shared workload generator (bench/workload.py)
        sys.path.insert(0, str(ROOT))
        from meter.workload import Drive, Workload, write_jsonl
    except ImportError:  # not there: the small local generator below
        pass
    else:
        drive = tuple(Drive(f"w{i:04d}", q) for i, q in (
            (1, "ai_tokens"), (2, "storage_bytes"), (3, "api_requests_per_minute"),
            (4, "machines"), (5, "schedule_runs")) if i <= workspaces)
        write_jsonl(path, Workload(seed=seed, events=events, workspaces=workspaces,
                                   span_days=span_days, drive=drive))
        return
    rnd = random.Random(seed)
    span_ms = 90 * 86_400_000
    step = span_ms / events
    recent: list[str] = []
    with path.open("w") as out:
        for w in range(workspaces):
            out.write(json.dumps({
                "type": "plan", "event_id": f"p{w}", "workspace_id": f"ws{w}",
                "occurred_at": _iso(BASE_MS), "plan": "team",
                "cycle_anchor": _iso(BASE_MS + (w % 28) * 86_400_000),
                "timezone": ["UTC", "America/Los_Angeles", "Asia/Kolkata"][w % 3],
                "limits": {"machines": 20, "ai_tokens": 50_000_000, "storage_bytes": 10**10,
                           "schedule_runs": 5000, "api_requests_per_minute": 600,
                           "api_requests_per_cycle": 1_000_000}, "owners": ["o@x.io"]}) + "\n")
        for i in range(events - workspaces):
            ws = f"ws{rnd.randrange(workspaces)}"
            at = _iso(BASE_MS + int(i * step) + rnd.randrange(60_000))
            eid = f"e{i}"
            member = f"u{rnd.randrange(40)}"
            machine = f"m{rnd.randrange(25)}"
            r = rnd.random()
            if r < 0.40:
                provider, model = PROVIDERS[rnd.randrange(4)]
                skill = f'"s{rnd.randrange(10)}"' if rnd.random() < 0.2 else "null"
                mid = f'"{machine}"' if rnd.random() < 0.6 else "null"
                line = (f'{{"type": "tokens", "event_id": "{eid}", "workspace_id": "{ws}", '
                        f'"occurred_at": "{at}", "member_id": "{member}", "machine_id": {mid}, '
                        f'"skill": {skill}, "provider": "{provider}", "model": "{model}", '
                        f'"input_tokens": {rnd.randrange(2000)}, '
                        f'"output_tokens": {rnd.randrange(500)}, '
                        f'"surface": "{SURFACES[rnd.randrange(4)]}"}}')
            elif r < 0.60:
                line = (f'{{"type": "api", "event_id": "{eid}", "workspace_id": "{ws}", '
                        f'"occurred_at": "{at}", "member_id": "{member}", "protocol": "rest", '
                        f'"requests": {rnd.randrange(1, 5)}}}')
            elif r < 0.75:
                line = (f'{{"type": "command", "event_id": "{eid}", "workspace_id": "{ws}", '
                        f'"occurred_at": "{at}", "member_id": "{member}", '
                        f'"machine_id": "{machine}", "command": "make test"}}')
            elif r < 0.85:
                line = (f'{{"type": "skill", "event_id": "{eid}", "workspace_id": "{ws}", '
                        f'"occurred_at": "{at}", "member_id": "{member}", '
                        f'"skill": "s{rnd.randrange(10)}", "machine_id": null, '
                        f'"cache_hit": {"true" if rnd.random() < 0.3 else "false"}}}')
            elif r < 0.90:
                line = (f'{{"type": "schedule_run", "event_id": "{eid}", "workspace_id": "{ws}", '
                        f'"occurred_at": "{at}", "member_id": "{member}", '
                        f'"schedule_id": "nightly", "machine_id": null}}')
            elif r < 0.94:
                body = (f'"delta_bytes": {rnd.randrange(-5000, 20000)}' if rnd.random() < 0.8
                        else f'"total_bytes": {rnd.randrange(10**9)}')
                line = (f'{{"type": "storage", "event_id": "{eid}", "workspace_id": "{ws}", '
                        f'"occurred_at": "{at}", "category": "transcripts", {body}}}')
            elif r < 0.96:
                action = "registered" if rnd.random() < 0.7 else "removed"
                line = (f'{{"type": "machine", "event_id": "{eid}", "workspace_id": "{ws}", '
                        f'"occurred_at": "{at}", "machine_id": "{machine}", '
                        f'"action": "{action}"}}')
            elif r < 0.961:
                line = (f'{{"type": "topup", "event_id": "{eid}", "workspace_id": "{ws}", '
                        f'"occurred_at": "{at}", "quota": "ai_tokens", "amount": 100000}}')
            elif r < 0.963:
                line = (f'{{"type": "tokens", "event_id": "{eid}", "workspace_id": "{ws}", '
                        f'"occurred_at": "{at}", "member_id": "{member}"}}')  # invalid
            elif r < 0.968 and recent:
                line = recent[rnd.randrange(len(recent))]  # an exact repeat (S6)
            else:
                line = (f'{{"type": "command", "event_id": "{eid}", "workspace_id": "{ws}", '
                        f'"occurred_at": "{at}", "member_id": "{member}", '
                        f'"machine_id": "{machine}", "command": "ls"}}')
            if i % 97 == 0:
                recent.append(line)
                if len(recent) > 200:
                    recent.pop(0)
            out.write(line + "\n")


def child(log: Path, profile: bool) -> None:
    """Replay ``log`` through the command's code path; print one JSON result line."""
    sys.path.insert(0, str(ROOT))
    from meter.commands.replay import run_replay

    with tempfile.TemporaryDirectory() as out:
        if profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
        started = time.perf_counter()
        cpu_started = time.process_time()
        stats = run_replay(log, Path(out), now_ms=None, plan_file=None, quiet=True)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        if profile:
            profiler.disable()
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
        usage_bytes = (Path(out) / "usage.json").stat().st_size
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"lines": stats["lines"], "seconds": round(elapsed, 3),
                      "cpu_seconds": round(cpu, 3),
                      "events_per_s": round(int(str(stats["lines"])) / elapsed),
                      "peak_rss_mib": round(rss_kib / 1024, 1), "usage_json_bytes": usage_bytes,
                      "counted": stats["counted"], "duplicates": stats["duplicates"],
                      "rejected": stats["rejected"], "crossings": stats["crossings"]}))


def measure_id_memory(ids: int = 200_000) -> dict[str, float]:
    """Bytes per remembered S6 id: in memory (dict entry + key + int) and serialized."""
    import tracemalloc

    sys.path.insert(0, str(ROOT))
    from streams.core.dedup import IdWindow

    keys = [f"evt-{i:012d}" for i in range(ids)]  # ids already exist (decoded events)
    tracemalloc.start()
    window = IdWindow()
    before = tracemalloc.get_traced_memory()[0]
    for i, key in enumerate(keys):
        window.remember(key, BASE_MS + i)  # all within 24 h: all live
    in_memory = (tracemalloc.get_traced_memory()[0] - before) / ids
    tracemalloc.stop()
    import orjson

    serialized = len(orjson.dumps(window.to_state())) / ids
    key_bytes = sys.getsizeof(keys[0])
    return {"ids": ids, "bytes_per_id_in_memory": round(in_memory, 1),
            "of_which_key_string_if_not_shared": key_bytes,
            "bytes_per_id_serialized": round(serialized, 1)}


def run_child(log: Path, profile: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(log)] + (["--profile"] if profile else [])
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    if profile:
        sys.stderr.write(done.stderr)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workspaces", type=int, default=200)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        child(Path(args.child), args.profile)
        return
    # (events, workspaces, span_days): the first two have the same event density (so the
    # same S6 window) and differ only in log length; the third is the first's density with
    # four times the events packed into the same days (a 4x S6 window), the fourth has ten
    # times the workspaces.
    runs = [(args.events, args.workspaces, 27.0), (args.events // 4, args.workspaces, 6.75),
            (args.events // 4, args.workspaces, 27.0),
            (args.events // 4, args.workspaces * 10, 6.75)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for events, workspaces, span in runs:
            log = Path(tmp) / f"log-{events}-{workspaces}-{span}.jsonl"
            generate(log, events, workspaces, span)
            first = (events, workspaces, span) == runs[0]
            result = run_child(log, profile=args.profile and first)
            result.update(events=events, workspaces=workspaces, span_days=span, log_mib=round(
                log.stat().st_size / 2**20, 1))
            rows.append(result)
            log.unlink()
    ids = measure_id_memory()
    print(f"{'events':>10} {'workspaces':>10} {'days':>6} {'log MiB':>8} {'seconds':>8} "
          f"{'events/s':>10} "
          f"{'peak RSS MiB':>12} {'crossings':>9} {'rejected':>8} {'dups':>6}")
    for r in rows:
        print(f"{r['events']:>10,} {r['workspaces']:>10,} {r['span_days']:>6} "
              f"{r['log_mib']:>8} {r['seconds']:>8} "
              f"{r['events_per_s']:>10,} {r['peak_rss_mib']:>12} {r['crossings']:>9} "
              f"{r['rejected']:>8} {r['duplicates']:>6}")
    print(f"S6 id memory: {ids['bytes_per_id_in_memory']} B/id in memory "
          f"(+{ids['of_which_key_string_if_not_shared']} B for the id string itself), "
          f"{ids['bytes_per_id_serialized']} B/id serialized")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_replay.json").write_text(json.dumps(
        {"runs": rows, "id_memory": ids, "python": sys.version.split()[0],
         "cpu_count": os.cpu_count(), "target_events_per_s": 100_000}, indent=2) + "\n")
    print(f"wrote {RESULTS / 'bench_replay.json'}")


if __name__ == "__main__":
    main()
