"""The stream agrees with the replay on a log that crosses every threshold of every quota
(80, 95 and 100 % of machines, ai_tokens, storage_bytes, schedule_runs,
api_requests_per_minute and api_requests_per_cycle), with duplicates and bad lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from groundwork.settings import Settings
from meter.workload import DRIVABLE, Drive, Workload, generate_lines
from tests.faults.support import (
    compare,
    duplicates_in,
    expected_of,
    fixed_limit_keys,
    produce_all,
    split_plans,
    stream_output,
    valid_events,
    wait_plans_applied,
)
from tests.streams.harness import running_worker, wait_caught_up

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

THRESHOLDS = (80, 95, 100)


def test_every_threshold_of_every_quota_crossed_as_in_the_replay(
    meter_settings: Settings, tmp_path: Path
) -> None:
    drives = tuple(Drive(f"w{i:04d}", quota) for i, quota in enumerate(sorted(DRIVABLE), 1))
    wl = Workload(seed=41, events=6_000, workspaces=12, duplicate_rate=0.02,
                  invalid_rate=0.002, drive=drives)
    lines = [line.rstrip(b"\n") for line in generate_lines(wl)]
    records = valid_events(lines)
    plans, usage = split_plans(records)
    produce_all(meter_settings, plans)
    with running_worker(meter_settings, tmp_path / "worker.log") as w:
        wait_plans_applied(meter_settings, w)
        produce_all(meter_settings, usage)
        wait_caught_up(meter_settings, proc=w, timeout_s=240)

    expected = expected_of(lines)
    stream = stream_output(meter_settings)
    report = compare("every threshold of every quota", expected, stream,
                     fixed_limit_keys(lines), events_in=len(records),
                     duplicates_injected=duplicates_in(records))
    report.show()
    assert report.differed == []
    crossed = {(c["workspace_id"], c["quota"], c["threshold"]) for c in stream.crossings}
    missing = [(d.workspace, d.quota, t) for d in drives for t in THRESHOLDS
               if (d.workspace, d.quota, t) not in crossed]
    assert missing == [], f"thresholds the drive should have crossed: {missing}"
    assert {q for _, q, _ in crossed} >= set(DRIVABLE)
