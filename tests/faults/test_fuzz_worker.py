"""Bad bytes on every input topic of a running `meter worker`: each bad record is dead-lettered
with its reason, source topic/partition/offset and original bytes; the good events around
it are counted exactly (stream = `meter replay`); the worker never crashes.

Generalizes the fixed cases of tests/streams/test_worker.py (four topics, one record each)
to the ten input topics, each with every kind of fault, interleaved with a workload:

(a) arbitrary bytes (hypothesis, derandomized) and valid frames with arbitrary bodies,
    plus good records with one byte flipped that no longer decode or validate;
(b) a Confluent frame with an unknown schema id around a valid body;
(c) a well-formed event of another input topic (its schema id is not this topic's);
(d) a good record's bytes cut short (inside the header, inside the body);
(e) a well-formed record that the validation rejects: fixed cases (negative count, enum
    value the contract does not allow, empty id, time out of range, bad timezone, a cycle
    anchor whose local time is year 0, ...) and hypothesis records of the topic's schema;
(f) a good record under a key that is not its workspace id (another workspace, non-UTF-8);
(g) a good record without a key (the broker refuses it on the compacted topics: checked).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from groundwork.ports import free_port
from groundwork.settings import Settings
from schemas.codec import (
    decode_event,
    decode_record,
    encode_record,
    frame,
    strip_logical_types,
)
from schemas.registry import default_registry
from schemas.validation import InvalidEvent
from streams.worker import INPUT_TOPICS
from tests.faults.support import (
    compare_stream,
    duplicates_in,
    expected_of,
    scrape,
    valid_pairs,
    wait_plans_applied,
    worker_counted,
    workload_lines,
)
from tests.faults.worker_support import (
    RawRecord,
    log_crashes,
    produce_tracked,
    worker_health,
)
from tests.schemas.strategies import avro_values
from tests.streams.harness import read_topic, running_worker, wait_caught_up

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SEED = 20_260_307  # random.Random(SEED) and derandomized hypothesis: a failure reproduces
COMPACTED = ("quota.plans", "alerting.settings")  # the broker refuses records without a key
KNOWN_IDS = {v.schema_id for v in default_registry().versions}
UNKNOWN_ID = max(KNOWN_IDS) + 1000

# (e): per topic, changes to a good record that Avro still encodes and validation
# rejects, with the reason code S12 gives them.
Change = Callable[[dict[str, Any]], None]


def _set(**fields: Any) -> Change:
    return lambda r: r.update(fields)


INVALID: dict[str, list[tuple[str, Change]]] = {
    "usage.tokens": [("invalid_value", _set(input_tokens=-1)),
                     ("invalid_value", _set(surface="unknown")),  # readers' default symbol
                     ("invalid_value", _set(provider="open/ai"))],
    "usage.commands": [("empty_id", _set(member_id="")),
                       ("invalid_value", _set(command=""))],
    "usage.schedules": [("empty_id", _set(schedule_id="")),
                        ("time_out_of_range", _set(occurred_at=946_684_799_999))],
    "usage.skills": [("empty_id", _set(event_id="")),
                     ("invalid_value", _set(skill=""))],
    "usage.storage": [("invalid_value", _set(delta_bytes=5, total_bytes=7)),
                      ("missing_field", _set(delta_bytes=None, total_bytes=None)),
                      ("invalid_value", _set(category="unknown"))],
    "usage.api": [("invalid_value", _set(requests=-4)),
                  ("invalid_value", _set(protocol="unknown"))],
    "usage.machines": [("invalid_value", _set(action="unknown")),
                       ("empty_id", _set(machine_id=""))],
    "quota.plans": [("invalid_value", _set(timezone="Mars/Olympus_Mons")),
                    ("invalid_value", lambda r: r["limits"].update(ai_tokens=0)),
                    ("invalid_value", _set(owners=["not-an-email"])),
                    # 0001-01-01T00:00:00Z is year 0 in local time west of UTC: the core's
                    # cycle arithmetic overflowed on it and crashed the agent (fixed in
                    # schemas/validation.py: anchors start at 0001-01-02)
                    ("invalid_value", _set(cycle_anchor=-62_135_596_800_000,
                                           timezone="America/Los_Angeles"))],
    "quota.topups": [("invalid_value", _set(quota="api_requests_per_minute")),
                     ("invalid_value", _set(amount=-1)),
                     ("time_out_of_range", _set(occurred_at=4_102_444_800_000))],  # 2100
    "alerting.settings": [("invalid_value", _set(webhook_secret="not-a-secret")),
                          ("invalid_value", _set(muted=[{"quota": "ai_tokens",
                                                         "threshold": 50}])),
                          ("empty_id", _set(workspace_id=""))],
}


@dataclass(frozen=True)
class Bad:
    kind: str  # a..g
    what: str
    record: RawRecord
    reason: str  # expected dead-letter reason


def _arbitrary_bytes(n: int) -> list[bytes]:
    """n values from hypothesis, derandomized: the same list in every run."""
    found: list[bytes] = []
    ids = [*sorted(KNOWN_IDS), 0, UNKNOWN_ID, 2**32 - 1]
    values = st.one_of(
        st.binary(max_size=300),
        st.builds(frame, st.sampled_from(ids), st.binary(max_size=300)),
    )

    @settings(derandomize=True, max_examples=n, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(values)
    def collect(value: bytes) -> None:
        found.append(value)

    collect()
    return found


def _arbitrary_records(topic: str, n: int) -> list[dict[str, Any]]:
    """n records of ``topic``'s Avro schema with arbitrary field values (hypothesis,
    derandomized): well-formed frames that validation has to judge."""
    found: list[dict[str, Any]] = []
    schema = strip_logical_types(default_registry().current[topic].load())

    @settings(derandomize=True, max_examples=n, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(avro_values(schema))
    def collect(record: dict[str, Any]) -> None:
        found.append(record)

    collect()
    return found


def _oracle(topic: str, key: bytes | None, value: bytes) -> str | None:
    """The reason S5/S12 give these bytes on ``topic`` (None: a valid event)."""
    try:  # the worker's clock: S5's "more than 5 minutes after now" applies
        event = decode_event(value, topic=topic, now_ms=int(time.time() * 1000))
    except InvalidEvent as exc:
        return exc.reason
    if key is None or key.decode(errors="replace") != event.workspace_id:
        return "invalid_value"
    return None


Pick = Callable[[], tuple[bytes, bytes]]


def _flipped(rng: random.Random, topic: str, pick: Pick, tries: int
             ) -> Iterator[tuple[str, RawRecord]]:
    """Good records of ``topic`` with one bit flipped."""
    for _ in range(tries):
        key, value = pick()
        pos = rng.randrange(len(value))
        mutated = value[:pos] + bytes([value[pos] ^ (1 << rng.randrange(8))]) + value[pos + 1:]
        yield f"byte {pos} flipped", (topic, key, mutated)


def _fuzzed(topic: str, pick: Pick, n: int) -> Iterator[tuple[str, RawRecord]]:
    """Well-formed records of ``topic`` with arbitrary values, in a real workspace."""
    for i, record in enumerate(_arbitrary_records(topic, n)):
        key, model = pick()
        record["workspace_id"] = key.decode()
        if i % 2:  # half of them get past the envelope checks
            _, envelope = decode_record(model)
            record.update(event_id=envelope["event_id"] + "x",
                          occurred_at=envelope["occurred_at"])
        yield "hypothesis record", (topic, key, encode_record(topic, record))


def _first_rejected(kind: str, candidates: Iterator[tuple[str, RawRecord]], keep: int
                    ) -> list[Bad]:
    """The first ``keep`` candidates that are no longer a valid event (the ones the
    validation accepts would be counted), each with the reason the oracle gives."""
    out: list[Bad] = []
    for what, record in candidates:
        reason = _oracle(*record)
        if reason is not None:
            out.append(Bad(kind, f"{what}: {reason}", record, reason))
            if len(out) == keep:
                break
    return out


def _bad_records(rng: random.Random, good: dict[str, list[tuple[bytes, bytes]]]
                 ) -> list[Bad]:
    """Every kind of fault on every input topic, from the topic's good (key, value)s."""
    out: list[Bad] = []
    arbitrary = iter(_arbitrary_bytes(8 * len(INPUT_TOPICS)))
    workspaces = sorted({k for items in good.values() for k, _ in items})
    for topic in INPUT_TOPICS:
        items = good[topic]

        def pick(items: list[tuple[bytes, bytes]] = items) -> tuple[bytes, bytes]:
            return items[rng.randrange(len(items))]

        # (a) arbitrary bytes under a real workspace's key, and good records with a byte
        # flipped (kept only when they are no longer a valid event: the oracle says why)
        for _ in range(8):
            key, value = pick()[0], next(arbitrary)
            reason = _oracle(topic, key, value)
            if reason is not None:
                out.append(Bad("a", "arbitrary bytes", (topic, key, value), reason))
        out += _first_rejected("a", _flipped(rng, topic, pick, tries=200), keep=2)
        # (b) a valid body under a schema id nobody registered
        key, value = pick()
        out.append(Bad("b", "unknown schema id", (topic, key, frame(UNKNOWN_ID, value[5:])),
                       "undecodable"))
        # (c) a well-formed event of another topic
        other = rng.choice([t for t in INPUT_TOPICS if t != topic])
        key, value = good[other][rng.randrange(len(good[other]))]
        out.append(Bad("c", f"a {other} event", (topic, key, value), "unknown_type"))
        # (d) cut short: inside the 5-byte header, and inside the body
        key, value = pick()
        out.append(Bad("d", "cut in the header", (topic, key, value[:rng.randrange(1, 5)]),
                       "undecodable"))
        key, value = pick()
        out.append(Bad("d", "cut in the body", (topic, key, value[:rng.randrange(5, len(value))]),
                       "undecodable"))
        # (e) well-formed, invalid
        for reason, change in INVALID[topic]:
            key, value = pick()
            _, record = decode_record(value)
            change(record)
            out.append(Bad("e", reason, (topic, key, encode_record(topic, record)), reason))
        # well-formed records with arbitrary values, in a real workspace: kept when the
        # validation rejects them (the ones it accepts would be counted)
        out += _first_rejected("e", _fuzzed(topic, pick, n=40), keep=4)
        # (f) a key that is not the workspace id: another workspace's, one that is not UTF-8
        key, value = pick()
        out.append(Bad("f", "another workspace's key",
                       (topic, rng.choice([w for w in workspaces if w != key]), value),
                       "invalid_value"))
        out.append(Bad("f", "non-UTF-8 key", (topic, b"\xff\xfe" + key, pick()[1]),
                       "invalid_value"))
        # (g) no key
        out.append(Bad("g", "no key", (topic, None, pick()[1]), "invalid_value"))
    for bad in out:  # every case is what it claims to be
        assert _oracle(*bad.record) == bad.reason, bad
    return out


def _interleave(rng: random.Random, good: list[RawRecord], bad: list[Bad]
                ) -> list[tuple[RawRecord, Bad | None]]:
    """The good records in their order, each bad one inserted at a random place."""
    slots: dict[int, list[Bad]] = {}
    for b in bad:
        slots.setdefault(rng.randrange(len(good) + 1), []).append(b)
    out: list[tuple[RawRecord, Bad | None]] = []
    for i in range(len(good) + 1):
        out += [(b.record, b) for b in slots.get(i, [])]
        if i < len(good):
            out.append((good[i], None))
    return out


def test_bad_bytes_on_every_input_topic_are_dead_lettered_and_good_events_counted(
    meter_settings: Settings, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    lines = workload_lines(seed=SEED % 1000, events=3000, invalid_rate=0.0)
    pairs = valid_pairs(lines)
    good: dict[str, list[tuple[bytes, bytes]]] = {}
    for _, (topic, key, value) in pairs:
        good.setdefault(topic, []).append((key, value))
    assert set(good) == set(INPUT_TOPICS), "the workload must cover every input topic"
    bad = _bad_records(rng, good)
    # Null keys on a compacted topic are refused by the broker, never reach the worker.
    refused = [b for b in bad if b.record[1] is None and b.record[0] in COMPACTED]
    bad = [b for b in bad if b not in refused]

    records: list[RawRecord] = [r for _, r in pairs]
    first = _interleave(rng, [r for r in records if r[0] == "quota.plans"],
                        [b for b in bad if b.record[0] == "quota.plans"])
    second = _interleave(rng, [r for r in records if r[0] != "quota.plans"],
                         [b for b in bad if b.record[0] != "quota.plans"])
    port = free_port()
    log = tmp_path / "worker.log"
    landed_bad: dict[tuple[str, int, int], Bad] = {}

    def produce(part: list[tuple[RawRecord, Bad | None]]) -> None:
        where = produce_tracked(meter_settings, [r for r, _ in part])
        for (_, b), at in zip(part, where, strict=True):
            assert at.error is None, at
            if b is not None:
                landed_bad[(b.record[0], at.partition, at.offset)] = b

    refusals = produce_tracked(meter_settings, [b.record for b in refused], idempotent=False)
    assert refusals and all(r.error for r in refusals), refusals
    with running_worker(meter_settings, log, web_port=port) as proc:
        produce(first)  # plans first (see support.split_plans), bad ones among them
        wait_plans_applied(meter_settings, proc)
        produce(second)
        wait_caught_up(meter_settings, proc=proc, timeout_s=240)
        health = worker_health(port)
        metrics = scrape(port)
        alive = proc.poll() is None

    letters: dict[tuple[str, int, int], dict[str, Any]] = {}
    for _, letter in read_topic(meter_settings, "usage.deadletter", timeout_s=30):
        letters[(letter["source_topic"], letter["partition"], letter["offset"])] = letter
    expected = expected_of([line for line, _ in pairs])
    report = compare_stream(meter_settings, "bad bytes on every input topic", expected, lines,
                            events_in=len(pairs) + len(bad),
                            duplicates_injected=duplicates_in([r for _, r in pairs]),
                            metrics=metrics)
    problems: list[str] = []
    for where, b in sorted(landed_bad.items()):
        got = letters.get(where)
        if got is None:
            problems.append(f"not dead-lettered: {where} {b.kind} {b.what}")
            continue
        if (got["reason"], got["original"]) != (b.reason, b.record[2]) or not got["detail"]:
            problems.append(f"{where} {b.kind} {b.what}: got {got['reason']} "
                            f"{got['original'][:20]!r}, expected {b.reason} {b.record[2][:20]!r}")
    extra = sorted(set(letters) - set(landed_bad))
    problems += [f"dead letter for no bad record: {w} {letters[w]['reason']}" for w in extra]
    report.differed += problems
    kinds = Counter(b.kind for b in landed_bad.values())
    reasons = Counter(b.reason for b in landed_bad.values())
    report.notes += [
        f"bad records: {len(landed_bad)} on {len({w[0] for w in landed_bad})} topics, by kind "
        + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())),
        "by reason " + ", ".join(f"{k} {n}" for k, n in sorted(reasons.items())),
        f"dead letters: {len(letters)} (metric "
        f"{int(metrics.get('meter_worker_dead_lettered_total', -1))}), matching topic, "
        f"partition, offset, reason and bytes: {len(landed_bad) - len(problems)}",
        f"refused by the broker (no key on a compacted topic): {len(refusals)}: "
        + "; ".join(sorted({r.error or '' for r in refusals})),
        f"worker alive: {alive}, /healthz {health[0]} {health[1]}, "
        f"log crash lines: {len(log_crashes(log))}",
    ]
    report.show()
    assert alive and health == (200, {"status": "alive"})
    assert log_crashes(log) == []
    assert report.differed == []
    assert worker_counted(metrics) == expected.counted
    assert int(metrics["meter_worker_deduplicated_total"]) == expected.duplicates
    assert int(metrics["meter_worker_dead_lettered_total"]) == len(landed_bad) + expected.rejected
    assert expected.rejected == 0 and len(letters) == len(landed_bad)
    assert set(kinds) == set("abcdefg") and all(
        {w[0] for w, b in landed_bad.items() if b.kind == k} == set(INPUT_TOPICS)
        for k in "abcdef"), "some kind of fault missed some topic"
    assert report.crossings_expected_exact > 0, "no counter crossing: the test proves nothing"

