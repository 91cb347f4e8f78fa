"""The batch processor between Faust and the core: fencing, outbox, recovery.

Table values are plain bytes in a dict here: the processor is Faust-free on purpose
(the real table is exercised by tests/streams/test_worker.py and tests/faults/).
"""

from __future__ import annotations

import orjson

from schemas.codec import decode_record, encode_event
from schemas.jsonl import parse_line
from streams.processor import BatchProcessor, RawMessage, WorkspaceEntry

NOW = 1_772_532_000_000


def _message(offset: int, raw: dict[str, object], topic: str) -> RawMessage:
    event = parse_line(orjson.dumps(raw), now_ms=None)
    return RawMessage(topic, 0, offset, event.workspace_id.encode(), encode_event(event))


PLAN = _message(0, {"type": "plan", "event_id": "p", "workspace_id": "wa",
                    "occurred_at": "2026-03-01T00:00:00Z", "plan": "team",
                    "cycle_anchor": "2026-03-01T00:00:00Z", "limits": {"ai_tokens": 100},
                    "owners": ["ops@wa.example"]}, "quota.plans")
TOKENS = _message(0, {"type": "tokens", "event_id": "t", "workspace_id": "wa",
                      "occurred_at": "2026-03-03T10:00:00Z", "member_id": "kim",
                      "machine_id": None, "skill": None, "provider": "openai",
                      "model": "gpt-4o", "input_tokens": 100, "output_tokens": 0,
                      "surface": "chat"}, "usage.tokens")


def _crossings(outputs: list[object]) -> list[str]:
    return [decode_record(o.value)[1]["alert_id"] for o in outputs  # type: ignore[attr-defined]
            if o.topic == "quota.thresholds"]  # type: ignore[attr-defined]


def test_a_redelivered_offset_is_fenced_and_counts_once() -> None:
    table: dict[bytes, bytes] = {}
    first = BatchProcessor(table.get, clock_ms=lambda: NOW)
    result = first.process([PLAN, TOKENS])
    table.update({k: v for k, (v, _) in result.writes.items()})
    result.acknowledged()
    again = first.process([TOKENS])
    assert again.outputs == []
    assert first.metrics.redelivered == 1
    assert first.metrics.processed == 2


def test_a_redelivered_offset_writes_its_workspace_again_unchanged() -> None:
    # After a crash the local store can hold a state the changelog never got: the
    # redelivered events are fenced, and the rewrite brings the changelog up to date.
    table: dict[bytes, bytes] = {}
    first = BatchProcessor(table.get, clock_ms=lambda: NOW)
    result = first.process([PLAN, TOKENS])
    result.acknowledged()
    stored = first.process([]).writes  # nothing new: nothing written
    assert stored == {}
    table.update({k: v for k, (v, _) in result.writes.items()})
    after = BatchProcessor(table.get, clock_ms=lambda: NOW)
    again = after.process([TOKENS])
    assert list(again.writes) == [b"wa"]
    rewritten, last = again.writes[b"wa"]
    assert last == TOKENS
    before_crash = WorkspaceEntry.from_bytes(result.writes[b"wa"][0])
    assert WorkspaceEntry.from_bytes(rewritten).fences == before_crash.fences
    assert after.metrics.processed == 0


def test_crossings_not_acknowledged_before_a_crash_are_sent_again_after_recovery() -> None:
    table: dict[bytes, bytes] = {}
    before = BatchProcessor(table.get, clock_ms=lambda: NOW)
    result = before.process([PLAN, TOKENS])
    assert _crossings(result.outputs) == ["wa/2026-03-01T00:00:00Z/ai_tokens/80",
                                          "wa/2026-03-01T00:00:00Z/ai_tokens/95",
                                          "wa/2026-03-01T00:00:00Z/ai_tokens/100"]
    table.update({k: v for k, (v, _) in result.writes.items()})  # state + outbox landed
    # ... and the worker died before the broker acknowledged the crossings.
    after = BatchProcessor(table.get, clock_ms=lambda: NOW)
    redelivered = after.process([TOKENS])  # fenced: not applied again
    assert after.metrics.redelivered == 1
    assert _crossings(redelivered.outputs) == _crossings(result.outputs)


def test_an_acknowledged_outbox_is_not_sent_again() -> None:
    table: dict[bytes, bytes] = {}
    before = BatchProcessor(table.get, clock_ms=lambda: NOW)
    result = before.process([PLAN, TOKENS])
    result.acknowledged()
    later = before.process([_message(1, {"type": "command", "event_id": "c",
                                         "workspace_id": "wa",
                                         "occurred_at": "2026-03-03T11:00:00Z",
                                         "member_id": "kim", "machine_id": "box",
                                         "command": "ls"}, "usage.commands")])
    table.update({k: v for k, (v, _) in later.writes.items()})
    after = BatchProcessor(table.get, clock_ms=lambda: NOW)
    assert _crossings(after.process([TOKENS]).outputs) == []


def test_an_empty_message_on_a_usage_topic_is_dead_lettered_not_dropped() -> None:
    processor = BatchProcessor({}.get, clock_ms=lambda: NOW)
    tombstone = RawMessage("usage.tokens", 0, 7, b"wa", None)
    plan_tombstone = RawMessage("quota.plans", 0, 8, b"wa", None)
    result = processor.process([tombstone, plan_tombstone])
    letters = [decode_record(o.value)[1] for o in result.outputs]
    assert [(d["source_topic"], d["offset"], d["reason"]) for d in letters] == [
        ("usage.tokens", 7, "undecodable")]
    assert processor.metrics.dead_lettered == 1


def test_memory_held_counts_cached_workspaces_and_their_event_ids() -> None:
    table: dict[bytes, bytes] = {}
    processor = BatchProcessor(table.get, clock_ms=lambda: NOW)
    assert processor.held_in_memory() == (0, 0)
    more = [_message(i, {"type": "tokens", "event_id": f"t{i}", "workspace_id": "wa",
                         "occurred_at": "2026-03-03T10:00:00Z", "member_id": "kim",
                         "machine_id": None, "skill": None, "provider": "openai",
                         "model": "gpt-4o", "input_tokens": 1, "output_tokens": 0,
                         "surface": "chat"}, "usage.tokens") for i in range(1, 4)]
    processor.process([PLAN, TOKENS, *more, more[0]])  # the last one a redelivery
    assert processor.held_in_memory() == (1, 5)  # the plan and 4 tokens events (S6)
    processor.drop_partitions([0])
    assert processor.held_in_memory() == (0, 0)
