"""The broker stopped (SIGTERM, graceful) and started again under load: a worker and a
paced producer (the platform's ``schemas.publisher``) ride through the outage, and the
stream's totals still equal `meter replay`, with every event counted exactly once.

This test starts a broker of its own (``deploy.kafka_local`` on a free port, a temp data
dir, the cached jars): the session broker other tests share is never touched.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from deploy import kafka_local
from deploy.topics import create_topics
from groundwork.kafka import end_offsets
from groundwork.ports import free_port
from streams.worker import INPUT_TOPICS
from tests.faults.support import (
    compare,
    duplicates_in,
    expected_of,
    fixed_limit_keys,
    produce_all,
    progress,
    scrape,
    split_plans,
    stream_output,
    valid_events,
    worker_counted,
    workload_lines,
)
from tests.faults.worker_support import (
    PacedPublisher,
    committed_now,
    dedicated_broker,
    log_crashes,
    wait_committed,
    worker_health,
)
from tests.streams.harness import running_worker, wait_snapshots_settled
from tests.waiting import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

OUTAGE_S = 7.0  # broker down (after its graceful stop, before the start command)
RATE_PER_S = 500.0


def test_broker_stopped_and_restarted_under_load_totals_equal_the_replay(
    tmp_path: Path,
) -> None:
    lines = workload_lines(seed=41, events=14_000)
    records = valid_events(lines)
    plans, usage = split_plans(records)
    with dedicated_broker(tmp_path / "broker") as broker:
        settings = broker.model_copy(update={
            "data_dir": tmp_path / "data", "topic_prefix": f"t{uuid.uuid4().hex[:10]}."})
        create_topics(settings)
        produce_all(settings, plans)
        group = settings.topic_prefix + settings.worker_id
        port = free_port()
        log = tmp_path / "worker.log"
        with running_worker(settings, log, web_port=port) as worker:
            wait_committed(settings, ["quota.plans"], worker, "the worker to apply every plan",
                           log=log)
            producer = PacedPublisher(settings, usage, rate_per_s=RATE_PER_S)
            producer.start()
            wait_until(lambda: producer.sent >= len(usage) // 4, "a quarter of the stream",
                       proc=worker)
            ends = end_offsets(settings, INPUT_TOPICS)
            wait_until(lambda: progress(committed_now(settings, group, ends) or {}) > len(plans),
                       "the worker to commit usage before the outage", proc=worker)
            sent_at_stop = producer.sent
            t0 = time.monotonic()
            assert kafka_local.stop(broker, grace_s=30), "the broker was not running"
            stop_s = time.monotonic() - t0
            assert producer.is_alive(), "the stream ended before the broker stopped"
            time.sleep(OUTAGE_S)
            sent_at_start = producer.sent
            t1 = time.monotonic()
            kafka_local.start(broker)
            start_s = time.monotonic() - t1
            producer.join(300)
            assert not producer.is_alive(), "the producer hung after the broker came back"
            assert producer.flushed, f"the producer gave up: {producer.errors[:3]}"
            wait_committed(settings, INPUT_TOPICS, worker, "the worker to catch up", log=log)
            wait_snapshots_settled(settings, time.monotonic() + 60)
            metrics = scrape(port)
            health = worker_health(port)
            alive = worker.poll() is None
        # what the broker holds: the idempotent producer neither lost nor doubled a record
        on_topics = sum(end_offsets(settings, INPUT_TOPICS).values())
        output = stream_output(settings)
    expected = expected_of(lines)
    report = compare("broker stopped and restarted under load", expected, output,
                     fixed_limit_keys(lines), events_in=len(records),
                     duplicates_injected=duplicates_in(records))
    report.counted_stream = worker_counted(metrics)
    deduplicated = int(metrics.get("meter_worker_deduplicated_total", -1))
    report.duplicates_removed = deduplicated
    crashes = log_crashes(log)
    report.notes += [
        f"broker: graceful stop {stop_s:.1f} s, down {OUTAGE_S:.0f} s more, start "
        f"{start_s:.1f} s; the producer had sent {sent_at_stop:,} of {len(usage):,} usage "
        f"events at the stop, {sent_at_start:,} when the broker started again",
        f"producer: {on_topics:,} records on the input topics for {len(records):,} produced; "
        f"delivery errors {len(producer.errors)}, records re-sent {producer.resent}"
        + (f" (first: {producer.errors[0][:120]})" if producer.errors else ""),
        f"worker: alive {alive}, /healthz {health[0]}, same process throughout, "
        f"fence violations {int(metrics.get('meter_worker_fence_violations_total', 0)):,}, "
        f"transactions aborted "
        f"{int(metrics.get('meter_worker_transactions_aborted_total', 0)):,},"
        f" log crash lines {len(crashes)}" + (f" (first: {crashes[0][:150]})" if crashes else ""),
    ]
    report.show()
    assert report.differed == []
    assert len(records) <= on_topics <= len(records) + producer.resent
    assert alive and health[0] == 200
    assert crashes == [], "the worker logged a crash during the outage"
    # One worker process throughout: its counters are exact. Re-sent records (if any)
    # are true repeats that S6 drops.
    assert worker_counted(metrics) == expected.counted
    assert expected.duplicates <= deduplicated <= expected.duplicates + producer.resent
    assert report.crossings_expected_exact > 0, "no counter crossing: the test proves nothing"
