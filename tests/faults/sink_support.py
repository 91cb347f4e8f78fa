"""Pieces of the sink fault tests: `meter sink` as a real subprocess, a workload of sink
records produced with where each one landed, what the store holds after a fault (read
through the project's own read paths) and the table each test prints.

Nothing is mocked: the records go through the real broker to a real `meter sink`
process that owns a real chDB store; the tests read that store only when the sink is
stopped or dead (chDB lets one process own a data path), with ``sinks.history``,
``sinks.timeline`` and the DDL's deduplicating reads (argMax by version, FINAL).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
from clickhouse_connect.driver.client import Client
from confluent_kafka import KafkaError, Producer

from groundwork.kafka import end_offsets
from groundwork.settings import Settings
from schemas.aggregates import entries_of, values_of
from schemas.codec import encode_record, key_of
from schemas.events import QUOTAS
from sinks.ddl import quote_identifier
from sinks.history import HistoryReader
from sinks.rows import SINK_TOPICS, TABLE_OF_TOPIC
from sinks.shape import iso, parse_time
from sinks.store import StoreHandle
from sinks.timeline import Queries
from tests.faults.support import PrintedReport, render_rows, scrape
from tests.streams.harness import committed
from tests.waiting import wait_until

# (base topic, record) as the sink reads it
SinkRecord = tuple[str, dict[str, Any]]

APR, MAY, JUN = (parse_time(t) for t in
                 ("2025-04-01T00:00:00Z", "2025-05-01T00:00:00Z", "2025-06-01T00:00:00Z"))
CYCLES: Final = ((APR, MAY), (MAY, JUN))
SHORT: Final = {"usage.aggregates": "usage", "quota.thresholds": "crossings",
                "alerting.deliveries": "deliveries", "usage.deadletter": "dead letters",
                "quota.plans": "plans"}
# Breakdown (dimension, key, metric) of every snapshot key the workload writes; gauges
# (machines, storage_bytes) in every cycle, so history carries nothing over.
_KEYS: Final = (
    *(("totals", "", m) for m in ("ai_tokens", "commands", "schedule_runs", "machines",
                                  "storage_bytes", "skill_invocations")),
    *(("member", f"m{i}", m) for i in (1, 2, 3) for m in ("ai_tokens", "commands")),
    *(("model", k, m) for k in ("openai/gpt-4o", "anthropic/claude-3")
      for m in ("input_tokens", "output_tokens")),
    *(("provider", k, m) for k in ("openai", "anthropic")
      for m in ("input_tokens", "output_tokens")),
    *(("skill", s, "invocations") for s in ("deploy", "review")),
    *(("machine", "mach-1", m) for m in ("commands", "ai_tokens")),
)


# -- the workload ---------------------------------------------------------------------


def sink_workload(seed: int, workspaces: int = 40, rounds: int = 24,
                  reemit_rate: float = 0.05) -> list[SinkRecord]:
    """Records of the five sink topics in a plausible stream order.

    Per workspace: two plans, then snapshot rounds (each round one usage.aggregates
    record, a new version, with the keys that changed, values growing), crossings of
    ai_tokens with their delivery attempts, and dead letters. A share of records is
    re-emitted identically later in the stream (at-least-once upstream): the
    deduplicated reads must show them once.
    """
    rng = random.Random(seed)
    names = [f"ws{i:03d}" for i in range(workspaces)]
    out: list[SinkRecord] = []
    for n, ws in enumerate(names):
        for i, (name, ai) in enumerate((("team", 50_000), ("business", 500_000))):
            out.append(("quota.plans", {
                "event_id": f"{ws}-plan-{i}", "workspace_id": ws,
                "occurred_at": APR - 86_400_000 * (10 - 5 * i) + n, "plan": name,
                "cycle_anchor": APR, "timezone": "UTC",
                "limits": {"machines": 10 + i, "ai_tokens": ai, "storage_bytes": 10**9,
                           "schedule_runs": 1000, "api_requests_per_minute": None,
                           "api_requests_per_cycle": 100_000},
                "owners": [f"owner@{ws}.example"]}))
    values: dict[tuple[Any, ...], int] = {}
    version = dict.fromkeys(names, 0)
    dead = 0
    for r in range(rounds):
        cycle_start, cycle_end = CYCLES[0] if r < rounds // 2 else CYCLES[1]
        for ws in rng.sample(names, len(names)):
            version[ws] += 1
            changed = []
            for dim, key, metric in _KEYS:
                k = (ws, cycle_start, dim, key, metric)
                if k in values and rng.random() < 0.4:
                    continue  # unchanged this round: no row
                values[k] = values.get(k, 0) + rng.randint(1, 1000)
                changed.append((dim, key, metric, values[k]))
            out.append(("usage.aggregates", {
                "workspace_id": ws, "cycle_start": cycle_start, "cycle_ends_at": cycle_end,
                "plan": "business", "entries": entries_of(changed), "version": version[ws],
                "emitted_at": cycle_start + version[ws] * 1000}))
            if r % 6 == 5:
                threshold = (80, 95, 100)[(r // 6) % 3]
                out += _crossing_and_deliveries(ws, cycle_start, cycle_end, threshold, r)
            if rng.random() < 0.15:
                dead += 1
                out.append(("usage.deadletter", {
                    "source_topic": "usage.tokens", "partition": dead % 4, "offset": dead,
                    "reason": rng.choice(("undecodable", "missing_field", "invalid_value")),
                    "detail": f"line {dead}", "original": rng.randbytes(rng.randint(1, 60)),
                    "seen_at": cycle_start + dead}))
    # Re-emits: identical records again, later in the stream.
    placed = [((i, 1), rec) for i, rec in enumerate(out)]
    placed += [((rng.randint(i + 1, len(out)), 0), rec) for i, rec in enumerate(out)
               if rng.random() < reemit_rate]
    return [rec for _, rec in sorted(placed, key=lambda p: p[0])]


def _crossing_and_deliveries(ws: str, cycle_start: int, cycle_end: int, threshold: int,
                             r: int) -> list[SinkRecord]:
    alert_id = f"{ws}/{iso(cycle_start)}/ai_tokens/{threshold}"
    crossing: dict[str, Any] = {
        "alert_id": alert_id, "workspace_id": ws, "quota": "ai_tokens", "threshold": threshold,
        "arm": 1, "highest_in_event": True, "current": 5_000 * threshold, "limit": 500_000,
        "cycle_start": cycle_start, "cycle_ends_at": cycle_end,
        "crossed_at": cycle_start + r * 60_000, "event_id": f"{ws}-ev-{r}",
        "enforcement": "allow"}
    out: list[SinkRecord] = [("quota.thresholds", crossing)]
    for channel in ("email", "slack", "webhook"):
        for attempt, status in ((1, "attempted"), (1, "delivered")):
            out.append(("alerting.deliveries", {
                "delivery_id": f"{alert_id}/{channel}/{status}", "alert_id": alert_id,
                "workspace_id": ws, "channel": channel, "status": status,
                "attempt": attempt, "detail": None if status == "attempted" else "200",
                "target": f"{channel}-target", "quota": "ai_tokens", "threshold": threshold,
                "recorded_at": crossing["crossed_at"] + attempt * 10 + len(status)}))
    return out


def identities(topic: str, record: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The rows a record becomes, as ``raw_identities`` reads them back (not deduplicated):
    one per value of a usage.aggregates record, one for the other topics."""
    if topic == "usage.aggregates":
        return [(record["workspace_id"], record["cycle_start"], dimension, key, metric,
                 record["version"]) for dimension, key, metric, _ in values_of(record)]
    if topic == "quota.thresholds":
        return [(record["alert_id"],)]
    if topic == "alerting.deliveries":
        return [(record["delivery_id"],)]
    if topic == "usage.deadletter":
        return [(record["source_topic"], record["partition"], record["offset"])]
    return [(record["workspace_id"], record["event_id"])]


_IDENTITY_SQL: Final = {
    "usage_snapshots": "workspace_id, toUnixTimestamp64Milli(cycle_start), dimension, key, "
                       "metric, version",
    "threshold_crossings": "alert_id",
    "alert_deliveries": "delivery_id",
    "dead_letters": "source_topic, partition, offset",
    "plans": "workspace_id, event_id",
}


def raw_identities(client: Client, database: str) -> dict[str, set[tuple[Any, ...]]]:
    """Table -> the identities of the rows stored now (not deduplicated; background merges
    may have folded older snapshot versions into newer ones)."""
    db = quote_identifier(database)
    out: dict[str, set[tuple[Any, ...]]] = {}
    for table, columns in _IDENTITY_SQL.items():
        rows = client.query(f"SELECT {columns} FROM {db}.{table}").result_rows
        out[table] = {tuple(row) for row in rows}
    return out


@dataclass
class KillCheck:
    """What a SIGKILL left: rows the killed sink inserted but had not committed (the
    kill landed between an insert and its commit when > 0), and committed records whose
    rows are not in the store (a commit before its insert: must stay empty)."""

    inserted_uncommitted: int
    committed_missing: list[str]


def check_after_kill(records: Sequence[SinkRecord], landed: Sequence[Landed | None],
                     before: dict[str, set[tuple[Any, ...]]],
                     now: dict[str, set[tuple[Any, ...]]],
                     committed_now: dict[tuple[str, int], int]) -> KillCheck:
    """``before``: the store's identities when the killed sink started; ``now``: after the
    kill. A row new since ``before`` whose every record is at or past its partition's
    committed offset was inserted by the killed sink and not committed."""
    copies: dict[tuple[str, tuple[Any, ...]], list[bool]] = {}
    newest: dict[tuple[Any, ...], int] = {}
    for ident in now["usage_snapshots"]:
        k = ident[:5]
        newest[k] = max(newest.get(k, -1), int(ident[5]))
    missing: list[str] = []
    for (topic, record), where in zip(records, landed, strict=True):
        if where is None:
            continue
        table = TABLE_OF_TOPIC[topic].table
        is_committed = where.offset < committed_now.get((where.topic, where.partition), -1)
        for ident in identities(topic, record):
            copies.setdefault((table, ident), []).append(is_committed)
            if not is_committed:
                continue
            # Merges fold older snapshot versions into newer ones: a version is kept when
            # the key holds it or a newer one.
            kept = (newest.get(ident[:5], -1) >= ident[5] if table == "usage_snapshots"
                    else ident in now[table])
            if not kept:
                missing.append(f"{topic}[{where.partition}]@{where.offset} {ident}")
    uncommitted = sum(
        1 for (table, ident), flags in copies.items()
        if ident in now[table] and ident not in before[table] and not any(flags))
    return KillCheck(uncommitted, missing)


# -- producing with positions ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Landed:
    topic: str  # real topic name
    partition: int
    offset: int


class TrackedProducer(threading.Thread):
    """Produces the records in order (at ``rate_per_s``, or as fast as it can with None)
    and records where each landed: ``landed[i]`` for record ``i``."""

    def __init__(self, settings: Settings, records: Sequence[SinkRecord],
                 rate_per_s: float | None = None) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.records = records
        self.rate = rate_per_s
        self.landed: list[Landed | None] = [None] * len(records)
        self.failed: list[str] = []
        self.sent = 0
        self._halt = threading.Event()

    def stop(self) -> None:
        """Produce no more records (those sent are still flushed); ``produced`` says which."""
        self._halt.set()

    @property
    def produced(self) -> Sequence[SinkRecord]:
        return self.records[:self.sent]

    def run(self) -> None:
        producer = Producer({"bootstrap.servers": self.settings.kafka_bootstrap,
                             "partitioner": "murmur2_random", "enable.idempotence": True,
                             "acks": "all", "linger.ms": 5, "compression.type": "lz4"})

        def report(i: int) -> Any:
            def on_delivery(err: KafkaError | None, msg: Any) -> None:
                if err is None:
                    self.landed[i] = Landed(msg.topic(), msg.partition(), msg.offset())
                else:
                    self.failed.append(str(err))
            return on_delivery

        start = time.monotonic()
        for i, (topic, record) in enumerate(self.records):
            if self.rate is not None:
                due = start + i / self.rate
                while (wait := due - time.monotonic()) > 0:
                    producer.poll(min(0.05, wait))
            if self._halt.is_set():
                break
            ws = record.get("workspace_id")
            key = key_of(ws) if isinstance(ws, str) else None
            value = encode_record(topic, record)
            while True:
                try:
                    producer.produce(self.settings.topic(topic), key=key, value=value,
                                     on_delivery=report(i))
                    break
                except BufferError:
                    producer.poll(0.1)
            self.sent += 1
            producer.poll(0)
        if producer.flush(120):
            self.failed.append("records never acknowledged")

    @property
    def done(self) -> bool:
        return not self.is_alive()


def produce_tracked(settings: Settings, records: Sequence[SinkRecord]) -> list[Landed]:
    producer = TrackedProducer(settings, records)
    producer.run()
    assert producer.failed == [] and None not in producer.landed, producer.failed[:3]
    return [landed for landed in producer.landed if landed is not None]


# -- the sink process -----------------------------------------------------------------


def sink_env(settings: Settings, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METER_")}
    env.update({
        "METER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "METER_TOPIC_PREFIX": settings.topic_prefix,
        "METER_KAFKA_PARTITIONS": str(settings.kafka_partitions),
        "METER_DATA_DIR": str(settings.data_dir),
        "METER_CHDB_PATH": str(settings.chdb_data_path),
        "METER_CLICKHOUSE_DATABASE": settings.clickhouse_database,
        "METER_SINK_PORT": str(port),
    })
    return env


def start_sink(settings: Settings, log: Path, port: int, group: str, batch_rows: int = 20_000,
               batch_seconds: float = 1.0) -> subprocess.Popen[bytes]:
    """`meter sink` as the operator runs it, its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "meter.cli_entry", "sink", "--group", group,
             "--batch-rows", str(batch_rows), "--batch-seconds", str(batch_seconds)],
            env=sink_env(settings, port), stdout=out, stderr=subprocess.STDOUT)


@contextlib.contextmanager
def running_sink(settings: Settings, log: Path, port: int, group: str, **kwargs: Any
                 ) -> Iterator[subprocess.Popen[bytes]]:
    """A sink subprocess; stopped with SIGTERM on exit unless it already ended."""
    proc = start_sink(settings, log, port, group, **kwargs)
    try:
        yield proc
    finally:
        stop_sink(proc)


def stop_sink(proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def sink_metrics(port: int) -> dict[str, float]:
    return scrape(port)


def rows_written(metrics: dict[str, float]) -> int:
    return int(sum(v for k, v in metrics.items()
                   if k.startswith("meter_sink_rows_written_total")))


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def sink_committed(settings: Settings, group: str) -> dict[tuple[str, int], int]:
    """(real topic, partition) -> the group's committed offset (-1 or less: none)."""
    return committed(settings, group, end_offsets(settings, SINK_TOPICS))


def caught_up(settings: Settings, group: str) -> bool:
    ends = end_offsets(settings, SINK_TOPICS)
    done = committed(settings, group, ends)
    return all(done.get(k, -1) >= end for k, end in ends.items() if end > 0)


# -- what the store holds -------------------------------------------------------------


@contextlib.contextmanager
def open_store(settings: Settings) -> Iterator[Client]:
    """A client on the store (only while no sink holds it), closed on exit."""
    handle = StoreHandle(settings)
    try:
        yield handle.client()
    finally:
        handle.close()


@dataclass
class Contents:
    """Table -> row identity -> the row as the project's reads return it (deduplicated)."""

    rows: dict[str, dict[tuple[Any, ...], Any]]
    dedup_counts: dict[str, int]  # rows in the deduplicated views (FINAL / latest version)
    raw_counts: dict[str, int]  # rows stored, rewrites included (until merges)


def _flat_history(reader: HistoryReader, ws: str) -> dict[tuple[Any, ...], int]:
    out: dict[tuple[Any, ...], int] = {}
    for cycle in reader.history(ws):
        for metric, value in cycle.totals.items():
            if value:
                out[(ws, cycle.cycle_start, "totals", "", metric)] = value
        for dim, entries in cycle.breakdowns.items():
            for key, metrics in entries.items():
                for metric, value in metrics.items():
                    if value:
                        out[(ws, cycle.cycle_start, dim, key, metric)] = value
    return out


def store_contents(client: Client, database: str, workspaces: Sequence[str]) -> Contents:
    """Everything the workload wrote, through ``HistoryReader`` (history and plans),
    ``Queries.alerts`` (crossings and deliveries, FINAL), dead letters with FINAL, and
    row counts of the DDL's deduplicating views."""
    db = quote_identifier(database)
    reader, queries = HistoryReader(client, database), Queries(client, database)
    usage: dict[tuple[Any, ...], Any] = {}
    plans: dict[tuple[Any, ...], Any] = {}
    crossings: dict[tuple[Any, ...], Any] = {}
    deliveries: dict[tuple[Any, ...], Any] = {}
    for ws in workspaces:
        usage.update(_flat_history(reader, ws))
        for plan in reader.plans(ws):
            plans[(ws, plan.occurred_at)] = (plan.plan, plan.cycle_anchor, plan.timezone,
                                             plan.limits)
        for start, _ in CYCLES:
            found, sent = queries.alerts(ws, start)
            crossings.update({(c["alert_id"],): c for c in found})
            deliveries.update({(d["delivery_id"],): d for d in sent})
    dead = {(r[0], int(r[1]), int(r[2])): (r[3], r[4], r[5], int(r[6]))
            for r in client.query(
                "SELECT source_topic, partition, offset, reason, detail, hex(original), "
                f"toUnixTimestamp64Milli(seen_at) FROM {db}.dead_letters FINAL").result_rows}

    def count(sql: str) -> int:
        return int(client.query(sql).result_rows[0][0])

    dedup = {
        "usage_snapshots": count(f"SELECT count() FROM {db}.usage_latest"),
        "threshold_crossings": count(f"SELECT count() FROM {db}.crossings"),
        "alert_deliveries": count(f"SELECT count() FROM {db}.deliveries"),
        "dead_letters": count(f"SELECT count() FROM {db}.dead_letters FINAL"),
        "plans": count(f"SELECT count() FROM {db}.plans FINAL"),
    }
    raw = {t: count(f"SELECT count() FROM {db}.{t}") for t in dedup}
    return Contents({"usage_snapshots": usage, "threshold_crossings": crossings,
                     "alert_deliveries": deliveries, "dead_letters": dead, "plans": plans},
                    dedup, raw)


def expected_contents(records: Sequence[SinkRecord]) -> Contents:
    """What the reads must show for ``records``: the highest version of every snapshot
    key, one row per crossing, delivery, dead letter and plan."""
    # (version, value); a value is None where the record has none (dropped below)
    latest: dict[tuple[Any, ...], tuple[int, int | None]] = {}
    crossings: dict[tuple[Any, ...], Any] = {}
    deliveries: dict[tuple[Any, ...], Any] = {}
    dead: dict[tuple[Any, ...], Any] = {}
    plans: dict[tuple[Any, ...], Any] = {}
    for topic, r in records:
        if topic == "usage.aggregates":
            for dimension, key, metric, value in values_of(r):
                k = (r["workspace_id"], r["cycle_start"], dimension, key, metric)
                if k not in latest or latest[k][0] <= r["version"]:
                    latest[k] = (r["version"], value)
        elif topic == "quota.thresholds":
            # a version 1 record is a threshold crossing; reads show its kind
            crossings[(r["alert_id"],)] = {"kind": "threshold", "forecast_at": None, **r}
        elif topic == "alerting.deliveries":
            deliveries[(r["delivery_id"],)] = dict(r)
        elif topic == "usage.deadletter":
            (ident,) = identities(topic, r)
            dead[ident] = (r["reason"], r["detail"], r["original"].hex().upper(), r["seen_at"])
        else:
            limits = r["limits"]
            plans[(r["workspace_id"], r["occurred_at"])] = (
                r["plan"], r["cycle_anchor"], r["timezone"], {q: limits[q] for q in QUOTAS})
    usage = {k: v for k, (_, v) in latest.items() if v}
    counts = {"usage_snapshots": len(latest), "threshold_crossings": len(crossings),
              "alert_deliveries": len(deliveries), "dead_letters": len(dead),
              "plans": len(plans)}
    return Contents({"usage_snapshots": usage, "threshold_crossings": crossings,
                     "alert_deliveries": deliveries, "dead_letters": dead, "plans": plans},
                    counts, dict.fromkeys(counts, len(records)))


def differences(got: Contents, want: Contents) -> list[str]:
    """Every row missing, extra or different, and every deduplicated count that differs."""
    out: list[str] = []
    for table, rows in want.rows.items():
        have = got.rows.get(table, {})
        for k in sorted(set(rows) | set(have), key=repr):
            if k not in have:
                out.append(f"{table}: missing {k}")
            elif k not in rows:
                out.append(f"{table}: extra {k} = {have[k]}")
            elif have[k] != rows[k]:
                out.append(f"{table}: {k} is {have[k]}, expected {rows[k]}")
    for table, n in want.dedup_counts.items():
        if got.dedup_counts.get(table) != n:
            out.append(f"{table}: {got.dedup_counts.get(table)} rows in the deduplicated "
                       f"view, expected {n}")
    return out


def workspaces_of(records: Sequence[SinkRecord]) -> list[str]:
    return sorted({r["workspace_id"] for t, r in records if t != "usage.deadletter"})


# -- watching the store's inserts ----------------------------------------------------

# A part an INSERT wrote: <partition>_<block>_<block>_<level>, one block number (a merge
# spans several: <partition>_<min>_<max>_<level>).
_INSERT_PART: Final = re.compile(r"^[^_]+_(\d+)_\1_\d+$")


def insert_parts(chdb_path: Path) -> set[str]:
    """The parts written by inserts that the store holds now (table dir / part name).

    ClickHouse writes an insert's part under a temporary name and renames it when the
    insert is done, so a new name here is an insert that has completed.
    """
    out: set[str] = set()
    for table in (chdb_path / "store").glob("*/*"):
        with contextlib.suppress(OSError):
            out.update(f"{table.name}/{n}" for n in os.listdir(table) if _INSERT_PART.search(n))
    return out


def wait_for_insert(chdb_path: Path, known: set[str], proc: subprocess.Popen[bytes],
                    timeout_s: float = 120.0) -> set[str]:
    """Poll the store's directories until an insert part not in ``known`` appears."""
    new: set[str] = set()

    def inserted() -> bool:
        nonlocal new
        new = insert_parts(chdb_path) - known
        return bool(new)

    wait_until(inserted, "an insert", timeout_s, proc=proc, poll_s=0.001)
    return new


# -- making the store unwritable ------------------------------------------------------


def table_dirs(chdb_path: Path) -> list[Path]:
    """The directories of the store's databases and tables (``store/xxx/<uuid>/``)."""
    return sorted(p for p in (chdb_path / "store").glob("*/*") if p.is_dir())


@contextlib.contextmanager
def unwritable(dirs: Sequence[Path]) -> Iterator[str]:
    """While inside, no file can be created in ``dirs`` (what a read-only remount or a
    permission change does to the store): ``chattr +i`` as root (root ignores modes),
    else the write bits removed. Yields how it was done."""
    if os.geteuid() == 0:
        chattr = shutil.which("chattr")
        if chattr is None:
            raise RuntimeError("running as root without chattr: cannot make a directory "
                               "unwritable")
        subprocess.run([chattr, "+i", *map(str, dirs)], check=True)
        try:
            yield "chattr +i (immutable) on the table directories"
        finally:
            subprocess.run([chattr, "-i", *map(str, dirs)], check=True)
        return
    modes = {d: d.stat().st_mode for d in dirs}
    for d in dirs:
        d.chmod(modes[d] & ~0o222)
    try:
        yield "write permission removed from the table directories"
    finally:
        for d, mode in modes.items():
            d.chmod(mode)


# -- the report -----------------------------------------------------------------------


@dataclass
class SinkReport(PrintedReport):
    """The small table every sink fault test prints and asserts."""

    name: str
    records_in: dict[str, int]  # base topic -> records produced (re-emits included)
    expected: dict[str, int]  # table -> rows expected in the deduplicated view
    got: dict[str, int]  # table -> rows in the deduplicated view
    raw: dict[str, int]  # table -> rows stored, rewrites included
    differed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        tables = [TABLE_OF_TOPIC[t].table for t in SINK_TOPICS]

        def per_table(counts: dict[str, int]) -> str:
            return " / ".join(f"{counts.get(t, 0):,}" for t in tables)

        rows = [
            ("tables", " / ".join(SHORT[t] for t in SINK_TOPICS)),
            ("records in (with re-emits)", " / ".join(f"{self.records_in.get(t, 0):,}"
                                                      for t in SINK_TOPICS)
             + f"  (total {sum(self.records_in.values()):,})"),
            ("rows expected (deduplicated)", per_table(self.expected)),
            ("rows in ClickHouse (dedup view)", per_table(self.got)),
            ("rows stored (rewrites not merged yet)", per_table(self.raw)),
            ("what differed", "nothing" if not self.differed else
             f"{len(self.differed)}: " + "; ".join(self.differed[:5])),
        ] + [("note", note) for note in self.notes]
        return render_rows(self.name, rows)


def report_of(name: str, records: Sequence[SinkRecord], got: Contents, want: Contents
              ) -> SinkReport:
    return SinkReport(name, dict(Counter(t for t, _ in records)), want.dedup_counts,
                      got.dedup_counts, got.raw_counts, differences(got, want))
