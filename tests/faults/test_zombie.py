"""A zombie owner: worker A is paused (SIGSTOP) in the middle of a transaction, worker B
takes its partitions over and processes more, then A resumes (SIGCONT). Kafka fences A:
its open transaction was aborted (transaction timeout, below the session timeout) and its
late writes never commit. Totals and alert ids still equal `meter replay`."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from groundwork.kafka import end_offsets
from groundwork.ports import free_port
from groundwork.settings import Settings
from streams.processor import CHANGELOGS
from streams.worker import INPUT_TOPICS, OUTPUT_TOPICS
from tests.faults.support import (
    PacedProducer,
    compare_with_replay,
    owned_partitions,
    split_workload,
    worker_progress,
    worker_with_plans,
)
from tests.streams.harness import running_worker, wait_caught_up
from tests.waiting import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _open_transaction(settings: Settings) -> list[tuple[str, int]]:
    """Worker output partitions holding records of an open transaction (high watermark
    above the last stable offset, which a read_committed ListOffsets answers)."""
    tps = [TopicPartition(t, p) for t, p in end_offsets(settings, (*OUTPUT_TOPICS, *CHANGELOGS))]
    marks = {}
    for isolation in ("read_uncommitted", "read_committed"):
        consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                             "group.id": "zombie-probe", "isolation.level": isolation})
        try:
            marks[isolation] = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
        finally:
            consumer.close()
    return [(tp.topic, tp.partition) for tp, hw, lso in
            zip(tps, marks["read_uncommitted"], marks["read_committed"], strict=True)
            if hw > lso]


def _pause_mid_transaction(settings: Settings, proc: subprocess.Popen[bytes],
                           attempts: int = 200) -> list[tuple[str, int]]:
    """SIGSTOP the worker at a moment it has written part of a transaction."""
    rng = random.Random(3)
    for _ in range(attempts):
        proc.send_signal(signal.SIGSTOP)
        time.sleep(0.2)  # produce requests already on the wire land
        open_now = _open_transaction(settings)
        if open_now:
            return open_now
        proc.send_signal(signal.SIGCONT)
        time.sleep(rng.uniform(0.01, 0.2))
    raise AssertionError("never caught the worker inside a transaction")


def test_a_paused_owner_is_fenced_and_totals_and_alert_ids_stay_exact(
    meter_settings: Settings, tmp_path: Path
) -> None:
    lines, plans, usage = split_workload(seed=53, events=16_000)
    a_log, b_log = tmp_path / "a.log", tmp_path / "b.log"
    with worker_with_plans(meter_settings, plans, a_log, data_dir=tmp_path / "a",
                           web_port=free_port()) as a:
        ends = end_offsets(meter_settings, INPUT_TOPICS)
        # slow enough that the stream outlasts A's pause, B's takeover and A's return
        producer = PacedProducer(meter_settings, usage, rate_per_s=350)
        producer.start()
        wait_until(lambda: producer.sent >= len(usage) // 4, "a quarter of the stream", proc=a)
        open_at_pause = _pause_mid_transaction(meter_settings, a)
        paused = time.monotonic()
        try:
            b_port = free_port()
            with running_worker(meter_settings, b_log, data_dir=tmp_path / "b",
                                web_port=b_port) as b:
                wait_until(lambda: owned_partitions(b_port) == [0, 1],
                           "worker B to take over A's partitions", timeout_s=120, proc=b)
                taken_over = time.monotonic() - paused
                before = worker_progress(meter_settings, ends)
                wait_until(lambda: worker_progress(meter_settings, ends) > before,
                           "worker B to commit more", proc=b)
                assert not producer.done, "the stream ended before A resumed"
                a.send_signal(signal.SIGCONT)
                wait_until(lambda: b"fenced" in a_log.read_bytes(), "A to say it was fenced",
                           timeout_s=120)
                producer.join(120)
                assert producer.failed == [] and producer.acked == len(usage)
                wait_caught_up(meter_settings, proc=b, timeout_s=240)
        finally:
            a.send_signal(signal.SIGCONT)  # never leave a stopped process behind
    fenced_lines = [line for line in a_log.read_text().splitlines()
                    if "meter.worker" in line and "fenced" in line]
    report = compare_with_replay(meter_settings, "zombie owner paused mid-transaction", lines)
    report.notes.append(f"A paused with an open transaction on {len(open_at_pause)} output "
                        f"partitions; B owned every partition {taken_over:.1f} s later")
    report.notes.append(f"A's log: {fenced_lines[0][:160]}")
    report.show()
    assert report.differed == []
    assert report.crossings_expected_exact > 0, "no counter crossing: the test proves nothing"
