"""The worker's counters, rendered in the Prometheus text format."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar


@dataclass
class WorkerMetrics:
    processed: int = 0  # events applied to the core (duplicates and late included)
    deduplicated: int = 0  # S6 repeats dropped by the core
    redelivered: int = 0  # at-least-once redeliveries skipped by the offset fence
    dead_lettered: int = 0  # sent to usage.deadletter (invalid or cycle_closed)
    late: int = 0  # S4 cycle_closed
    crossings: int = 0  # threshold crossings emitted
    aggregate_rows: int = 0  # usage.aggregates rows emitted
    batches: int = 0
    held_back: int = 0  # events of revoked partitions or after a hole, left unacked (redelivered)
    seeks: int = 0  # partitions sought back to their first missing offset
    holes: int = 0  # offset holes seen in non-compacted input partitions (asked the broker)
    workspaces_cached: int = 0  # gauge: workspaces held decoded in memory
    ids_remembered: int = 0  # gauge: S6 event ids those workspaces hold
    # "topic:partition" -> records behind the end (high watermark - position), refreshed
    # every few seconds by the app
    lag: dict[str, int] = field(default_factory=dict)

    _HELP: ClassVar[dict[str, str]] = {
        "processed": "Events applied to the metering core",
        "deduplicated": "Duplicate events dropped (S6)",
        "redelivered": "Redelivered offsets skipped by the offset fence",
        "dead_lettered": "Events sent to usage.deadletter",
        "late": "Events for a closed cycle (S4)",
        "crossings": "Threshold crossings emitted",
        "aggregate_rows": "usage.aggregates rows emitted",
        "batches": "Batches processed",
        "held_back": "Events of revoked partitions or after an offset hole, left unacked",
        "seeks": "Partitions sought back to their first missing offset",
        "holes": "Offset holes in an input partition (transaction markers or lost deliveries)",
    }
    _GAUGES: ClassVar[dict[str, str]] = {
        "workspaces_cached": "Workspaces held decoded in memory",
        "ids_remembered": "Event ids held for S6 duplicate detection",
    }

    def render(self, prefix: str = "meter_worker") -> str:
        lines = []
        for f in fields(self):
            if f.name not in self._HELP:
                continue
            name = f"{prefix}_{f.name}_total"
            lines += [f"# HELP {name} {self._HELP[f.name]}", f"# TYPE {name} counter",
                      f"{name} {getattr(self, f.name)}"]
        for field_name, help_text in self._GAUGES.items():
            name = f"{prefix}_{field_name}"
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge",
                      f"{name} {getattr(self, field_name)}"]
        lines += [f"# HELP {prefix}_consumer_lag Records behind the end, per topic partition",
                  f"# TYPE {prefix}_consumer_lag gauge"]
        for tp, lag in sorted(self.lag.items()):
            topic, _, partition = tp.rpartition(":")
            lines.append(f'{prefix}_consumer_lag{{topic="{topic}",partition="{partition}"}} {lag}')
        return "\n".join(lines) + "\n"
