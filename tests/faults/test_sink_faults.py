"""The ClickHouse sink under faults, as a real `meter sink` process on a real broker and
a real chDB store: killed with SIGKILL between an insert and its offset commit (again and
again, mid-stream), and a store that cannot be written for a while. After each, the
project's reads (latest version per snapshot key, FINAL for the rest) show exactly what
was produced: no row lost, none doubled.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import httpx
import pytest

from groundwork.ports import free_port
from groundwork.settings import Settings
from tests.faults.sink_support import (
    KillCheck,
    Landed,
    TrackedProducer,
    caught_up,
    check_after_kill,
    expected_contents,
    healthy,
    insert_parts,
    open_store,
    produce_tracked,
    raw_identities,
    report_of,
    rows_written,
    running_sink,
    sink_committed,
    sink_metrics,
    sink_workload,
    stop_sink,
    store_contents,
    table_dirs,
    unwritable,
    wait_for_insert,
    workspaces_of,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

# Backlogs and rates count records; a usage.aggregates record holds one row per value
# that changed (about 16), so the workloads average about 7 rows per record.

MIN_KILLS, MAX_KILLS = 4, 7


def test_sink_killed_between_insert_and_commit_rewrites_exactly(
    meter_settings: Settings, tmp_path: Path
) -> None:
    """SIGKILL the sink mid-stream, again and again, restart it each time: after every
    kill each committed record is in the store (no commit before its insert), and the
    rows a killed sink inserted but never committed are counted (the kill landed between
    an insert and its commit). At the end the reads equal the stream exactly."""
    rng = random.Random()  # kill points differ from run to run; the report shows them
    # More records than the test produces: the stream runs until the last kill.
    records = sink_workload(seed=5, workspaces=60, rounds=96)
    backlog, live = records[:1_200], records[1_200:]
    group, port, log = "sink-faults", free_port(), tmp_path / "sink.log"
    landed: list[Landed | None] = list(produce_tracked(meter_settings, backlog))
    producer = TrackedProducer(meter_settings, live, rate_per_s=60)
    producer.start()
    db = meter_settings.clickhouse_database
    before: dict[str, set[tuple[object, ...]]] = {t: set() for t in (
        "usage_snapshots", "threshold_crossings", "alert_deliveries", "dead_letters", "plans")}
    kills: list[tuple[str, KillCheck]] = []
    with open_store(meter_settings):
        pass  # the tables exist (the sink's own migrations), so their inserts can be watched
    parts = insert_parts(meter_settings.chdb_data_path)
    started = time.monotonic()
    # Kill until at least MIN_KILLS kills and one of them between an insert and its commit.
    while len(kills) < MIN_KILLS or (
            len(kills) < MAX_KILLS and not any(c.inserted_uncommitted for _, c in kills)):
        with running_sink(meter_settings, log, port, group, batch_rows=2000,
                          batch_seconds=0.5) as proc:
            # Every other kill lands the moment an insert of this sink shows in the store
            # (a batch writes its tables one insert each, then commits), the others at a
            # random point after it.
            wait_for_insert(meter_settings.chdb_data_path, parts, proc)
            delay = 0.0 if len(kills) % 2 == 0 else rng.uniform(0.05, 1.0)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        parts = insert_parts(meter_settings.chdb_data_path)
        assert not producer.done, "the stream ended before a kill: not mid-stream"
        with open_store(meter_settings) as client:
            now = raw_identities(client, db)
        check = check_after_kill(backlog + live, landed + producer.landed, before, now,
                                 sink_committed(meter_settings, group))
        kills.append((f"at {time.monotonic() - started:.0f} s, "
                      + ("right after an insert" if delay == 0 else
                         f"{delay:.2f} s after an insert"), check))
        assert check.committed_missing == [], (
            f"{len(check.committed_missing)} committed records are not in the store, e.g. "
            f"{check.committed_missing[:3]}")
        before = now
    producer.stop()
    producer.join(120)
    assert producer.failed == []
    records = backlog + list(producer.produced)
    with running_sink(meter_settings, log, port, group, batch_rows=2000,
                      batch_seconds=0.5) as proc:
        wait_until(lambda: caught_up(meter_settings, group), "the sink to catch up",
                   timeout_s=120, poll_s=0.3, proc=proc)
        assert stop_sink(proc) == 0
    with open_store(meter_settings) as client:
        got = store_contents(client, db, workspaces_of(records))
    report = report_of("sink: SIGKILL between insert and commit, restarted", records, got,
                       expected_contents(records))
    in_window = sum(1 for _, c in kills if c.inserted_uncommitted)
    report.notes.append(f"{len(kills)} kills, {in_window} between an insert and its commit")
    report.notes += [f"kill {i}: {how}: {c.inserted_uncommitted:,} rows inserted, not committed"
                     for i, (how, c) in enumerate(kills, 1)]
    report.show()
    assert report.differed == []
    assert in_window > 0, "no kill landed between an insert and its commit"


def test_sink_waits_out_an_unwritable_store_without_committing_then_catches_up(
    meter_settings: Settings, tmp_path: Path
) -> None:
    """The store's table directories become unwritable mid-stream (as on a read-only
    remount): every insert fails, and while it does the sink stays up, retries with
    backoff and commits nothing; writable again, it catches up exactly."""
    records = sink_workload(seed=9, workspaces=40)
    backlog, live = records[: len(records) // 4], records[len(records) // 4:]
    group, port, log = "sink-faults", free_port(), tmp_path / "sink.log"
    produce_tracked(meter_settings, backlog)
    db = meter_settings.clickhouse_database
    with running_sink(meter_settings, log, port, group, batch_rows=2000,
                      batch_seconds=0.3) as proc:
        wait_until(lambda: caught_up(meter_settings, group), "the backlog", poll_s=0.3,
                   proc=proc)
        producer = TrackedProducer(meter_settings, live, rate_per_s=90)
        producer.start()
        written = rows_written(sink_metrics(port))
        wait_until(lambda: rows_written(sink_metrics(port)) > written, "live rows", proc=proc)
        dirs = table_dirs(meter_settings.chdb_data_path)
        with unwritable(dirs) as how:
            retries = sink_metrics(port).get("meter_sink_insert_retries_total", 0)
            wait_until(lambda: sink_metrics(port).get("meter_sink_insert_retries_total", 0)
                       > retries, "a failed insert", proc=proc)
            # From the first failed insert on, nothing may be committed until the store
            # takes the batch: watch the commits while the stream goes on.
            held = sink_committed(meter_settings, group)
            sent_at_failure = producer.sent
            stored_at_failure = rows_written(sink_metrics(port))
            checks = 0
            while (sink_metrics(port).get("meter_sink_insert_retries_total", 0) < retries + 5
                   or producer.sent < sent_at_failure + 300):
                assert proc.poll() is None, "the sink exited while the store was unwritable"
                assert healthy(port)
                assert sink_committed(meter_settings, group) == held, "committed while failing"
                checks += 1
                time.sleep(0.3)
                assert not producer.done, "the stream ended during the outage"
            sent_during = producer.sent - sent_at_failure
            metrics = sink_metrics(port)
            assert metrics["meter_sink_store_ready"] == 0
            assert rows_written(metrics) == stored_at_failure
            outage_retries = int(metrics["meter_sink_insert_retries_total"] - retries)
        producer.join(120)
        assert producer.failed == []
        wait_until(lambda: caught_up(meter_settings, group), "the sink to catch up",
                   timeout_s=120, poll_s=0.3, proc=proc)
        assert sink_metrics(port)["meter_sink_store_ready"] == 1
        assert stop_sink(proc) == 0
    with open_store(meter_settings) as client:
        got = store_contents(client, db, workspaces_of(records))
    report = report_of("sink: store unwritable for a while, mid-stream", records, got,
                       expected_contents(records))
    report.notes.append(f"fault: {how} ({len(dirs)} directories)")
    report.notes.append(
        f"during the outage: {outage_retries} failed inserts retried, "
        f"{sent_during:,} records produced, committed offsets "
        f"unchanged in {checks} checks, the sink alive and healthy")
    report.show()
    assert report.differed == []


def test_a_sink_started_while_another_holds_the_store_waits_then_takes_over_exactly(
    meter_settings: Settings, tmp_path: Path
) -> None:
    """A deploy starts the new sink before the old one has let go of the chDB path (one
    process per path): the new one retries without joining the group, so it consumes and
    commits nothing, until the old one stops; then it takes over the stream exactly."""
    records = sink_workload(seed=13, workspaces=30)
    backlog, live = records[:450], records[450:]
    group, log = "sink-faults", tmp_path / "sink.log"
    old_port, new_port = free_port(), free_port()
    produce_tracked(meter_settings, backlog)
    db = meter_settings.clickhouse_database
    with running_sink(meter_settings, log, old_port, group, batch_seconds=0.3) as old:
        wait_until(lambda: caught_up(meter_settings, group), "the backlog", poll_s=0.3,
                   proc=old)
        producer = TrackedProducer(meter_settings, live, rate_per_s=90)
        producer.start()
        with running_sink(meter_settings, log, new_port, group, batch_seconds=0.3) as new:
            wait_until(lambda: sink_metrics(new_port).get("meter_sink_insert_retries_total", 0)
                       >= 3, "the new sink to retry the held store", proc=new)
            # Meanwhile the old sink still owns every partition and keeps committing.
            progress = sum(sink_committed(meter_settings, group).values())
            wait_until(lambda: sum(sink_committed(meter_settings, group).values()) > progress,
                       "the old sink to commit more", poll_s=0.2, proc=old)
            metrics = sink_metrics(new_port)
            ready = httpx.get(f"http://127.0.0.1:{new_port}/readyz", timeout=10).status_code
            held_retries = int(metrics["meter_sink_insert_retries_total"])
            assert new.poll() is None and healthy(new_port)
            assert ready == 503
            assert metrics["meter_sink_store_ready"] == 0
            assert rows_written(metrics) == 0 and metrics["meter_sink_batches_total"] == 0
            assert not producer.done, "the stream ended while the store was held"
            assert stop_sink(old) == 0  # the old sink writes its batch, commits, lets go
            producer.join(120)
            assert producer.failed == []
            wait_until(lambda: caught_up(meter_settings, group), "the new sink to catch up",
                       timeout_s=120, poll_s=0.3, proc=new)
            new_rows = rows_written(sink_metrics(new_port))
            assert stop_sink(new) == 0
    with open_store(meter_settings) as client:
        got = store_contents(client, db, workspaces_of(records))
    report = report_of("sink: store held by another process, then taken over", records, got,
                       expected_contents(records))
    report.notes.append(
        f"while the old sink held the store the new one retried {held_retries} times, "
        "/readyz 503, no row written, no batch committed; the old one kept committing")
    report.notes.append(f"after the old sink stopped the new one wrote {new_rows:,} rows "
                        "and caught up")
    report.show()
    assert report.differed == []
    assert new_rows > 0
