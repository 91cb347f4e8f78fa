"""The batch processor between the worker's Kafka loop and the core (streams/processor.py):
what one batch's transaction holds, what the local store gets after a commit, and that an
aborted batch leaves no trace. Kafka-free on purpose; the local store is a real RocksDB
(the loop itself is exercised by tests/streams/test_worker.py and tests/faults/)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.aggregates import values_of
from schemas.codec import decode_record, encode_event, encode_record
from schemas.jsonl import parse_line
from streams.idstore import IdStore
from streams.localstore import LocalStore
from streams.processor import (
    IDS_CHANGELOG,
    WORKSPACES_CHANGELOG,
    BatchProcessor,
    BatchResult,
    Incoming,
    WorkspaceEntry,
    decode_incoming,
)

NOW = 1_772_532_000_000


def incoming(offset: int, raw: dict[str, Any], topic: str, partition: int = 1) -> Incoming:
    event = parse_line(orjson.dumps(raw), now_ms=None)
    return decode_incoming(topic, partition, offset, event.workspace_id.encode(),
                           encode_event(event), NOW)


PLAN = incoming(0, {"type": "plan", "event_id": "p", "workspace_id": "wa",
                    "occurred_at": "2026-03-01T00:00:00Z", "plan": "team",
                    "cycle_anchor": "2026-03-01T00:00:00Z", "limits": {"ai_tokens": 100},
                    "owners": ["ops@wa.example"]}, "quota.plans")


def tokens(offset: int, event_id: str = "t", n: int = 100) -> Incoming:
    return incoming(offset, {"type": "tokens", "event_id": event_id, "workspace_id": "wa",
                             "occurred_at": "2026-03-03T10:00:00Z", "member_id": "kim",
                             "machine_id": None, "skill": None, "provider": "openai",
                             "model": "gpt-4o", "input_tokens": n, "output_tokens": 0,
                             "surface": "chat"}, "usage.tokens")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    s = LocalStore(tmp_path / "store")
    yield s
    s.close()


def processor(store: LocalStore) -> BatchProcessor:
    return BatchProcessor(store, IdStore(store), clock_ms=lambda: NOW)


def commit(store: LocalStore, proc: BatchProcessor, result: BatchResult) -> None:
    batch = store.batch()
    proc.write_committed(result, batch)
    store.write(batch)


def by_topic(result: BatchResult) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for o in result.outputs:
        out.setdefault(o.topic, []).append(o)
    return out


def alert_ids(result: BatchResult) -> list[str]:
    return [decode_record(o.value)[1]["alert_id"] for o in by_topic(result).get(
        "quota.thresholds", [])]


def test_one_batch_holds_every_output_of_its_transaction(store: LocalStore) -> None:
    result = processor(store).process([PLAN, tokens(0)])
    topics = by_topic(result)
    assert alert_ids(result) == ["wa/2026-03-01T00:00:00Z/ai_tokens/80",
                                 "wa/2026-03-01T00:00:00Z/ai_tokens/95",
                                 "wa/2026-03-01T00:00:00Z/ai_tokens/100"]
    # one aggregates record per changed (workspace, cycle), one state and one changelog
    # record per changed workspace, the S6 ids in their own changelog
    assert [len(topics[t]) for t in ("usage.aggregates", "quota.state", WORKSPACES_CHANGELOG,
                                     IDS_CHANGELOG)] == [1, 1, 1, 2]
    aggregate = decode_record(topics["usage.aggregates"][0].value)[1]
    values = {(d, k, m): v for d, k, m, v in values_of(aggregate)}
    assert values[("totals", "", "ai_tokens")] == 100
    state = decode_record(topics["quota.state"][0].value)[1]
    assert state["version"] > aggregate["version"]
    # co-partitioned: every output goes to the partition its input came from
    assert {o.partition for o in result.outputs} == {1}
    assert result.offsets == {("quota.plans", 1): 1, ("usage.tokens", 1): 1}
    # the workspace's state holds no event id (S6 ids are in their own store)
    assert b'"t"' not in topics[WORKSPACES_CHANGELOG][0].value


def test_a_committed_batch_is_read_back_from_the_store_with_its_ids(store: LocalStore) -> None:
    first = processor(store)
    commit(store, first, first.process([PLAN, tokens(0)]))
    # a new process (a restart): the workspace and its ids come from the store
    second = processor(store)
    result = second.process([tokens(1, n=5), tokens(2, event_id="t2", n=5)])
    assert result.counts.deduplicated == 1  # "t" again under a new offset: S6
    state = decode_record(by_topic(result)["quota.state"][0].value)[1]
    assert {q["quota"]: q["used"] for q in state["quotas"]}["ai_tokens"] == 105


def test_an_aborted_batch_leaves_memory_and_store_as_they_were(store: LocalStore) -> None:
    proc = processor(store)
    commit(store, proc, proc.process([PLAN]))
    aborted = proc.process([tokens(0)])
    proc.abort()
    again = proc.process([tokens(0)])  # read again after the abort: the same outputs
    assert alert_ids(again) == alert_ids(aborted) != []
    assert [o.value for o in by_topic(again)[IDS_CHANGELOG]] == [
        o.value for o in by_topic(aborted)[IDS_CHANGELOG]]


def test_an_offset_at_or_below_the_fence_is_counted_and_its_partition_reported(
    store: LocalStore,
) -> None:
    proc = processor(store)
    commit(store, proc, proc.process([PLAN, tokens(5)]))
    result = proc.process([tokens(5, event_id="other")])
    assert result.fenced == {1}
    assert result.counts.fence_violations == 1
    assert "quota.state" not in by_topic(result)  # nothing was applied


def test_an_event_the_core_rejects_is_dead_lettered_with_its_original_bytes(
    store: LocalStore,
) -> None:
    proc = processor(store)
    proc.process([PLAN, tokens(0)])
    late = incoming(1, {"type": "command", "event_id": "old", "workspace_id": "wa",
                        "occurred_at": "2025-11-03T10:00:00Z", "member_id": "kim",
                        "machine_id": "m1", "command": "ls"}, "usage.commands")
    (letter,) = by_topic(proc.process([late]))["usage.deadletter"]
    record = decode_record(letter.value)[1]
    assert (record["reason"], record["original"]) == ("cycle_closed", late.value)


def test_rejected_records_become_dead_letters_with_their_bytes(store: LocalStore) -> None:
    proc = processor(store)
    bad = decode_incoming("usage.commands", 0, 7, b"wa", b"not avro", NOW)
    tombstone = decode_incoming("quota.plans", 0, 8, b"wa", None, NOW)
    wrong_key = decode_incoming("usage.tokens", 0, 9, b"someone-else",
                                encode_record("usage.tokens", decode_record(
                                    encode_event(parse_line(orjson.dumps({
                                        "type": "tokens", "event_id": "x", "workspace_id": "wa",
                                        "occurred_at": "2026-03-03T10:00:00Z",
                                        "member_id": "kim", "machine_id": None, "skill": None,
                                        "provider": "openai", "model": "gpt-4o",
                                        "input_tokens": 1, "output_tokens": 0,
                                        "surface": "chat"}), now_ms=None)))[1]), NOW)
    result = proc.process([bad, tombstone, wrong_key])
    letters = [decode_record(o.value)[1] for o in by_topic(result)["usage.deadletter"]]
    assert [(d["reason"], d["offset"], d["original"]) for d in letters] == [
        ("undecodable", 7, b"not avro"), ("invalid_value", 9, wrong_key.value)]
    assert result.offsets == {("usage.commands", 0): 8, ("quota.plans", 0): 9,
                              ("usage.tokens", 0): 10}
    assert result.counts.dead_lettered == 2


def test_entry_round_trip_keeps_fences_and_state(store: LocalStore) -> None:
    proc = processor(store)
    result = proc.process([PLAN, tokens(3)])
    (value,) = result.entries.values()
    ids = IdStore(store)
    entry = WorkspaceEntry.from_bytes(value, lambda state: ids.of(1, b"wa", state))
    assert entry.fences == {"quota.plans": 0, "usage.tokens": 3}
    assert entry.to_bytes() == value
