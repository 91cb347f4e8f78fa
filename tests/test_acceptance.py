"""The shared acceptance cases (../shared/acceptance) through `meter replay`'s own code path.

Compared as the cases' README says: usage numbers equal (breakdown entries whose
numbers are all zero may be absent), the set of (alert_id, quota, threshold,
cycle_start) exact, lowest first within one event and quota with highest_in_event on
the highest, and the dead-lettered lines with their reason codes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from meter.commands.replay import run_replay

ACCEPTANCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "acceptance"
CASES = sorted(p.name for p in ACCEPTANCE.iterdir() if (p / "events.jsonl").is_file()) if (
    ACCEPTANCE.is_dir()) else []


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _all_zero(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_all_zero(v) for v in value.values())
    return bool(value == 0)


def _drop_zero_entries(cycle: dict[str, Any]) -> dict[str, Any]:
    """Breakdown entries whose numbers are all zero may be absent (README)."""
    out = dict(cycle)
    for breakdown in ("machines", "members", "skills", "providers"):
        out[breakdown] = {k: v for k, v in cycle.get(breakdown, {}).items() if not _all_zero(v)}
    for provider in out["providers"].values():
        provider["models"] = {
            k: v for k, v in provider.get("models", {}).items() if not _all_zero(v)
        }
    return out


def _normalise(usage: dict[str, Any]) -> dict[str, Any]:
    return {
        ws: {start: _drop_zero_entries(_without_cost(c)) for start, c in body["cycles"].items()}
        for ws, body in usage["workspaces"].items()
    }


def _without_cost(cycle: dict[str, Any]) -> dict[str, Any]:
    """The acceptance files predate the cost ledger (usage.json's ``cost`` object, checked
    in tests/streams/core/test_pricing.py): its numbers must add up, then it is set aside."""
    out = dict(cycle)
    cost = out.pop("cost", None)
    if cost is not None:
        assert cost["total"] == sum(m["cost"] for m in cost["models"].values())
        assert cost["unpriced_tokens"] == sum(m["unpriced_tokens"] for m in cost["models"].values())
    return out


@pytest.mark.parametrize("case", CASES)
def test_acceptance_case(case: str, tmp_path: Path) -> None:
    folder = ACCEPTANCE / case
    run_replay(folder / "events.jsonl", tmp_path, now_ms=None, plan_file=None)

    expected_usage = json.loads((folder / "expected_usage.json").read_text())
    actual_usage = json.loads((tmp_path / "usage.json").read_text())
    assert _normalise(actual_usage) == _normalise(expected_usage)

    expected = _read_jsonl(folder / "expected_thresholds.jsonl")
    actual = _read_jsonl(tmp_path / "thresholds.jsonl")
    key = ("alert_id", "quota", "threshold", "cycle_start")
    assert sorted(tuple(c[k] for k in key) for c in actual) == sorted(
        tuple(c[k] for k in key) for c in expected
    )
    assert len(actual) == len({c["alert_id"] for c in actual})
    # S9: within one event and quota, lowest first; highest_in_event marks the highest.
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for crossing in actual:
        groups.setdefault((crossing["event_id"], crossing["quota"]), []).append(crossing)
    for group in groups.values():
        thresholds = [c["threshold"] for c in group]
        assert thresholds == sorted(thresholds)
        assert [c["highest_in_event"] for c in group] == [False] * (len(group) - 1) + [True]
    by_id = {c["alert_id"]: c for c in expected}
    for crossing in actual:
        want = by_id[crossing["alert_id"]]
        assert crossing == want, crossing["alert_id"]

    expected_dead = _read_jsonl(folder / "expected_deadletter.jsonl")
    actual_dead = _read_jsonl(tmp_path / "deadletter.jsonl")
    assert [(d["line"], d["reason"]) for d in actual_dead] == [
        (d["line"], d["reason"]) for d in expected_dead
    ]
    raw_lines = (folder / "events.jsonl").read_bytes().split(b"\n")
    for dead in actual_dead:
        assert dead["raw"] == raw_lines[dead["line"] - 1].decode().rstrip("\r")
        assert dead["detail"]


def test_acceptance_cases_are_present() -> None:
    assert len(CASES) >= 7, f"expected the shared acceptance cases in {ACCEPTANCE}"
