"""The worker's transactions in miniature (tests/streams/memory.py): the batch processor fed
by an in-memory source, its transactions committed or aborted by an in-memory sink over a
real local store. What the broker tests (test_worker.py, test_worker_aborts.py, faults/)
show over minutes, here over a workload in seconds: batching does not change the result,
an aborted transaction leaves no trace (exactly-once), duplicates count once (S6), bad
records are dead-lettered, and a restarted processor goes on from the store."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.core.replay import Replay
from streams.idstore import IdStore
from streams.localstore import LocalStore
from streams.processor import IDS_CHANGELOG, WORKSPACES_CHANGELOG, BatchProcessor
from tests.faults.support import workload_lines
from tests.streams.core.builders import plan, tokens
from tests.streams.harness import differences, flatten_usage, latest_aggregates
from tests.streams.memory import NOW_MS, MemorySink, MemorySource, run

# 30 workspaces over 7 days, 2 % sent twice, a few invalid lines, four driven across
# their thresholds (tests/faults/support.py)
LINES = workload_lines(seed=11, events=2_500, workspaces=30)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    s = LocalStore(tmp_path / "store")
    yield s
    s.close()


@pytest.fixture(scope="module")
def in_batches_of_7(tmp_path_factory: pytest.TempPathFactory) -> MemorySink:
    """The workload streamed in batches of 7, no transaction aborted."""
    store = LocalStore(tmp_path_factory.mktemp("in_batches_of_7") / "store")
    sink = stream(store, LINES, 7)
    store.close()
    return sink


def processor(store: LocalStore) -> BatchProcessor:
    return BatchProcessor(store, IdStore(store), clock_ms=lambda: NOW_MS)


def stream(store: LocalStore, lines: list[bytes], batch_size: int,
           abort_every: int | None = None) -> MemorySink:
    sink = MemorySink(store)
    run(processor(store), MemorySource.of(lines, batch_size=batch_size), sink, abort_every)
    return sink


def aggregates(sink: MemorySink) -> dict[tuple[Any, ...], int | None]:
    """Every (workspace, cycle, dimension, key, metric) at its latest version; cycles by
    their start in whole seconds, as usage.json names them."""
    return {(k[0], k[1] // 1000 * 1000, *k[2:]): v
            for k, v in latest_aggregates(sink.records("usage.aggregates")).items()}


def quota_states(sink: MemorySink) -> dict[bytes, dict[str, Any]]:
    """quota.state as a gateway reads it in the end, without the version (it counts
    states produced, one per transaction that changed the workspace)."""
    return {key: {f: v for f, v in state.items() if f != "version"}
            for key, state in sink.latest("quota.state").items()}


def alert_ids(sink: MemorySink) -> Counter[str]:
    return Counter(c["alert_id"] for c in sink.records("quota.thresholds"))


def versions_grow(sink: MemorySink) -> bool:
    last: dict[bytes, int] = {}
    for c in sink.outputs:
        if c.topic == "quota.state":
            if c.value["version"] <= last.get(c.key, -1):
                return False
            last[c.key] = c.value["version"]
    return True


def test_batches_of_1_7_and_1000_commit_what_meter_replay_computes(
    tmp_path: Path, in_batches_of_7: MemorySink,
) -> None:
    crossings: list[dict[str, Any]] = []
    replay = Replay(now_ms=None, on_crossing=lambda c: crossings.append(c.to_record()),
                    on_deadletter=lambda _: None)
    replay.feed(LINES)
    expected = flatten_usage(replay.finish())
    sinks = {7: in_batches_of_7}
    for size in (1, 1000):
        store = LocalStore(tmp_path / f"store{size}")
        sinks[size] = stream(store, LINES, size)
        store.close()
    one = sinks[1]
    assert one.transactions > sinks[7].transactions > sinks[1000].transactions
    assert differences(aggregates(one), expected) == []
    assert alert_ids(one) == Counter(c["alert_id"] for c in crossings)
    assert len(alert_ids(one)) >= 12  # the driven quotas crossed 80, 95 and 100 %
    for size in (7, 1000):
        assert aggregates(sinks[size]) == aggregates(one)
        assert quota_states(sinks[size]) == quota_states(one)
        assert alert_ids(sinks[size]) == alert_ids(one)
        assert sinks[size].offsets == one.offsets
    assert len(quota_states(one)) == 30
    # nothing the edge accepted was dead-lettered; the edge refused what the replay rejects
    assert one.records("usage.deadletter") == []
    assert replay.stats.rejected == MemorySource.of(LINES).rejected_lines > 0


@pytest.mark.parametrize("abort_every", [2, 3, 5])
def test_an_aborted_transaction_read_again_commits_what_no_abort_commits(
    tmp_path: Path, abort_every: int, in_batches_of_7: MemorySink,
) -> None:
    clean = in_batches_of_7
    store = LocalStore(tmp_path / "aborting")
    aborting = stream(store, LINES, 7, abort_every)
    assert aborting.aborted >= clean.transactions // abort_every
    assert aggregates(aborting) == aggregates(clean)
    assert quota_states(aborting) == quota_states(clean)
    # every threshold crossing once, none from an aborted transaction
    assert alert_ids(aborting) == alert_ids(clean)
    assert set(alert_ids(aborting).values()) == {1}
    assert versions_grow(aborting)
    assert aborting.offsets == clean.offsets == MemorySource.of(LINES).ends()
    # the local store's changelog offsets are those of the committed changelog records
    for (changelog, partition), end in aborting.changelog_ends.items():
        assert store.changelog_offset(partition, changelog) == end
    assert {c for c, _ in aborting.changelog_ends} == {WORKSPACES_CHANGELOG, IDS_CHANGELOG}
    store.close()


def test_a_duplicate_event_id_in_a_later_batch_counts_once(store: LocalStore) -> None:
    source = MemorySource.of([plan("2026-03-01T00:00:00Z", ws="wa", ai_tokens=100),
                              tokens("2026-03-02T10:00:00Z", 60, ws="wa", event_id="t1"),
                              tokens("2026-03-02T11:00:00Z", 10, ws="wa", event_id="t2"),
                              tokens("2026-03-02T10:00:00Z", 60, ws="wa", event_id="t1")],
                             batch_size=1)
    sink = MemorySink(store)
    run(processor(store), source, sink)
    assert sink.transactions == 4
    (state,) = sink.latest("quota.state").values()
    assert {q["quota"]: q["used"] for q in state["quotas"]}["ai_tokens"] == 70
    assert aggregates(sink)[("wa", 1772323200000, "totals", "", "ai_tokens")] == 70
    assert alert_ids(sink) == Counter()  # 70 of 100: no threshold, and 130 would be two


def test_a_bad_record_is_dead_lettered_with_its_bytes_and_the_stream_goes_on(
    store: LocalStore,
) -> None:
    source = MemorySource(batch_size=2)
    source.publish(plan("2026-03-01T00:00:00Z", ws="wa", ai_tokens=100))
    bad = source.append("usage.tokens", b"wa", b"\x00not avro")
    source.publish(tokens("2026-03-02T10:00:00Z", 80, ws="wa"))
    sink = MemorySink(store)
    run(processor(store), source, sink)
    (letter,) = sink.records("usage.deadletter")
    assert (letter["source_topic"], letter["partition"], letter["offset"]) == (
        "usage.tokens", bad.partition, 0)
    assert (letter["reason"], letter["original"]) == ("undecodable", b"\x00not avro")
    assert [c.key for c in sink.outputs if c.topic == "usage.deadletter"] == [b"wa"]
    assert sink.offsets[("usage.tokens", bad.partition)] == 2  # past it, and the event after
    assert list(alert_ids(sink)) == ["wa/2026-03-01T00:00:00Z/ai_tokens/80"]


def test_a_processor_rebuilt_from_the_local_store_goes_on_exactly(
    tmp_path: Path, in_batches_of_7: MemorySink,
) -> None:
    whole = in_batches_of_7
    half = len(LINES) // 2
    store = LocalStore(tmp_path / "restarted")
    source = MemorySource.of(LINES[:half], batch_size=7)
    sink = MemorySink(store)
    run(processor(store), source, sink)
    before = len(sink.outputs)
    # a restart: the store is closed and opened again, the processor built anew (its
    # workspaces and S6 ids come from the store); the events go on, with some of the
    # first half's sent again (duplicates across the restart)
    store.close()
    sink.store = store = LocalStore(tmp_path / "restarted")
    source.extend(LINES[half - 50:half] + LINES[half:])
    run(processor(store), source, sink)
    assert len(sink.outputs) > before
    assert aggregates(sink) == aggregates(whole)
    assert quota_states(sink) == quota_states(whole)
    assert alert_ids(sink) == alert_ids(whole)
    assert versions_grow(sink)  # across the restart too
    store.close()
