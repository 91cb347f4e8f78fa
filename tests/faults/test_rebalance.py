"""Two workers in one consumer group, a rebalance in the middle, then one stopped with
SIGTERM: the totals still equal `meter replay`, number for number."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from groundwork.kafka import end_offsets
from groundwork.ports import free_port
from groundwork.settings import Settings
from streams.worker import INPUT_TOPICS
from tests.faults.support import (
    PacedProducer,
    compare_with_replay,
    owned_partitions,
    produce_all,
    split_workload,
    worker_progress,
    worker_with_plans,
)
from tests.streams.harness import running_worker, wait_caught_up
from tests.waiting import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_two_workers_rebalance_mid_stream_and_one_stops_totals_equal_the_replay(
    meter_settings: Settings, tmp_path: Path
) -> None:
    lines, plans, usage = split_workload(seed=11, events=20_000)
    backlog, live = usage[:8_000], usage[8_000:]
    # Same METER_WORKER_ID (one group), own data dir and web port each.
    with worker_with_plans(meter_settings, plans, tmp_path / "a.log", data_dir=tmp_path / "a",
                           web_port=free_port()) as a:
        produce_all(meter_settings, backlog)
        ends = end_offsets(meter_settings, INPUT_TOPICS)
        wait_until(lambda: worker_progress(meter_settings, ends) > 0,
                   "worker A to commit part of the backlog", proc=a)
        assert worker_progress(meter_settings, ends) < sum(ends.values())
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
    report = compare_with_replay(meter_settings, "two workers, rebalance, SIGTERM", lines)
    report.notes.append(f"worker B first owned partitions {b_owned}, then [0, 1]")
    report.show()
    assert report.differed == []
    assert report.crossings_expected_exact > 0, "no counter crossing: the test proves nothing"
