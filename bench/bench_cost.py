"""Benchmark: `meter replay` with pricing on beside pricing off, in the same run (not a test).

One generated log (``meter.workload``: eight priced models and one unpriced, prompt
caching on a quarter of the calls) is replayed through the command's code path
(``meter.commands.replay.run_replay``) in fresh child processes, alternating pricing on
(the default: every tokens event priced by ``streams.core.pricing``) and off
(``WorkspaceMeter.pricer = None``: every cost 0), ``--rounds`` times each. Reports the
median events/s of each and their ratio (target: pricing on within 10 % of off), and
writes bench/results/bench_cost.json.

    .venv/bin/python -m bench.bench_cost [--events 400000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.provenance import ROOT, git_commit
from meter.commands.replay import run_replay
from meter.workload import Workload, write_jsonl
from streams.core.meter import WorkspaceMeter

RESULTS = ROOT / "bench" / "results"


def child(log: Path, pricing: bool) -> None:

    if not pricing:
        WorkspaceMeter.pricer = None
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        cpu_started = time.process_time()
        stats = run_replay(log, Path(out), now_ms=None, plan_file=None, quiet=True)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        usage = json.loads((Path(out) / "usage.json").read_text())
    cost = sum(c["cost"]["total"] for w in usage["workspaces"].values()
               for c in w["cycles"].values())
    unpriced = sum(c["cost"]["unpriced_tokens"] for w in usage["workspaces"].values()
                   for c in w["cycles"].values())
    lines = int(str(stats["lines"]))
    print(json.dumps({"lines": lines, "seconds": elapsed, "cpu_seconds": cpu,
                      "events_per_s": lines / elapsed, "events_per_cpu_s": lines / cpu,
                      "cost_micros": cost, "unpriced_tokens": unpriced}))


def run_child(log: Path, pricing: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.bench_cost", "--child", str(log),
           "--pricing", "on" if pricing else "off"]
    done = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--workspaces", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child")
    parser.add_argument("--pricing", choices=("on", "off"), default="on")
    args = parser.parse_args()
    if args.child:
        child(Path(args.child), args.pricing == "on")
        return

    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log.jsonl"
        write_jsonl(log, Workload(seed=5, events=args.events, workspaces=args.workspaces,
                                  span_days=27.0))
        for _ in range(args.rounds):
            for mode in ("off", "on"):
                runs[mode].append(run_child(log, mode == "on"))
    median = {m: {k: statistics.median(r[k] for r in rs)
                  for k in ("events_per_s", "events_per_cpu_s", "seconds")}
              for m, rs in runs.items()}
    ratio_wall = median["on"]["events_per_s"] / median["off"]["events_per_s"]
    ratio_cpu = median["on"]["events_per_cpu_s"] / median["off"]["events_per_cpu_s"]
    print(f"{'pricing':>8} {'events/s (wall)':>16} {'events/s (CPU)':>15} {'cost USD':>14}")
    for mode in ("off", "on"):
        cost = runs[mode][0]["cost_micros"]
        print(f"{mode:>8} {median[mode]['events_per_s']:>16,.0f} "
              f"{median[mode]['events_per_cpu_s']:>15,.0f} {cost / 1e6:>14,.2f}")
    print(f"on/off: {ratio_wall:.3f} (wall), {ratio_cpu:.3f} (CPU); target >= 0.90")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "bench_cost.json"
    out.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d", time.gmtime()), "commit": git_commit(),
        "events": args.events, "workspaces": args.workspaces, "rounds": args.rounds,
        "median": median, "ratio_on_off_wall": round(ratio_wall, 3),
        "ratio_on_off_cpu": round(ratio_cpu, 3), "target_ratio": 0.9,
        "cost_micros_on": runs["on"][0]["cost_micros"],
        "unpriced_tokens_on": runs["on"][0]["unpriced_tokens"], "runs": runs,
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
