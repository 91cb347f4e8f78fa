"""Two workers in one consumer group, a rebalance in the middle, then one stopped with
SIGTERM: the totals still equal `meter replay`, number for number."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from groundwork.kafka import end_offsets
from groundwork.settings import Settings
from streams.worker import INPUT_TOPICS
from tests.faults.support import (
    PacedProducer,
    compare,
    duplicates_in,
    expected_of,
    fixed_limit_keys,
    owned_partitions,
    produce_all,
    progress,
    split_plans,
    stream_output,
    valid_events,
    wait_plans_applied,
    workload_lines,
)
from tests.streams.harness import (
    committed,
    free_port,
    running_worker,
    wait_caught_up,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_two_workers_rebalance_mid_stream_and_one_stops_totals_equal_the_replay(
    meter_settings: Settings, tmp_path: Path
) -> None:
    lines = workload_lines(seed=11, events=20_000)
    records = valid_events(lines)
    plans, usage = split_plans(records)
    backlog, live = usage[:8_000], usage[8_000:]
    produce_all(meter_settings, plans)
    group = meter_settings.topic_prefix + meter_settings.worker_id
    # Same METER_WORKER_ID (one group), own data dir and web port each.
    with running_worker(meter_settings, tmp_path / "a.log", data_dir=tmp_path / "a",
                        web_port=free_port()) as a:
        wait_plans_applied(meter_settings, a)
        produce_all(meter_settings, backlog)
        ends = end_offsets(meter_settings, INPUT_TOPICS)
        wait_until(lambda: progress(committed(meter_settings, group, ends)) > 0,
                   "worker A to commit part of the backlog", proc=a)
        assert progress(committed(meter_settings, group, ends)) < sum(ends.values())
        producer = PacedProducer(meter_settings, live, rate_per_s=1000)
        producer.start()
        b_port = free_port()
        with running_worker(meter_settings, tmp_path / "b.log", data_dir=tmp_path / "b",
                            web_port=b_port) as b:
            wait_until(lambda: bool(owned_partitions(b_port)),
                       "worker B to be given partitions", proc=b)
            b_owned = owned_partitions(b_port)
            assert not producer.done, "the stream ended before the rebalance"
            wait_until(lambda: producer.sent >= len(live) // 2, "more events while both run",
                       proc=b)
            assert not producer.done, "the stream ended before worker A was stopped"
            a.send_signal(signal.SIGTERM)  # graceful stop: B takes every partition
            assert a.wait(60) is not None
            wait_until(lambda: owned_partitions(b_port) == [0, 1],
                       "worker B to take over every partition", proc=b)
            producer.join(120)
            assert producer.failed == [] and producer.acked == len(live)
            wait_caught_up(meter_settings, proc=b, timeout_s=240)
    expected = expected_of(lines)
    report = compare("two workers, rebalance, SIGTERM", expected, stream_output(meter_settings),
                     fixed_limit_keys(lines), events_in=len(records),
                     duplicates_injected=duplicates_in(records))
    report.notes.append(f"worker B first owned partitions {b_owned}, then [0, 1]")
    report.show()
    assert report.differed == []
    assert report.crossings_expected_exact > 0, "no counter crossing: the test proves nothing"
