"""The stream worker on the real broker agrees with `meter replay`, under faults too.

Every test publishes Avro events to isolated topics (a unique prefix), runs
`meter worker` as a real subprocess until its committed offsets reach the end of
every input topic, and reads the real output topics.
"""

from __future__ import annotations

import random
import signal
import struct
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from groundwork.kafka import end_offsets
from groundwork.ports import free_port
from groundwork.settings import Settings
from schemas.codec import encode_record, schema_id_of
from schemas.quotas import CYCLE_COUNTER_NAMES
from tests.streams.harness import (
    committed,
    differences,
    flatten_usage,
    latest_aggregates,
    produce_raw,
    publish_lines,
    read_topic,
    replay_lines,
    running_worker,
    satisfied_thresholds,
    wait_caught_up,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

# Cases whose events all fall in one cycle or two adjacent ones: S4 closes nothing, so
# totals cannot depend on the order across topics (S1). anchor_jan31_clamp spans five.
SAME_OR_ADJACENT_CYCLE_CASES = ("boundary_80", "jump_70_to_101", "rearm_topup",
                                "breakdowns_no_plan", "duplicates", "invalid_events")
COUNTER_QUOTAS = CYCLE_COUNTER_NAMES


def _case_lines(acceptance_dir: Path, cases: tuple[str, ...]) -> list[bytes]:
    lines: list[bytes] = []
    for case in cases:
        lines += (acceptance_dir / case / "events.jsonl").read_bytes().splitlines()
    return lines


def _generated_lines(seed: int, workspaces: int, events: int) -> list[bytes]:
    """Plans first, then counters and gauges in one cycle, with repeats (S6)."""
    rng = random.Random(seed)
    base = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    lines = []
    for w in range(workspaces):
        lines.append(orjson.dumps({
            "type": "plan", "event_id": f"p{w}", "workspace_id": f"ws{w}", "occurred_at": base,
            "plan": "team", "cycle_anchor": "2026-01-01T00:00:00Z", "timezone": "UTC",
            "limits": {"ai_tokens": 40_000, "schedule_runs": 30, "api_requests_per_cycle": 400,
                       "machines": 3, "storage_bytes": 100_000},
            "owners": [f"ops@ws{w}.example"]}))
    sent: list[bytes] = []
    for i in range(events):
        w = rng.randrange(workspaces)
        t = base + 3_600_000 + i * 1000
        kind = rng.random()
        common = {"event_id": f"e{i}", "workspace_id": f"ws{w}", "occurred_at": t}
        if kind < 0.4:
            ev = {"type": "tokens", **common, "member_id": f"m{rng.randrange(5)}",
                  "machine_id": rng.choice([None, "box1", "box2"]), "skill": None,
                  "provider": rng.choice(["openai", "anthropic"]), "model": "large",
                  "input_tokens": rng.randrange(400), "output_tokens": rng.randrange(100),
                  "surface": rng.choice(["chat", "agent"])}
        elif kind < 0.6:
            ev = {"type": "command", **common, "member_id": f"m{rng.randrange(5)}",
                  "machine_id": f"box{rng.randrange(3)}", "command": "make"}
        elif kind < 0.75:
            ev = {"type": "api", **common, "member_id": None, "protocol": "rest",
                  "requests": rng.randrange(1, 8)}
        elif kind < 0.85:
            ev = {"type": "schedule_run", **common, "member_id": "m0",
                  "schedule_id": "nightly", "machine_id": None}
        elif kind < 0.93:
            ev = {"type": "storage", **common, "category": "transcripts",
                  "delta_bytes": rng.randrange(-2000, 9000)}
        else:
            ev = {"type": "machine", **common, "machine_id": f"box{rng.randrange(5)}",
                  "action": rng.choice(["registered", "registered", "removed"])}
        line = orjson.dumps(ev)
        lines.append(line)
        sent.append(line)
        if rng.random() < 0.05:  # a producer retry: the same event again (S6)
            lines.append(rng.choice(sent))
    return lines


def _forecast_lines() -> list[bytes]:
    """Workspace wf opts in to forecast alerts: AI tokens (default lead, 3 days) fire on
    Mar 2 (100 a day reaches 2800 on Mar 29), again after a top-up (arm 2); schedule runs
    (lead 5 days) on Mar 2 (1 a day reaches 20 on Mar 21)."""
    common = {"workspace_id": "wf"}

    def tokens(event_id: str, at: str, n: int) -> bytes:
        return orjson.dumps({"type": "tokens", "event_id": event_id, "occurred_at": at,
                             "member_id": "kim", "machine_id": None, "skill": None,
                             "provider": "openai", "model": "gpt-4o", "input_tokens": n,
                             "output_tokens": 0, "surface": "chat", **common})

    return [
        orjson.dumps({"type": "plan", "event_id": "pf", "occurred_at": "2025-03-01T00:00:00Z",
                      "plan": "team", "cycle_anchor": "2025-03-01T00:00:00Z",
                      "limits": {"ai_tokens": 2800, "schedule_runs": 20},
                      "owners": ["ops@wf.example"], **common}),
        orjson.dumps({"type": "alert_settings", "event_id": "sf",
                      "occurred_at": "2025-03-01T00:00:00Z",
                      "forecasts": [{"quota": "ai_tokens", "lead_days": None},
                                    {"quota": "schedule_runs", "lead_days": 5}], **common}),
        tokens("tf1", "2025-03-02T00:00:00Z", 100),
        *(orjson.dumps({"type": "schedule_run", "event_id": f"rf{d}", "member_id": "kim",
                        "schedule_id": "nightly", "machine_id": None,
                        "occurred_at": f"2025-03-0{d}T00:00:00Z", **common}) for d in (2, 3)),
        orjson.dumps({"type": "topup", "event_id": "uf", "occurred_at": "2025-03-03T00:00:00Z",
                      "quota": "ai_tokens", "amount": 2800, **common}),
        tokens("tf2", "2025-03-04T00:00:00Z", 1200),
    ]


def _assert_crossings_sound(crossings: list[dict[str, Any]]) -> None:
    """S9: current*100 >= t*limit at every crossing; an alert id is one (quota, t, arm).
    A forecast alert: below the limit, 100 % projected after it fired and before the end."""
    by_id: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
    for c in crossings:
        if c["kind"] == "forecast":
            assert c["current"] < c["limit"], c
            assert c["crossed_at"] < c["forecast_at"] < c["cycle_ends_at"], c
        else:
            assert c["current"] * 100 >= c["threshold"] * c["limit"], c
        by_id[c["alert_id"]].add((c["workspace_id"], c["cycle_start"], c["quota"],
                                  c["threshold"], c["arm"]))
    assert all(len(v) == 1 for v in by_id.values())


def test_stream_totals_and_breakdowns_equal_the_replay(
    meter_settings: Settings, acceptance_dir: Path, tmp_path: Path
) -> None:
    lines = _case_lines(acceptance_dir, SAME_OR_ADJACENT_CYCLE_CASES) + _forecast_lines()
    publish_lines(meter_settings, lines)
    with running_worker(meter_settings, tmp_path / "worker.log") as proc:
        wait_caught_up(meter_settings, proc=proc)
    stream = latest_aggregates(r for _, r in read_topic(meter_settings, "usage.aggregates"))
    usage, replay_crossings = replay_lines(lines)
    assert differences(stream, flatten_usage(usage)) == []

    crossings = [r for _, r in read_topic(meter_settings, "quota.thresholds")]
    _assert_crossings_sound(crossings)
    # Plans precede usage and no limit changes mid-stream in these workspaces, so the
    # counter quotas' alert ids are the same in every order (S1).
    fixed = {"w4", "w5", "wf"}

    def ids(cs: list[dict[str, Any]]) -> set[str]:
        return {c["alert_id"] for c in cs
                if c["workspace_id"] in fixed and c["quota"] in COUNTER_QUOTAS}

    assert ids(crossings) == ids(replay_crossings)
    assert ids(crossings), "the fixed-limit workspaces crossed nothing: the test proves nothing"
    # forecast alerts: the same ids, projected instants and triggering events
    def forecasts(cs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((c["alert_id"], c["forecast_at"], c["event_id"]) for c in cs
                      if c["kind"] == "forecast")

    assert forecasts(crossings) == forecasts(replay_crossings)
    assert [f[0] for f in forecasts(crossings)] == [
        "wf/2025-03-01T00:00:00Z/ai_tokens/forecast",
        "wf/2025-03-01T00:00:00Z/ai_tokens/forecast#2",
        "wf/2025-03-01T00:00:00Z/schedule_runs/forecast"]


def test_quota_state_and_worker_metrics_after_a_run(
    meter_settings: Settings, acceptance_dir: Path, tmp_path: Path
) -> None:
    publish_lines(meter_settings, _case_lines(acceptance_dir, ("jump_70_to_101",)))
    port = free_port()
    with running_worker(meter_settings, tmp_path / "worker.log", web_port=port) as proc:
        wait_caught_up(meter_settings, proc=proc)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # lag is refreshed on a timer
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            if "consumer_lag{" in metrics:
                break
            time.sleep(0.5)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
    assert ready.status_code == 200
    assert "meter_worker_crossings_total 3" in metrics
    assert 'meter_worker_consumer_lag{partition="' in metrics  # labels in name order
    owned = [line for line in metrics.splitlines()
             if line.startswith("meter_worker_partition_owned{")]
    assert owned == [f'meter_worker_partition_owned{{partition="{p}"}} 1.0'
                     for p in range(meter_settings.kafka_partitions)]  # the only worker
    latest: dict[str, dict[str, Any]] = {}
    for _, record in read_topic(meter_settings, "quota.state"):
        if record["workspace_id"]:  # heartbeats have none
            latest[record["workspace_id"]] = record
    state = latest["w5"]
    quotas = {q["quota"]: q for q in state["quotas"]}
    assert set(quotas) == {"machines", "ai_tokens", "storage_bytes", "schedule_runs",
                           "api_requests_per_minute", "api_requests_per_cycle"}
    assert quotas["ai_tokens"]["used"] == 1010
    assert quotas["ai_tokens"]["limit"] == 1000
    assert quotas["ai_tokens"]["percent"] == 101
    assert quotas["ai_tokens"]["decision"] == "reject"


def test_bad_bytes_and_invalid_events_are_dead_lettered_and_good_ones_counted(
    meter_settings: Settings, tmp_path: Path
) -> None:
    good = [orjson.dumps({"type": "command", "event_id": f"c{i}", "workspace_id": "wd",
                          "occurred_at": "2026-03-03T10:00:00Z", "member_id": "kim",
                          "machine_id": "box", "command": "ls"}) for i in range(3)]
    publish_lines(meter_settings, good[:1])
    produce_raw(meter_settings, "usage.commands", b"wd", b"not avro at all")  # wrong magic
    produce_raw(meter_settings, "usage.tokens", b"wd", b"\x00" + struct.pack(">I", 999_999)
                + b"\x02")  # unknown schema id
    produce_raw(meter_settings, "usage.api", b"wd",
                encode_record("usage.api", {"event_id": "a1", "workspace_id": "wd",
                                            "occurred_at": 1_772_532_000_000,
                                            "member_id": None, "protocol": "rest",
                                            "requests": -4}))  # negative count
    produce_raw(meter_settings, "usage.schedules", b"wd",
                struct.pack(">bI", 0, schema_id_of("usage.schedules")) + b"\xff\xff")  # cut body
    produce_raw(meter_settings, "usage.commands", b"someone-else",
                encode_record("usage.commands", {"event_id": "c9", "workspace_id": "wd",
                                                 "occurred_at": 1_772_532_000_000,
                                                 "member_id": "kim", "machine_id": "box",
                                                 "command": "ls"}))  # key != workspace
    publish_lines(meter_settings, good[1:])
    with running_worker(meter_settings, tmp_path / "worker.log") as proc:
        wait_caught_up(meter_settings, proc=proc)
    letters = [r for _, r in read_topic(meter_settings, "usage.deadletter")]
    reasons = sorted((r["source_topic"], r["reason"]) for r in letters)
    assert reasons == sorted([
        ("usage.commands", "undecodable"), ("usage.tokens", "undecodable"),
        ("usage.api", "invalid_value"), ("usage.schedules", "undecodable"),
        ("usage.commands", "invalid_value"),
    ])
    assert all(r["detail"] for r in letters)
    originals = {r["original"] for r in letters}
    assert b"not avro at all" in originals
    stream = latest_aggregates(r for _, r in read_topic(meter_settings, "usage.aggregates"))
    commands = [v for k, v in stream.items()
                if k[0] == "wd" and k[2:] == ("totals", "", "commands")]
    assert commands == [3]


def test_totals_are_exact_after_sigkill_mid_stream_and_restart(
    meter_settings: Settings, tmp_path: Path
) -> None:
    # small batches: many transactions, so a kill lands between commits, not after the last
    meter_settings = meter_settings.model_copy(update={"worker_batch_max": 1_000})
    lines = _generated_lines(seed=7, workspaces=40, events=30_000)
    publish_lines(meter_settings, lines)
    group = meter_settings.topic_prefix + meter_settings.worker_id
    ends = end_offsets(meter_settings, ["usage.tokens", "usage.commands"])
    kills = mid_stream = 0
    for attempt in range(2):  # kill twice, each time once some (not all) offsets committed
        with running_worker(meter_settings, tmp_path / f"worker{attempt}.log") as proc:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                done = committed(meter_settings, group, ends)
                progress = sum(max(0, v) for v in done.values())
                if progress >= (attempt + 1) * sum(ends.values()) // 4:
                    break
                time.sleep(0.05)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
            # One commit can cover the rest of the log: a kill after
            # that is not mid-stream; at least one of the two must be.
            done = committed(meter_settings, group, ends)
            if sum(max(0, v) for v in done.values()) < sum(ends.values()):
                mid_stream += 1
    assert kills == 2
    assert mid_stream >= 1, "the worker finished before every kill: no mid-stream kill"
    with running_worker(meter_settings, tmp_path / "worker-final.log") as proc:
        wait_caught_up(meter_settings, proc=proc, timeout_s=300)
    stream = latest_aggregates(r for _, r in read_topic(meter_settings, "usage.aggregates",
                                                        timeout_s=60))
    usage, replay_crossings = replay_lines(lines)
    assert differences(stream, flatten_usage(usage)) == []
    crossings = [r for _, r in read_topic(meter_settings, "quota.thresholds", timeout_s=60)]
    _assert_crossings_sound(crossings)
    _assert_every_satisfied_threshold_fired(usage, crossings)
    # Plans precede usage and limits never change: counter alert ids are order-free (S1).
    counter_ids = [{c["alert_id"] for c in cs if c["quota"] in COUNTER_QUOTAS}
                   for cs in (crossings, replay_crossings)]
    assert counter_ids[0] == counter_ids[1]
    assert counter_ids[0], "nothing crossed: the test proves nothing"


def _assert_every_satisfied_threshold_fired(
    usage: dict[str, Any], crossings: list[dict[str, Any]]
) -> None:
    """S1: every threshold a cycle's final usage and final limit satisfy has fired in it."""
    fired = {(c["workspace_id"], c["cycle_start"], c["quota"], c["threshold"])
             for c in crossings}
    satisfied = satisfied_thresholds(usage)
    for ws, start, quota, t, start_text in satisfied:
        assert (ws, start, quota, t) in fired, (ws, start_text, quota, t)
    assert satisfied, "no threshold was satisfied: the test proves nothing"


def test_a_worker_started_without_kafka_says_so_and_exits(tmp_path: Path) -> None:
    """No broker answers: the worker exits 2 with what to do (before, it failed before its
    status server started and then waited forever to stop that server)."""
    import subprocess
    import sys

    from groundwork.ports import free_port
    from groundwork.settings import load_settings
    from tests.streams.harness import worker_env

    settings = load_settings(data_dir=tmp_path / "data",
                             kafka_bootstrap=f"127.0.0.1:{free_port()}")
    result = subprocess.run([sys.executable, "-m", "meter.cli_entry", "worker"],
                            env=worker_env(settings, free_port()), capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert f"Kafka at {settings.kafka_bootstrap} does not answer" in result.stderr
    assert "meter kafka start" in result.stderr
