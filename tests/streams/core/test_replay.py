"""`meter replay` end to end on small logs: files, determinism, --now, --plan, dead letters."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from meter.cli import app

ACCEPTANCE = Path(__file__).resolve().parents[3] / ".." / "shared" / "acceptance"

PLAN = ('{"type": "plan", "event_id": "p1", "workspace_id": "w1", '
        '"occurred_at": "2025-01-01T00:00:00Z", "plan": "%s", '
        '"cycle_anchor": "2025-01-01T00:00:00Z", "limits": {"ai_tokens": %d}, "owners": []}')
TOKENS = ('{"type": "tokens", "event_id": "%s", "workspace_id": "w1", "occurred_at": "%s", '
          '"member_id": "a", "machine_id": null, "skill": null, "provider": "openai", '
          '"model": "gpt-4o", "input_tokens": %d, "output_tokens": 0, "surface": "chat"}')


def _replay(tmp_path: Path, lines: list[str] | bytes, *args: str) -> tuple[Path, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "log.jsonl"
    log.write_bytes(lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode())
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["replay", str(log), "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    return out, result.output


def _jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_replay_writes_three_files_byte_identical_on_rerun(tmp_path: Path) -> None:
    events = (ACCEPTANCE / "breakdowns_no_plan" / "events.jsonl").read_bytes()
    events += (ACCEPTANCE / "rearm_topup" / "events.jsonl").read_bytes()
    first, output = _replay(tmp_path / "a", events)
    second, _ = _replay(tmp_path / "b", events)
    for name in ("usage.json", "thresholds.jsonl", "deadletter.jsonl"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert "counted" in output
    usage = json.loads((first / "usage.json").read_text())
    assert sorted(usage["workspaces"]) == ["w6", "wn"]


def test_replay_now_rejects_events_more_than_5_minutes_after(tmp_path: Path) -> None:
    lines = [TOKENS % ("a", "2025-01-02T00:05:00Z", 1), TOKENS % ("b", "2025-01-02T00:05:01Z", 1)]
    out, _ = _replay(tmp_path, lines, "--now", "2025-01-02T00:00:00Z")
    dead = _jsonl(out / "deadletter.jsonl")
    assert [(d["line"], d["reason"]) for d in dead] == [(2, "time_out_of_range")]
    # Without --now the test is inert (S12).
    out, _ = _replay(tmp_path / "inert", lines)
    assert _jsonl(out / "deadletter.jsonl") == []


def test_replay_plan_file_replaces_the_logs_plans_what_if(tmp_path: Path) -> None:
    lines = [PLAN % ("small", 100), TOKENS % ("a", "2025-01-02T00:00:00Z", 90)]
    out, _ = _replay(tmp_path, lines)
    assert [c["threshold"] for c in _jsonl(out / "thresholds.jsonl")] == [80]
    plans = tmp_path / "plans.jsonl"
    plans.write_text(PLAN % ("big", 1000) + "\n")
    out, _ = _replay(tmp_path / "whatif", lines, "--plan", str(plans))
    assert _jsonl(out / "thresholds.jsonl") == []
    usage = json.loads((out / "usage.json").read_text())
    cycle = usage["workspaces"]["w1"]["cycles"]["2025-01-01T00:00:00Z"]
    assert (cycle["plan"], cycle["limits"]["ai_tokens"]) == ("big", 1000)


def test_replay_bad_plan_file_is_a_user_error(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text(TOKENS % ("a", "2025-01-02T00:00:00Z", 1) + "\n")
    plans = tmp_path / "plans.jsonl"
    plans.write_text(TOKENS % ("a", "2025-01-02T00:00:00Z", 1) + "\n")
    result = CliRunner().invoke(app, ["replay", str(log), "--out", str(tmp_path / "o"),
                                      "--plan", str(plans)])
    assert result.exit_code != 0
    assert "only plan records" in str(result.exception)


def test_replay_blank_lines_skipped_and_undecodable_kept_raw(tmp_path: Path) -> None:
    data = (TOKENS % ("a", "2025-01-02T00:00:00Z", 1)).encode() + b"\n\n   \n\xff{oops\n"
    data += (TOKENS % ("b", "2025-01-02T00:00:00Z", 2)).encode() + b"\n"
    out, _ = _replay(tmp_path, data)
    dead = _jsonl(out / "deadletter.jsonl")
    assert [(d["line"], d["reason"], d["raw"]) for d in dead] == [
        (4, "undecodable", "\\xff{oops")]
    usage = json.loads((out / "usage.json").read_text())
    assert usage["workspaces"]["w1"]["cycles"]["2025-01-01T00:00:00Z"]["totals"]["ai_tokens"] == 3


def test_replay_cycle_closed_is_dead_lettered(tmp_path: Path) -> None:
    lines = [TOKENS % ("a", "2025-01-02T00:00:00Z", 1), TOKENS % ("b", "2025-03-02T00:00:00Z", 1),
             TOKENS % ("c", "2025-01-03T00:00:00Z", 1)]
    out, _ = _replay(tmp_path, lines)
    dead = _jsonl(out / "deadletter.jsonl")
    assert [(d["line"], d["reason"]) for d in dead] == [(3, "cycle_closed")]
    assert dead[0]["raw"] == lines[2]
