"""Benchmark: backtest of the cycle forecast (streams/core/forecast.py) (not a test).

Generates three months of hourly usage for many workspaces (``--workspaces``), each
with one of four rate shapes and Poisson-like noise: constant, rising (the rate doubles
over three months), bursty (a few large batches a day at random hours) and weekly
(weekdays 5x weekends). Cycles are calendar months (UTC). For each cycle a limit is set
at 90 % of its final usage, so 100 % is truly reached at a known instant. The forecast
is made at 25 %, 50 % and 75 % of the cycle (when 100 % has not been reached yet); its
error is |projected 100 % instant - true instant|, with "not this cycle" counted as the
cycle end. Prints the mean absolute error (hours) per point and shape, and writes
bench/results/bench_forecast.json.

    .venv/bin/python -m bench.bench_forecast [--workspaces 400]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import UTC, datetime
from itertools import pairwise

from bench.provenance import ROOT, git_commit
from streams.core.forecast import OK, REACHED, forecast

RESULTS = ROOT / "bench" / "results"
HOUR = 3_600_000
MONTHS = ((2026, 9), (2026, 10), (2026, 11))
SHAPES = ("constant", "rising", "bursty", "weekly")
POINTS = (0.25, 0.5, 0.75)


def month_ms(year: int, month: int) -> int:
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)


def hourly_usage(shape: str, hours: int, rng: random.Random) -> list[int]:
    base = rng.uniform(50, 5_000)
    out = []
    bursts_per_day = rng.randint(1, 4)
    for h in range(hours):
        if shape == "constant":
            mean = base
        elif shape == "rising":
            mean = base * (1 + h / hours)
        elif shape == "bursty":
            mean = base * 24 / bursts_per_day if rng.random() < bursts_per_day / 24 else 0.0
        else:  # weekly: weekdays busy (the day of the week of hour h from a Tuesday)
            mean = base * (1.6 if ((h // 24) + 1) % 7 < 5 else 0.32)
        out.append(max(0, int(rng.gauss(mean, mean ** 0.5 if mean else 0))))
    return out


def backtest(workspaces: int, seed: int) -> dict[str, dict[str, float]]:

    rng = random.Random(seed)
    starts = [month_ms(y, m) for y, m in MONTHS] + [month_ms(2026, 12)]
    total_hours = (starts[-1] - starts[0]) // HOUR
    errors: dict[str, dict[str, list[float]]] = {
        s: {f"{p:.0%}": [] for p in POINTS} for s in (*SHAPES, "all")}
    for w in range(workspaces):
        shape = SHAPES[w % len(SHAPES)]
        usage = hourly_usage(shape, total_hours, rng)
        for start, end in pairwise(starts):
            first = (start - starts[0]) // HOUR
            cycle = usage[first:first + (end - start) // HOUR]
            final = sum(cycle)
            limit = final * 9 // 10
            if limit <= 0:
                continue
            running, true_at = 0, end
            cumulative = []
            for h, n in enumerate(cycle):
                running += n
                cumulative.append(running)
                if true_at == end and running >= limit:
                    true_at = start + (h + 1) * HOUR
            for p in POINTS:
                hours_in = int(len(cycle) * p)
                now = start + hours_in * HOUR
                used = cumulative[hours_in - 1]
                f = forecast(used, limit, start, end, now)
                if f.status == REACHED or f.status != OK:
                    continue
                projected = f.exhausted_at if f.exhausted_at is not None else end
                error_h = abs(projected - true_at) / HOUR
                errors[shape][f"{p:.0%}"].append(error_h)
                errors["all"][f"{p:.0%}"].append(error_h)
    return {s: {p: round(sum(v) / len(v), 1) if v else float("nan") for p, v in by.items()}
            for s, by in errors.items()} | {
        "samples": {p: len(v) for p, v in errors["all"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspaces", type=int, default=400)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    result = backtest(args.workspaces, args.seed)
    print(f"{'shape':>10} " + " ".join(f"{'MAE h @ ' + p:>12}" for p in ("25%", "50%", "75%")))
    for shape in (*SHAPES, "all"):
        row = result[shape]
        print(f"{shape:>10} " + " ".join(f"{row[p]:>12}" for p in ("25%", "50%", "75%")))
    print(f"samples per point: {result['samples']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "bench_forecast.json"
    out.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d", time.gmtime()), "commit": git_commit(),
        "workspaces": args.workspaces, "seed": args.seed, "months": MONTHS,
        "mae_hours": result}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
