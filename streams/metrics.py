"""The worker's counters and gauges, exposed through prometheus_client.

The worker bumps plain attributes (cheap on the hot path); ``WorkerMetrics`` is also a
prometheus_client collector that turns them into metric families at scrape time, in a
registry of its own (not the global one), so several services in one process do not
collide.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.heap import FullCollections


@dataclass(slots=True)
class BatchCounts:
    """What one batch did; added to the worker's counters only once it commits (an
    aborted batch is read again and would count twice)."""

    processed: int = 0
    deduplicated: int = 0
    dead_lettered: int = 0
    late: int = 0
    crossings: int = 0
    aggregate_records: int = 0
    fence_violations: int = 0


@dataclass
class WorkerMetrics:
    processed: int = 0  # events applied to the metering core (duplicates and late included)
    deduplicated: int = 0  # S6 repeats dropped by the core
    dead_lettered: int = 0  # sent to usage.deadletter (invalid or cycle_closed)
    late: int = 0  # S4 cycle_closed
    crossings: int = 0  # threshold crossings emitted
    aggregate_records: int = 0  # usage.aggregates records emitted (one per changed cycle)
    batches: int = 0  # batches committed, each one Kafka transaction
    transactions_aborted: int = 0  # batches aborted and read again
    fence_violations: int = 0  # redelivered offsets at or below a workspace's fence
    alignment_timeouts: int = 0  # a partition went on without a topic after waiting (S1)
    restored_records: int = 0  # changelog records read into the local store
    partitions_wiped: int = 0  # local partitions dropped and restored whole
    workspaces_cached: int = 0  # gauge: workspaces held decoded in memory
    store_keys: int = 0  # gauge: RocksDB's estimate of the local store's keys
    queued: int = 0  # gauge: records waiting for event-time alignment
    # gauge: the input partitions this worker owns and serves (assigned and restored)
    owned_partitions: list[int] = field(default_factory=list)
    # "topic:partition" -> records not yet handed to the worker (last stable offset -
    # position), and
    # the gap between high watermark and last stable offset (an open transaction)
    lag: dict[str, int] = field(default_factory=dict)
    lso_gap: dict[str, int] = field(default_factory=dict)
    gc: FullCollections = field(default_factory=FullCollections)
    registry: CollectorRegistry = field(init=False, repr=False, compare=False)

    _HELP: ClassVar[dict[str, str]] = {
        "processed": "Events applied to the metering core",
        "deduplicated": "Duplicate events dropped (S6)",
        "dead_lettered": "Events sent to usage.deadletter",
        "late": "Events for a closed cycle (S4)",
        "crossings": "Threshold crossings emitted",
        "aggregate_records": "usage.aggregates records emitted",
        "batches": "Batches committed (one Kafka transaction each)",
        "transactions_aborted": "Batches whose transaction aborted (read again)",
        "fence_violations": "Offsets at or below a workspace's fence (store ahead of Kafka)",
        "alignment_timeouts": "Partitions that went on without a topic after waiting (S1)",
        "restored_records": "Changelog records restored into the local store",
        "partitions_wiped": "Local partitions wiped and restored whole",
    }
    _GAUGES: ClassVar[dict[str, str]] = {
        "workspaces_cached": "Workspaces held decoded in memory",
        "store_keys": "Keys in the local store (RocksDB estimate)",
        "queued": "Records waiting for event-time alignment",
    }
    _LABELLED: ClassVar[dict[str, str]] = {
        "lag": "consumer_lag Records behind the last stable offset, per input partition",
        "lso_gap": "lso_gap High watermark minus last stable offset (open transactions)",
    }

    def __post_init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Families(self))

    def add(self, counts: BatchCounts) -> None:
        """A committed batch's counts."""
        for name in BatchCounts.__slots__:
            setattr(self, name, getattr(self, name) + getattr(counts, name))

    def record_stats(self, payload: str, topics: set[str]) -> dict[tuple[str, int], int]:
        """Lag and open-transaction gaps from librdkafka's statistics JSON; returns the
        last stable offset of each partition (what read_committed can read up to)."""
        lag: dict[str, int] = {}
        gap: dict[str, int] = {}
        stable: dict[tuple[str, int], int] = {}
        for topic, entry in json.loads(payload).get("topics", {}).items():
            if topic not in topics:
                continue
            for partition, values in entry.get("partitions", {}).items():
                if int(partition) < 0 or values.get("fetch_state") != "active":
                    continue
                name = f"{topic}:{partition}"
                hi, ls = values.get("hi_offset", -1), values.get("ls_offset", -1)
                # offsets committed in transactions are unknown to librdkafka's own lag:
                # count from what the worker was handed (or fetched, before the first)
                position = values.get("app_offset", -1)
                if position < 0:
                    position = values.get("next_offset", -1)
                if ls >= 0 and position >= 0:
                    lag[name] = max(0, int(ls) - int(position))
                if hi >= 0 and ls >= 0:
                    gap[name] = int(hi) - int(ls)
                if ls >= 0:
                    stable[(topic, int(partition))] = int(ls)
        self.lag, self.lso_gap = lag, gap
        return stable

    def collect(self) -> Iterator[Metric]:
        """The metric families of a scrape (prometheus_client's collector protocol)."""
        prefix = "meter_worker"
        for name, help_text in self._HELP.items():
            yield CounterMetricFamily(f"{prefix}_{name}_total", help_text,
                                      value=getattr(self, name))
        for name, help_text in self._GAUGES.items():
            yield GaugeMetricFamily(f"{prefix}_{name}", help_text, value=getattr(self, name))
        yield CounterMetricFamily(f"{prefix}_gc_full_collections_total",
                                  "Full (generation 2) garbage collections", value=self.gc.count)
        yield CounterMetricFamily(f"{prefix}_gc_full_pause_seconds_total",
                                  "Time stopped in them", value=self.gc.seconds)
        yield GaugeMetricFamily(f"{prefix}_gc_full_pause_max_seconds", "The longest of them",
                                value=self.gc.max_seconds)
        owned = GaugeMetricFamily(f"{prefix}_partition_owned",
                                  "1 for each input partition this worker owns and serves",
                                  labels=["partition"])
        for p in self.owned_partitions:
            owned.add_metric([str(p)], 1)
        yield owned
        for attr, text in self._LABELLED.items():
            metric, _, help_text = text.partition(" ")
            family = GaugeMetricFamily(f"{prefix}_{metric}", help_text,
                                       labels=["topic", "partition"])
            for tp, value in sorted(getattr(self, attr).items()):
                topic, _, partition = tp.rpartition(":")
                family.add_metric([topic, partition], value)
            yield family

    def render(self) -> str:
        """The Prometheus text exposition of this worker's registry."""
        return generate_latest(self.registry).decode()


class _Families(Collector):
    """Registers a ``WorkerMetrics`` (a dataclass, so unhashable) with its registry."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.collect()
