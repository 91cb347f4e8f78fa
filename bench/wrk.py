"""Reading the output of wrk (the HTTP load generator the API benchmarks run) with
--latency."""

from __future__ import annotations


def _ms(value: str) -> float:
    """A wrk duration (``812.00us``, ``1.21ms``, ``1.05s``) in milliseconds."""
    if value.endswith("ms"):
        return float(value[:-2])
    if value.endswith("us"):
        return float(value[:-2]) / 1000
    return float(value[:-1]) * 1000


def wrk_numbers(stdout: str) -> dict[str, float]:
    """What wrk printed: p50_ms, p75_ms, p90_ms, p99_ms (its latency distribution),
    requests_per_s, and non_2xx when some answers were not 2xx."""
    found: dict[str, float] = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("50%", "75%", "90%", "99%"):
            found[f"p{parts[0][:-1]}_ms"] = _ms(parts[1])
        if line.startswith("Requests/sec:"):
            found["requests_per_s"] = float(line.split()[1])
        if "Non-2xx" in line:
            found["non_2xx"] = int(line.split()[-1])
    return found
