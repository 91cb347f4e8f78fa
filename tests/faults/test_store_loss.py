"""A worker restarted with its local RocksDB store deleted recovers every workspace from
the table's changelog: totals exact, nothing double counted (S6 ids recovered too)."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from groundwork.ports import free_port
from groundwork.settings import Settings
from tests.faults.support import (
    PacedProducer,
    Record,
    compare_stream,
    duplicates_in,
    expected_of,
    produce_all,
    scrape,
    valid_pairs,
    worker_counted,
    worker_with_plans,
    workload_lines,
)
from tests.streams.harness import running_worker, wait_caught_up
from tests.waiting import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_a_worker_restarted_without_its_store_recovers_exact_totals(
    meter_settings: Settings, tmp_path: Path
) -> None:
    store = tmp_path / "data"
    lines = workload_lines(seed=23, events=16_000)
    pairs = valid_pairs(lines)
    records = [r for _, r in pairs]
    plans = [p for p in pairs if p[1][0] == "quota.plans"]
    usage = [p for p in pairs if p[1][0] != "quota.plans"]
    first, second = usage[:10_000], usage[10_000:]
    # True repeats of already counted events under new offsets: only the S6 id memory,
    # recovered from the changelog, can drop them.
    repeats = first[-1500:]
    with worker_with_plans(meter_settings, [r for _, r in plans], tmp_path / "w1.log",
                           data_dir=store) as w:
        producer = PacedProducer(meter_settings, [r for _, r in first], rate_per_s=2500)
        producer.start()
        wait_until(lambda: producer.sent >= len(first) // 2, "half of the first part", proc=w)
        w.send_signal(signal.SIGKILL)
        w.wait()
    assert not producer.done, "not a mid-stream kill"
    producer.join(120)
    assert producer.failed == []
    shutil.rmtree(store / "worker")
    # Finish the first part with the store gone, then delete it again before the rest.
    with running_worker(meter_settings, tmp_path / "w2.log", data_dir=store) as w:
        wait_caught_up(meter_settings, proc=w, timeout_s=240)
    shutil.rmtree(store / "worker")
    produce_all(meter_settings, [r for _, r in repeats + second])
    port = free_port()
    with running_worker(meter_settings, tmp_path / "w3.log", data_dir=store,
                        web_port=port) as w:
        wait_caught_up(meter_settings, proc=w, timeout_s=240)
        metrics = scrape(port)
    def lines_of(part: list[tuple[bytes, Record]]) -> list[bytes]:
        return [line for line, _ in part]

    expected = expected_of(lines_of(plans + first + repeats + second))
    report = compare_stream(meter_settings, "store deleted, recovery from changelog", expected,
                            lines, events_in=len(records) + len(repeats),
                            duplicates_injected=duplicates_in(records) + len(repeats))
    # The last worker processed exactly the repeats and the second part: its counters
    # are exact for them.
    last_expected = expected_of(lines_of(plans + first + repeats + second))
    first_expected = expected_of(lines_of(plans + first))
    report.notes.append(
        f"last worker: counted {worker_counted(metrics):,} (expected "
        f"{last_expected.counted - first_expected.counted:,}), duplicates dropped "
        f"{int(metrics.get('meter_worker_deduplicated_total', 0)):,} (expected "
        f"{last_expected.duplicates - first_expected.duplicates:,}, of them "
        f"{len(repeats):,} repeats of events counted before the store was deleted)")
    report.show()
    assert report.differed == []
    assert worker_counted(metrics) == last_expected.counted - first_expected.counted
    assert int(metrics["meter_worker_deduplicated_total"]) == (
        last_expected.duplicates - first_expected.duplicates)
