"""Offset holes that are real: a transactional producer's commit markers take offsets no
consumer ever sees. The worker's continuity guard (streams/continuity.py) sees each hole,
finds no record in it (Faust's fetch gaps, else the broker) and applies the event after
it: every event counted once, nothing stuck, nothing held back."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Producer

from meter.partitioning import partition_for
from meter.settings import Settings
from tests.faults.support import (
    compare,
    duplicates_in,
    expected_of,
    fixed_limit_keys,
    iter_chunks,
    produce_all,
    scrape,
    split_plans,
    stream_output,
    valid_pairs,
    wait_plans_applied,
    workload_lines,
)
from tests.streams.harness import free_port, running_worker, wait_caught_up

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _produce_in_transactions(settings: Settings, records: list[tuple[str, bytes, bytes]],
                             per_transaction: int) -> int:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap,
                         "partitioner": "murmur2_random", "acks": "all",
                         "transactional.id": f"{settings.topic_prefix}holes"})
    producer.init_transactions(30)
    transactions = 0
    for chunk in iter_chunks(records, per_transaction):
        producer.begin_transaction()
        for topic, key, value in chunk:
            producer.produce(settings.topic(topic), key=key, value=value)
        producer.commit_transaction(30)
        transactions += 1
    return transactions


def test_transaction_markers_are_real_holes_and_every_event_counts_once(
    meter_settings: Settings, tmp_path: Path
) -> None:
    lines = workload_lines(seed=31, events=3_000)
    pairs = valid_pairs(lines)
    records = [r for _, r in pairs]
    plans, usage = split_plans(records)
    # Transactions for most of the usage; a plain tail after them on every partition
    # they touched, so each partition ends on a record (committed offsets can reach
    # the end: a marker is never delivered, hence never committed past).
    partitions = meter_settings.kafka_partitions
    head, tail = usage[:-400], usage[-400:]
    tail_covers = {(t, partition_for(k, partitions)) for t, k, _ in tail}
    in_tx = [r for r in head if (r[0], partition_for(r[1], partitions)) in tail_covers]
    plain = [r for r in head if (r[0], partition_for(r[1], partitions)) not in tail_covers]
    assert len(in_tx) > 2_000, "too few events in transactions: the test proves little"

    produce_all(meter_settings, plans)
    port = free_port()
    with running_worker(meter_settings, tmp_path / "worker.log", web_port=port) as w:
        wait_plans_applied(meter_settings, w)
        transactions = _produce_in_transactions(meter_settings, in_tx, per_transaction=40)
        produce_all(meter_settings, plain + tail)
        wait_caught_up(meter_settings, proc=w, timeout_s=240)
        metrics = scrape(port)

    report = compare("transaction markers (real offset holes)", expected_of(lines),
                     stream_output(meter_settings), fixed_limit_keys(lines),
                     events_in=len(records), duplicates_injected=duplicates_in(records))
    per_partition: dict[tuple[str, int], int] = defaultdict(int)
    for t, k, _ in in_tx:
        per_partition[(t, partition_for(k, partitions))] += 1
    report.notes.append(
        f"{transactions} transactions over {len(per_partition)} topic partitions; worker "
        f"saw {int(metrics.get('meter_worker_holes_total', 0)):,} holes, held back "
        f"{int(metrics.get('meter_worker_held_back_total', 0)):,} events, sought "
        f"{int(metrics.get('meter_worker_seeks_total', 0)):,} times, counted "
        f"{int(metrics.get('meter_worker_processed_total', 0)):,}")
    report.show()
    assert report.differed == []
    # The path was taken: markers made holes, each one asked about and found real.
    assert metrics["meter_worker_holes_total"] > 0
    assert metrics["meter_worker_held_back_total"] == 0
    assert metrics["meter_worker_seeks_total"] == 0
