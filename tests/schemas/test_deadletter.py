"""Dead letters: source topic, partition, offset, reason, detail, original bytes, seen_at."""

from __future__ import annotations

import pytest

from schemas.codec import encode_event
from schemas.deadletter import (
    DeadLetter,
    dead_letter,
    dead_letter_to_json,
    deadletter_record,
    decode_dead_letter,
    decode_or_dead_letter,
)
from schemas.events import CommandEvent
from schemas.jsonl import parse_line

GOOD = parse_line(b'{"type": "command", "event_id": "e1", "workspace_id": "wz", '
                  b'"occurred_at": "2025-05-05T05:05:05Z", "member_id": "kim", '
                  b'"machine_id": "m1", "command": "ls"}', now_ms=None)


def test_a_valid_record_decodes_to_its_event() -> None:
    outcome = decode_or_dead_letter(encode_event(GOOD), source_topic="t.usage.commands",
                                    partition=1, offset=7)
    assert outcome == GOOD
    assert isinstance(outcome, CommandEvent)


def test_bad_bytes_become_a_dead_letter_with_the_original_bytes() -> None:
    raw = b"\x07not avro at all"
    outcome = decode_or_dead_letter(raw, source_topic="t.usage.commands", partition=1,
                                    offset=7, key=b"wz", seen_at_ms=1746421505000)
    assert isinstance(outcome, DeadLetter)
    assert (outcome.key, outcome.reason) == (b"wz", "undecodable")
    assert decode_dead_letter(outcome.value) == {
        "source_topic": "t.usage.commands", "partition": 1, "offset": 7,
        "reason": "undecodable", "detail": "magic byte is 7, expected 0 (Confluent framing)",
        "original": raw, "seen_at": 1746421505000,
    }


def test_a_contract_violation_keeps_its_reason_and_a_tombstone_is_undecodable() -> None:
    stale = GOOD._replace(occurred_at=946684799999)
    outcome = decode_or_dead_letter(encode_event(stale), source_topic="usage.commands",
                                    partition=0, offset=0)
    assert isinstance(outcome, DeadLetter) and outcome.reason == "time_out_of_range"
    tombstone = decode_or_dead_letter(None, source_topic="usage.commands", partition=0,
                                      offset=1)
    assert isinstance(tombstone, DeadLetter) and tombstone.reason == "undecodable"


def test_the_core_dead_letters_cycle_closed_events_and_people_see_base64() -> None:
    raw = encode_event(GOOD)
    letter = dead_letter("cycle_closed", "cycle 2025-03-01T00:00:00Z is closed", raw,
                         source_topic="usage.commands", partition=2, offset=9, seen_at_ms=5)
    shown = dead_letter_to_json(decode_dead_letter(letter.value))
    assert shown["reason"] == "cycle_closed"
    assert isinstance(shown["original"], str)


def test_only_s12_reasons_are_accepted() -> None:
    with pytest.raises(ValueError, match="reason"):
        deadletter_record("usage.api", 0, 0, "because", "", b"", 0)
