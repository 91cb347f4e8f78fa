"""Input topics written by transactional producers: commit markers take offsets no consumer
ever sees, and an aborted transaction's records are in the log but not committed. A
consumer that does not use read_committed sees the aborted records; the worker
(read_committed) never counts them, counts every committed event once and never stalls
on a marker."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from groundwork.kafka import end_offsets
from groundwork.partitioning import partition_for
from groundwork.ports import free_port
from groundwork.settings import Settings
from schemas.codec import decode_record, encode_event, topic_of
from schemas.jsonl import parse_line
from streams.worker import INPUT_TOPICS
from tests.faults.support import (
    Record,
    compare_with_replay,
    iter_chunks,
    produce_all,
    scrape,
    split_plans,
    valid_pairs,
    worker_with_plans,
    workload_lines,
)
from tests.streams.harness import wait_caught_up

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
ABORTED_PREFIX = "aborted-"


def _aborted_twins(lines: list[bytes]) -> list[Record]:
    """Each usage line again under a new event id: counted, they would change every total."""
    out = []
    for line in lines:
        event = parse_line(line, now_ms=None)
        twin = event._replace(event_id=ABORTED_PREFIX + event.event_id)
        out.append((topic_of(twin), twin.workspace_id.encode(), encode_event(twin)))
    return out


def _produce_in_transactions(settings: Settings, chunks: list[tuple[list[Record], bool]]
                             ) -> tuple[int, int]:
    """(committed, aborted) transactions, in order; the bool says commit."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap,
                         "partitioner": "murmur2_random", "acks": "all",
                         "transactional.id": f"{settings.topic_prefix}inputs"})
    producer.init_transactions(30)
    done = {True: 0, False: 0}
    for records, commit in chunks:
        producer.begin_transaction()
        for topic, key, value in records:
            producer.produce(settings.topic(topic), key=key, value=value)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.flush(30)  # the records are in the log before the abort marker
            producer.abort_transaction(30)
        done[commit] += 1
    return done[True], done[False]


def _aborted_seen_uncommitted(settings: Settings) -> int:
    """Aborted records a read_uncommitted consumer of the input topics reads."""
    ends = end_offsets(settings, INPUT_TOPICS)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": "read-uncommitted-probe", "enable.auto.commit": False,
                         "isolation.level": "read_uncommitted", "enable.partition.eof": True})
    consumer.assign([TopicPartition(t, p, 0) for (t, p), end in ends.items() if end > 0])
    pending = {tp for tp, end in ends.items() if end > 0}
    seen = 0
    try:
        while pending:
            for msg in consumer.consume(1000, 5.0) or []:
                if msg.error() is not None:
                    pending.discard((msg.topic(), msg.partition()))
                    continue
                value = msg.value()
                assert value is not None, "every record produced to the input topics has a value"
                _, record = decode_record(value)
                seen += str(record.get("event_id", "")).startswith(ABORTED_PREFIX)
    finally:
        consumer.close()
    return seen


def test_aborted_input_records_are_never_counted_and_markers_never_stall(
    meter_settings: Settings, tmp_path: Path
) -> None:
    lines = workload_lines(seed=31, events=3_000)
    pairs = valid_pairs(lines)
    records = [r for _, r in pairs]
    plans, usage = split_plans(records)
    # Transactions for most of the usage; a plain tail after them on every partition they
    # touched, so each partition ends on a record (committed offsets can reach the end:
    # a marker is never delivered, hence never committed past).
    partitions = meter_settings.kafka_partitions
    head, tail = usage[:-400], usage[-400:]
    tail_covers = {(t, partition_for(k, partitions)) for t, k, _ in tail}
    in_tx = [r for r in head if (r[0], partition_for(r[1], partitions)) in tail_covers]
    plain = [r for r in head if (r[0], partition_for(r[1], partitions)) not in tail_covers]
    assert len(in_tx) > 2_000, "too few events in transactions: the test proves little"
    in_tx_set = set(in_tx)
    usage_lines = [line for line, r in pairs if r in in_tx_set]
    twins = _aborted_twins(usage_lines[:600])
    chunks: list[tuple[list[Record], bool]] = [(list(c), True) for c in iter_chunks(in_tx, 40)]
    for i, aborted_chunk in enumerate(iter_chunks(twins, 40)):  # an aborted one after every 3rd
        chunks.insert(4 * i + 3, (list(aborted_chunk), False))

    port = free_port()
    with worker_with_plans(meter_settings, plans, tmp_path / "worker.log", web_port=port) as w:
        committed, aborted = _produce_in_transactions(meter_settings, chunks)
        produce_all(meter_settings, plain + tail)
        wait_caught_up(meter_settings, proc=w, timeout_s=240)
        metrics = scrape(port)

    report = compare_with_replay(meter_settings, "input transactions: markers and aborted records",
                                 lines)
    per_partition: dict[tuple[str, int], int] = defaultdict(int)
    for t, k, _ in in_tx:
        per_partition[(t, partition_for(k, partitions))] += 1
    seen_uncommitted = _aborted_seen_uncommitted(meter_settings)
    report.notes.append(
        f"{committed} committed and {aborted} aborted transactions over "
        f"{len(per_partition)} topic partitions; {len(twins):,} aborted records, "
        f"{seen_uncommitted:,} of them read by a read_uncommitted consumer; the worker "
        f"applied {int(metrics.get('meter_worker_processed_total', 0)):,} events")
    report.show()
    assert report.differed == []
    assert seen_uncommitted == len(twins), "the aborted records are not in the log"
    assert report.counted_expected > 0
