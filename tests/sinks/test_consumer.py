"""The sink on a real broker: write, then commit; a crash before the commit rewrites nothing wrong;
a store that is unavailable at first is waited for, with nothing dropped or committed early."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from groundwork.settings import Settings
from schemas.aggregates import METRICS_OF, entries_of
from schemas.codec import encode_record, key_of
from schemas.registry import default_registry
from sinks.consumer import SESSION_TIMEOUT_MS, SinkConsumer
from sinks.history import HistoryReader
from sinks.shape import parse_time
from sinks.store import StoreHandle
from sinks.writer import Backoff, BatchWriter
from tests.schemas.test_evolution import write_with
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka

APR, MAY = parse_time("2025-04-01T00:00:00Z"), parse_time("2025-05-01T00:00:00Z")


def aggregate(ws: str, version: int, ai_tokens: int, commands: int = 0) -> dict[str, Any]:
    """A version 2 record of the cycle's totals (the other totals 0)."""
    return {"workspace_id": ws, "cycle_start": APR, "cycle_ends_at": MAY, "plan": None,
            "entries": entries_of([("totals", "", "ai_tokens", ai_tokens),
                                   ("totals", "", "commands", commands)]),
            "version": version, "emitted_at": APR}


ROWS_PER_RECORD = len(METRICS_OF["totals"])  # a totals entry carries every total


def produce(settings: Settings, records: list[tuple[str, dict[str, Any]]]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap,
                         "partitioner": "murmur2_random"})
    for topic, record in records:
        producer.produce(settings.topic(topic), key=key_of(record["workspace_id"]),
                         value=encode_record(topic, record))
    assert producer.flush(30) == 0


def workload() -> list[tuple[str, dict[str, Any]]]:
    """Per workspace, ai_tokens growing over 10 versions (the last one wins) and commands."""
    out: list[tuple[str, dict[str, Any]]] = []
    for ws in ("w1", "w2", "w3"):
        for version in range(1, 11):
            out.append(("usage.aggregates", aggregate(ws, version, version * 100)))
        out.append(("usage.aggregates", aggregate(ws, 11, 1000, commands=7)))
    out.append(("quota.thresholds", {
        "alert_id": "w1/2025-04-01T00:00:00Z/ai_tokens/80", "workspace_id": "w1",
        "quota": "ai_tokens", "threshold": 80, "arm": 1, "highest_in_event": True,
        "current": 800, "limit": 1000, "cycle_start": APR, "cycle_ends_at": MAY,
        "crossed_at": APR + 1, "event_id": "e8", "enforcement": "allow"}))
    return out


EXPECTED = {ws: (1000, 7) for ws in ("w1", "w2", "w3")}


def numbers(client: Client) -> dict[str, tuple[int, int]]:
    reader = HistoryReader(client, "meter")
    out = {}
    for ws in EXPECTED:
        cycles = reader.history(ws)
        if cycles:
            out[ws] = (cycles[-1].totals["ai_tokens"], cycles[-1].totals["commands"])
    return out


def aggregates_partitions(consumer: Consumer, settings: Settings) -> list[TopicPartition]:
    topic = settings.topic("usage.aggregates")
    return [TopicPartition(topic, p)
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions]


def committed(settings: Settings, group: str) -> int:
    """The group's committed offsets on usage.aggregates, summed over its partitions."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group})
    try:
        parts = aggregates_partitions(consumer, settings)
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


def aggregates_end(settings: Settings) -> int:
    """usage.aggregates' high watermarks, summed over its partitions."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "ends"})
    try:
        return sum(consumer.get_watermark_offsets(tp, timeout=10)[1]
                   for tp in aggregates_partitions(consumer, settings))
    finally:
        consumer.close()


def snapshot_rows(client: Client) -> Sequence[Sequence[Any]]:
    return client.query(
        "SELECT workspace_id, toUnixTimestamp64Milli(cycle_start), dimension, key, metric, "
        "value, version FROM meter.usage_snapshots ORDER BY version, dimension, metric"
    ).result_rows


def drain(sink: SinkConsumer, expected_records: int) -> None:
    """Poll until ``expected_records`` were read (the writer holds or wrote them)."""
    seen = 0
    end = time.monotonic() + 60
    while seen < expected_records:
        seen += sink.poll(timeout_s=0.5)
        if time.monotonic() > end:
            raise AssertionError(f"read {seen} of {expected_records} records")


def sink_and_commit(sink: SinkConsumer, records: int) -> None:
    """Read ``records`` records, write them to the store, commit their offsets; the consumer
    is closed however that ends."""
    try:
        drain(sink, records)
        sink.commit(sink.write())
    finally:
        sink.close()


@pytest.fixture
def sink_store(meter_settings: Settings) -> Iterator[StoreHandle]:
    handle = StoreHandle(meter_settings)
    yield handle
    handle.close()


def test_the_sink_writes_its_topics_then_commits(meter_settings: Settings,
                                                 sink_store: StoreHandle) -> None:
    records = workload()
    produce(meter_settings, records)
    group = f"sink-{uuid.uuid4().hex[:8]}"
    sink = SinkConsumer(meter_settings, BatchWriter(sink_store, max_rows=7), group_id=group)
    sink_and_commit(sink, len(records))
    client = sink_store.client()
    assert numbers(client) == EXPECTED
    assert client.query("SELECT count() FROM meter.crossings").result_rows == [(1,)]
    assert committed(meter_settings, group) == len(records) - 1  # all but the crossing's topic
    assert sink.metrics.rows_written["usage_snapshots"] == (len(records) - 1) * ROWS_PER_RECORD


def test_records_of_both_schema_versions_land_as_their_rows(meter_settings: Settings,
                                                            sink_store: StoreHandle) -> None:
    """Version 1 (one value per record, still on the topic) and version 2 (the values of
    a cycle that changed in one batch; none at all is possible) side by side."""
    v1 = default_registry().history("usage.aggregates")[0]
    old = {"workspace_id": "w1", "cycle_start": APR, "cycle_ends_at": MAY, "plan": None,
           "dimension": "totals", "key": "", "metric": "ai_tokens", "value": 500,
           "version": 1, "emitted_at": APR}
    new = {**aggregate("w1", 2, 0), "entries": [
        {"dimension": "member", "key": "ann", "values": [300, 12, 0, 1]}]}
    empty = {**aggregate("w1", 3, 0), "entries": []}
    producer = Producer({"bootstrap.servers": meter_settings.kafka_bootstrap})
    for value in (write_with(v1.load(), v1.schema_id, old),
                  encode_record("usage.aggregates", new), encode_record("usage.aggregates", empty)):
        producer.produce(meter_settings.topic("usage.aggregates"), key=key_of("w1"), value=value)
    assert producer.flush(30) == 0
    group = f"sink-{uuid.uuid4().hex[:8]}"
    sink = SinkConsumer(meter_settings, BatchWriter(sink_store), group_id=group)
    sink_and_commit(sink, 3)
    assert snapshot_rows(sink_store.client()) == [
        ("w1", APR, "totals", "", "ai_tokens", 500, 1),
        ("w1", APR, "member", "ann", "ai_tokens", 300, 2),
        ("w1", APR, "member", "ann", "chat_tokens", 12, 2),
        ("w1", APR, "member", "ann", "commands", 1, 2),
        ("w1", APR, "member", "ann", "schedule_runs", 0, 2),
    ]
    assert committed(meter_settings, group) == 3  # the empty record's offset too


def test_aborted_records_are_never_stored_and_commits_reach_past_transaction_markers(
        meter_settings: Settings, sink_store: StoreHandle) -> None:
    """The worker writes in transactions: the sink stores committed records only, and at
    a partition's end commits that end, past the markers (offsets never delivered)."""
    producer = Producer({"bootstrap.servers": meter_settings.kafka_bootstrap,
                         "transactional.id": f"sink-test-{uuid.uuid4().hex[:8]}"})
    producer.init_transactions(30)
    for record, outcome in ((aggregate("w1", 1, 100), producer.commit_transaction),
                            (aggregate("w1", 2, 999), producer.abort_transaction)):
        producer.begin_transaction()
        producer.produce(meter_settings.topic("usage.aggregates"), key=key_of("w1"),
                         value=encode_record("usage.aggregates", record))
        assert producer.flush(30) == 0
        outcome(30)
    end = aggregates_end(meter_settings)
    assert end == 4  # the committed record, its marker, the aborted record, its marker
    group = f"sink-{uuid.uuid4().hex[:8]}"
    sink = SinkConsumer(meter_settings, BatchWriter(sink_store, max_delay_s=0.1),
                        group_id=group, topics=("usage.aggregates",))
    try:
        deadline = time.monotonic() + 60
        while committed(meter_settings, group) < end:
            assert time.monotonic() < deadline, "the sink never committed the partition's end"
            sink.step()
    finally:
        sink.close()
    assert [r for r in snapshot_rows(sink_store.client()) if r[4] == "ai_tokens"] == [
        ("w1", APR, "totals", "", "ai_tokens", 100, 1)]


def test_a_crash_between_insert_and_commit_rewrites_without_changing_a_number(
        meter_settings: Settings, sink_store: StoreHandle) -> None:
    records = workload()
    produce(meter_settings, records)
    group = f"sink-{uuid.uuid4().hex[:8]}"
    first = SinkConsumer(meter_settings, BatchWriter(sink_store), group_id=group)
    try:
        drain(first, len(records))
        first.write()  # inserted ... and the process dies before the commit
    finally:
        first.close()
    assert committed(meter_settings, group) == 0
    # the restart re-consumes from the committed offset, in differently composed batches
    second = SinkConsumer(meter_settings, BatchWriter(sink_store, max_rows=4), group_id=group)
    sink_and_commit(second, len(records))
    client = sink_store.client()
    assert second.metrics.rows_written["usage_snapshots"] == (  # all rewritten
        (len(records) - 1) * ROWS_PER_RECORD)
    raw, keys = client.query("SELECT count(), uniqExact(workspace_id, metric) "
                             "FROM meter.usage_snapshots").result_rows[0]
    assert raw > keys  # the rows are in the store more than once (unmerged) ...
    assert numbers(client) == EXPECTED  # ... and no number changed
    assert client.query("SELECT count() FROM meter.crossings").result_rows == [(1,)]


@contextlib.contextmanager
def store_held_elsewhere(path: Path) -> Iterator[None]:
    """Another process holds the chDB store at ``path`` (chDB locks its data path) until
    the block ends, when it lets go."""
    path.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import clickhouse_connect, sys\n"
         f"c = clickhouse_connect.get_client(dsn='chdb://{Path(path).resolve()}')\n"
         "print('held', flush=True)\nsys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)


def quickly_retrying_writer(store: StoreHandle, max_backoff_s: float) -> BatchWriter:
    """A writer that flushes within 0.1 s and retries a refused insert every 0.05 s at
    first, ``max_backoff_s`` at the most."""
    return BatchWriter(store, max_rows=1000, max_delay_s=0.1,
                       backoff=Backoff(initial_s=0.05, max_s=max_backoff_s))


def test_the_sink_waits_for_a_locked_store_and_then_resumes(
        meter_settings: Settings, sink_store: StoreHandle) -> None:
    with store_held_elsewhere(meter_settings.chdb_data_path):
        records = workload()
        produce(meter_settings, records)
        group = f"sink-{uuid.uuid4().hex[:8]}"
        writer = quickly_retrying_writer(sink_store, max_backoff_s=0.2)
        sink = SinkConsumer(meter_settings, writer, group_id=group)
        thread = threading.Thread(target=sink.run, daemon=True)
        thread.start()
        wait_until(lambda: writer.metrics.insert_retries >= 3, "the sink to retry")
        assert committed(meter_settings, group) == 0
        assert writer.metrics.rows_written == {}
    try:
        wait_until(lambda: committed(meter_settings, group) == len(records) - 1, "the commit")
    finally:
        sink.stop.set()
        thread.join(timeout=60)
    assert numbers(sink_store.client()) == EXPECTED


def group_members(settings: Settings, group: str) -> int:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    return len(admin.describe_consumer_groups([group])[group].result(timeout=10).members)


@pytest.mark.slow
def test_a_store_outage_longer_than_the_poll_interval_skips_the_refused_commit_and_rereads(
        meter_settings: Settings, sink_store: StoreHandle) -> None:
    """The writer retries past max.poll.interval.ms, so the consumer leaves its group and
    the commit of the batch, once written, is refused: the sink goes on, rejoins, re-reads
    the batch from the last commit and commits it (it used to die on the refused commit)."""
    failures: list[BaseException] = []
    with store_held_elsewhere(meter_settings.chdb_data_path):
        records = workload()
        produce(meter_settings, records)
        group = f"sink-{uuid.uuid4().hex[:8]}"
        writer = quickly_retrying_writer(sink_store, max_backoff_s=0.5)
        sink = SinkConsumer(meter_settings, writer, group_id=group,
                            max_poll_interval_ms=SESSION_TIMEOUT_MS)

        def run() -> None:
            try:
                sink.run()
            except BaseException as exc:  # what the thread died of, for the assertion
                failures.append(exc)
                raise

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        wait_until(lambda: writer.metrics.insert_retries >= 1, "the sink to retry")
        wait_until(lambda: group_members(meter_settings, group) == 0,
                   "the consumer to leave its group while the batch waits", timeout_s=90)
        assert committed(meter_settings, group) == 0
    try:
        wait_until(lambda: committed(meter_settings, group) == len(records) - 1 or not
                   thread.is_alive(), "the commit after the outage", timeout_s=90)
        assert failures == [] and thread.is_alive()
        assert committed(meter_settings, group) == len(records) - 1
        assert writer.metrics.commits_refused >= 1
    finally:
        sink.stop.set()
        thread.join(timeout=60)
    assert numbers(sink_store.client()) == EXPECTED
    assert sink_store.client().query(
        "SELECT count() FROM meter.crossings").result_rows == [(1,)]
