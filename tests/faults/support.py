"""Shared pieces of the fault-injection suite: workloads, the expected numbers from
`meter replay`'s code path, what the stream produced, and the result table each test prints.

Nothing here mocks Kafka or ClickHouse: the tests run real brokers and real `meter`
subprocesses (see ``tests/streams/harness.py``) and only read what they wrote.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Producer

from groundwork.settings import Settings
from meter.workload import Drive, Workload, generate_lines
from schemas.codec import encode_event, topic_of
from schemas.events import AlertSettingsEvent, PlanEvent, TopupEvent
from schemas.jsonl import parse_line
from schemas.quotas import CYCLE_COUNTER_NAMES
from schemas.validation import InvalidEvent
from streams.core.replay import Replay
from tests.streams.harness import (
    committed,
    differences,
    flatten_usage,
    latest_aggregates,
    read_topic,
    running_worker,
    satisfied_thresholds,
)
from tests.waiting import wait_until

COUNTER_QUOTAS = CYCLE_COUNTER_NAMES
DRIVES = (Drive("w0001", "ai_tokens"), Drive("w0002", "schedule_runs"),
          Drive("w0003", "api_requests_per_cycle"), Drive("w0004", "storage_bytes"))


def workload_lines(seed: int, events: int, workspaces: int = 30,
                   duplicate_rate: float = 0.02, invalid_rate: float = 0.002) -> list[bytes]:
    """``meter/workload.py`` lines (7 days: one cycle or two adjacent ones per workspace,
    so S4 closes nothing), driven across thresholds of a few quotas."""
    wl = Workload(seed=seed, events=events, workspaces=workspaces,
                  duplicate_rate=duplicate_rate, invalid_rate=invalid_rate, drive=DRIVES)
    return [line.rstrip(b"\n") for line in generate_lines(wl)]


@dataclass
class Expected:
    """What `meter replay` makes of a log."""

    lines: int
    counted: int
    duplicates: int
    rejected: int
    usage: dict[str, Any]
    crossings: list[dict[str, Any]]

    @property
    def flat(self) -> dict[tuple[Any, ...], int | None]:
        return flatten_usage(self.usage)


def expected_of(lines: Sequence[bytes]) -> Expected:
    crossings: list[dict[str, Any]] = []
    replay = Replay(now_ms=None, on_crossing=lambda c: crossings.append(c.to_record()),
                    on_deadletter=lambda _: None)
    replay.feed(lines)
    usage = replay.finish()
    s = replay.stats
    return Expected(s.lines, s.counted, s.duplicates, s.rejected, usage, crossings)


Record = tuple[str, bytes, bytes]


def valid_pairs(lines: Sequence[bytes]) -> list[tuple[bytes, Record]]:
    """(line, record) of every valid line, in line order."""
    out = []
    for line in lines:
        try:
            event = parse_line(line, now_ms=None)
        except InvalidEvent:
            continue
        out.append((line, (topic_of(event), event.workspace_id.encode(), encode_event(event))))
    return out


def valid_events(lines: Sequence[bytes]) -> list[Record]:
    """(base topic, key, Avro value) of every valid line, in line order."""
    return [record for _, record in valid_pairs(lines)]


def fixed_limit_keys(lines: Sequence[bytes]) -> set[tuple[str, str]]:
    """(workspace, counter quota) whose limits never change after usage arrives: no top-up
    of that quota, and the workspace's plans all come before its first usage line.
    For these S1 makes the set of alert ids the same in every order."""
    topped: set[tuple[str, str]] = set()
    late_plan: set[str] = set()
    used: set[str] = set()
    workspaces: set[str] = set()
    for line in lines:
        try:
            event = parse_line(line, now_ms=None)
        except InvalidEvent:
            continue
        ws = event.workspace_id
        workspaces.add(ws)
        if isinstance(event, TopupEvent):
            topped.add((ws, event.quota))
        elif isinstance(event, PlanEvent):
            if ws in used:
                late_plan.add(ws)
        elif not isinstance(event, AlertSettingsEvent):
            used.add(ws)
    return {(ws, q) for ws in workspaces for q in COUNTER_QUOTAS
            if ws not in late_plan and (ws, q) not in topped}


class PacedProducer(threading.Thread):
    """Produces (topic, key, value) at a fixed rate on a background thread, with an
    idempotent librdkafka producer that retries through broker outages."""

    def __init__(self, settings: Settings, records: Sequence[tuple[str, bytes, bytes]],
                 rate_per_s: float) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.records = records
        self.rate = rate_per_s
        self.sent = 0
        self.acked = 0
        self.failed: list[str] = []
        self._lock = threading.Lock()

    def _report(self, err: Any, _msg: Any) -> None:
        with self._lock:
            if err is None:
                self.acked += 1
            else:
                self.failed.append(str(err))

    def run(self) -> None:
        producer = Producer({"bootstrap.servers": self.settings.kafka_bootstrap,
                             "partitioner": "murmur2_random", "enable.idempotence": True,
                             "acks": "all", "linger.ms": 5, "compression.type": "lz4",
                             "message.timeout.ms": 300_000})
        start = time.monotonic()
        for i, (topic, key, value) in enumerate(self.records):
            due = start + i / self.rate
            while True:
                now = time.monotonic()
                if now >= due:
                    break
                producer.poll(min(0.05, due - now))
            while True:
                try:
                    producer.produce(self.settings.topic(topic), key=key, value=value,
                                     on_delivery=self._report)
                    break
                except BufferError:
                    producer.poll(0.1)
            self.sent += 1
            producer.poll(0)
        remaining = producer.flush(300)
        if remaining:
            self.failed.append(f"{remaining} records never acknowledged")

    @property
    def done(self) -> bool:
        return not self.is_alive()


def produce_all(settings: Settings, records: Sequence[tuple[str, bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap,
                         "partitioner": "murmur2_random", "enable.idempotence": True,
                         "linger.ms": 5, "compression.type": "lz4"})
    for n, (topic, key, value) in enumerate(records, 1):
        while True:
            try:
                producer.produce(settings.topic(topic), key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
        if n % 5000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def scrape(port: int) -> dict[str, float]:
    """A worker's /metrics counters: name -> value (labels kept in the name)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                continue
    return out


def worker_counted(metrics: dict[str, float]) -> int:
    return int(metrics.get("meter_worker_processed_total", 0)
               - metrics.get("meter_worker_deduplicated_total", 0)
               - metrics.get("meter_worker_late_total", 0))


def owned_partitions(port: int) -> list[int]:
    """The input partitions a worker owns and serves, from its /metrics
    (``meter_worker_partition_owned``); none while it does not answer."""
    prefix = 'meter_worker_partition_owned{partition="'
    return sorted(int(name[len(prefix):-2]) for name, value in scrape(port).items()
                  if name.startswith(prefix) and value == 1)


@dataclass
class StreamOutput:
    aggregates: dict[tuple[Any, ...], int | None]
    crossings: list[dict[str, Any]]


def stream_output(settings: Settings) -> StreamOutput:
    rows = [r for _, r in read_topic(settings, "usage.aggregates", timeout_s=60)]
    crossings = [r for _, r in read_topic(settings, "quota.thresholds", timeout_s=60)]
    # usage.json names a cycle by its start in whole seconds (S2's time format), the stream
    # by the exact millisecond; the workload's anchors carry milliseconds.
    aggregates = {(k[0], k[1] // 1000 * 1000, *k[2:]): v
                  for k, v in latest_aggregates(rows).items()}
    return StreamOutput(aggregates, crossings)


def crossing_problems(crossings: list[dict[str, Any]], expected: Expected,
                      fixed: set[tuple[str, str]]) -> list[str]:
    """S1/S9 against the replay: soundness, one crossing per id, every threshold the final
    usage satisfies fired, and the exact id set for counter quotas with fixed limits."""
    problems: list[str] = []
    by_id: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
    for c in crossings:
        if c["current"] * 100 < c["threshold"] * c["limit"]:
            problems.append(f"unsound crossing {c['alert_id']}: {c['current']}/{c['limit']}")
        by_id[c["alert_id"]].add((c["workspace_id"], c["cycle_start"], c["quota"],
                                  c["threshold"], c["arm"]))
    problems += [f"alert id {k} stands for {len(v)} crossings" for k, v in by_id.items()
                 if len(v) > 1]
    fired = {(c["workspace_id"], c["cycle_start"] // 1000 * 1000, c["quota"], c["threshold"])
             for c in crossings}
    problems += [f"never fired: {ws} {start_text} {quota} {t}"
                 for ws, start, quota, t, start_text in satisfied_thresholds(expected.usage)
                 if (ws, start, quota, t) not in fired]

    def exact(cs: list[dict[str, Any]]) -> set[str]:
        return {c["alert_id"] for c in cs if (c["workspace_id"], c["quota"]) in fixed}

    got, want = exact(crossings), exact(expected.crossings)
    problems += [f"missing counter crossing {i}" for i in sorted(want - got)]
    problems += [f"extra counter crossing {i}" for i in sorted(got - want)]
    return problems


def render_rows(name: str, rows: Sequence[tuple[str, str]]) -> str:
    """A fault test's results table: one ``label  value`` line per row under its name."""
    width = max(len(k) for k, _ in rows)
    return "\n".join([f"== {name} =="] + [f"{k:<{width}}  {v}" for k, v in rows])


class PrintedReport:
    """A report that prints its table to stdout and stderr (shown with and without -s),
    and appends it to the file named by ``METER_FAULT_REPORT`` when set (``make
    faults-report`` writes bench/results/faults_report.txt that way)."""

    def render(self) -> str:
        raise NotImplementedError

    def show(self) -> None:
        text = self.render()
        print("\n" + text, file=sys.stderr)
        print("\n" + text)
        target = os.environ.get("METER_FAULT_REPORT")
        if target:
            with open(target, "a", encoding="utf-8") as report:
                report.write(text + "\n\n")


@dataclass
class Report(PrintedReport):
    """The small table every fault test prints and asserts."""

    name: str
    events_in: int
    counted_expected: int
    counted_stream: int | None = None  # None: not measurable (counters lost with a process)
    duplicates_injected: int = 0
    duplicates_removed: int | None = None
    crossings_expected_exact: int = 0
    crossings_expected_s1: int = 0
    crossings_delivered: int = 0
    rows_expected: int = 0
    rows_stream: int = 0
    differed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        def n(v: int | None) -> str:
            return "n/a" if v is None else f"{v:,}"

        rows = [
            ("events in (records produced)", f"{self.events_in:,}"),
            ("events counted: replay / stream", f"{self.counted_expected:,} / "
                                                f"{n(self.counted_stream)}"),
            ("duplicates injected / removed", f"{self.duplicates_injected:,} / "
                                              f"{n(self.duplicates_removed)}"),
            ("crossings expected (exact ids + S1 rest)",
             f"{self.crossings_expected_exact:,} + {self.crossings_expected_s1:,}"),
            ("crossings delivered (distinct ids)", f"{self.crossings_delivered:,}"),
            ("rows: replay / stream", f"{self.rows_expected:,} / {self.rows_stream:,}"),
            ("what differed", "nothing" if not self.differed else
             f"{len(self.differed)}: " + "; ".join(self.differed[:5])),
        ] + [("note", note) for note in self.notes]
        return render_rows(self.name, rows)


def compare(name: str, expected: Expected, stream: StreamOutput, fixed: set[tuple[str, str]],
            events_in: int, duplicates_injected: int) -> Report:
    """A report of the stream against the replay (totals, breakdowns, limits, crossings)."""
    flat = expected.flat
    diff = differences(stream.aggregates, flat)
    diff += crossing_problems(stream.crossings, expected, fixed)
    exact_ids = {c["alert_id"] for c in expected.crossings
                 if (c["workspace_id"], c["quota"]) in fixed}
    all_ids = {c["alert_id"] for c in expected.crossings}
    return Report(name=name, events_in=events_in, counted_expected=expected.counted,
                  duplicates_injected=duplicates_injected,
                  crossings_expected_exact=len(exact_ids),
                  crossings_expected_s1=len(all_ids - exact_ids),
                  crossings_delivered=len({c["alert_id"] for c in stream.crossings}),
                  rows_expected=len(flat), rows_stream=len(stream.aggregates), differed=diff)


def compare_stream(settings: Settings, name: str, expected: Expected, lines: Sequence[bytes],
                   events_in: int, duplicates_injected: int,
                   metrics: dict[str, float] | None = None) -> Report:
    """`compare` of the worker's output topics, read now, with ``expected``; alert ids are
    exact for the quotas whose limits ``lines`` never changes (``fixed_limit_keys``). With
    the /metrics of a worker that processed the whole stream, the report has what it
    counted and the duplicates it dropped."""
    report = compare(name, expected, stream_output(settings), fixed_limit_keys(lines),
                     events_in=events_in, duplicates_injected=duplicates_injected)
    if metrics is not None:
        report.counted_stream = worker_counted(metrics)
        report.duplicates_removed = int(metrics.get("meter_worker_deduplicated_total", -1))
    return report


def compare_with_replay(settings: Settings, name: str, lines: Sequence[bytes]) -> Report:
    """``compare_stream`` for the usual run: the worker was sent the record of every valid
    line of ``lines`` once (the workload's own repeats included); the replay reads ``lines``."""
    records = valid_events(lines)
    return compare_stream(settings, name, expected_of(lines), lines, events_in=len(records),
                          duplicates_injected=duplicates_in(records))


def duplicates_in(records: Sequence[tuple[str, bytes, bytes]]) -> int:
    """Records whose (topic, key, value) was already produced: repeats S6 must drop."""
    seen: set[tuple[str, bytes, bytes]] = set()
    dups = 0
    for r in records:
        if r in seen:
            dups += 1
        seen.add(r)
    return dups


def progress(committed: dict[tuple[str, int], int]) -> int:
    return sum(max(0, v) for v in committed.values())


def worker_progress(settings: Settings, partitions: Iterable[tuple[str, int]]) -> int:
    """Offsets the worker group has committed on ``partitions``, summed (none yet: 0)."""
    return progress(committed(settings, settings.topic_prefix + settings.worker_id, partitions))


def iter_chunks(seq: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def split_workload(seed: int, events: int) -> tuple[list[bytes], list[Record], list[Record]]:
    """``workload_lines(seed, events)``, and the records of its valid lines: the plans, the
    rest (``split_plans``)."""
    lines = workload_lines(seed, events)
    return lines, *split_plans(valid_events(lines))


def split_plans(records: Sequence[tuple[str, bytes, bytes]]
                ) -> tuple[list[tuple[str, bytes, bytes]], list[tuple[str, bytes, bytes]]]:
    """(plan records, the rest). The workload's plans move cycle anchors; a plan processed
    after a workspace's first counted event only moves the schedule at the end of the cycle
    (S3, S12), so the tests let the worker read every plan before any usage arrives."""
    plans = [r for r in records if r[0] == "quota.plans"]
    return plans, [r for r in records if r[0] != "quota.plans"]


def wait_plans_applied(settings: Settings, proc: subprocess.Popen[bytes],
                       timeout_s: float = 120.0) -> None:
    from groundwork.kafka import end_offsets

    group = settings.topic_prefix + settings.worker_id
    ends = end_offsets(settings, ["quota.plans"])
    wait_until(lambda: all(committed(settings, group, ends).get(k, -1) >= v
                           for k, v in ends.items() if v > 0),
               "the worker to apply every plan", timeout_s=timeout_s, poll_s=0.3, proc=proc)


@contextlib.contextmanager
def worker_with_plans(settings: Settings, plans: Sequence[Record], log: Path,
                      data_dir: Path | None = None, web_port: int | None = None
                      ) -> Iterator[subprocess.Popen[bytes]]:
    """``running_worker`` once it has applied every one of ``plans``, produced before it
    starts: the usage produced after that counts under the plans' limits (``split_plans``)."""
    produce_all(settings, plans)
    with running_worker(settings, log, data_dir=data_dir, web_port=web_port) as proc:
        wait_plans_applied(settings, proc)
        yield proc
