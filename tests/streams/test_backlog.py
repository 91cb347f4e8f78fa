"""A backlog of more than three cycles, published at once in file order, gives the replay's
result: event-time alignment across topics (S1) closes no cycle that a slower topic still
feeds, so nothing is dead-lettered as ``cycle_closed`` that the replay keeps (S4)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from groundwork.settings import Settings
from meter.workload import Workload, generate_lines
from schemas.codec import decode_record
from streams.core.replay import Replay
from tests.faults.support import compare, expected_of, fixed_limit_keys, stream_output
from tests.streams.harness import publish_lines, read_topic, running_worker, wait_caught_up

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _small_limits(line: bytes) -> bytes:
    """Plans with limits that usage crosses every cycle (counter crossings to compare)."""
    obj = orjson.loads(line)
    if obj.get("type") != "plan":
        return line
    obj["limits"] = {"ai_tokens": 20_000, "schedule_runs": 8, "api_requests_per_cycle": 300,
                     "machines": 6, "storage_bytes": 1 << 30}
    return orjson.dumps(obj)


def _replay_cycle_closed(lines: list[bytes]) -> Counter[tuple[str, str]]:
    closed: Counter[tuple[str, str]] = Counter()

    def letter(d: dict[str, object]) -> None:
        if d["reason"] == "cycle_closed":
            raw = orjson.loads(str(d["raw"]))
            closed[(raw["type"], raw["event_id"])] += 1

    replay = Replay(now_ms=None, on_crossing=lambda _: None, on_deadletter=letter)
    replay.feed(lines)
    replay.finish()
    return closed


def test_a_three_month_backlog_published_at_once_equals_the_replay(
    meter_settings: Settings, tmp_path: Path
) -> None:
    wl = Workload(seed=17, events=30_000, workspaces=25, span_days=95, duplicate_rate=0.02,
                  invalid_rate=0.0)
    lines = [_small_limits(line.rstrip(b"\n")) for line in generate_lines(wl)]
    published = publish_lines(meter_settings, lines)  # every topic at once, in file order
    with running_worker(meter_settings, tmp_path / "worker.log") as proc:
        wait_caught_up(meter_settings, proc=proc, timeout_s=300)
    expected = expected_of(lines)
    starts = {start for body in expected.usage["workspaces"].values()
              for start in body["cycles"]}
    assert len(starts) >= 4, "the log does not span three cycles: the test proves little"

    report = compare("backlog of three months at once", expected, stream_output(meter_settings),
                     fixed_limit_keys(lines), events_in=published, duplicates_injected=0)
    stream_closed: Counter[tuple[str, str]] = Counter()
    for _, letter in read_topic(meter_settings, "usage.deadletter", timeout_s=60):
        if letter["reason"] == "cycle_closed":
            _, event = decode_record(letter["original"])
            stream_closed[(letter["source_topic"], event["event_id"])] += 1
    replay_closed = _replay_cycle_closed(lines)
    report.notes.append(f"cycle_closed: replay {sum(replay_closed.values())}, stream "
                        f"{sum(stream_closed.values())}; {len(starts)} cycle starts")
    report.show()
    assert report.differed == []
    assert sum(stream_closed.values()) <= sum(replay_closed.values())
    assert report.crossings_expected_exact > 0, "no counter crossing: the test proves little"
