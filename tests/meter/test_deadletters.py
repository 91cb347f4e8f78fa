"""`meter deadletter list|show|replay` on the real broker with a real worker, and the
pure parts (selection, counting, decoding, --since) without one."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from groundwork.errors import UserError
from groundwork.settings import Settings
from meter.deadletters import Letter, Selection, decoded_original, parse_since, summarize
from schemas.codec import encode_event
from schemas.publisher import Publisher
from schemas.validation import validate
from tests.streams.harness import read_topic, running_worker, wait_caught_up, worker_env

MINUTE = 60_000


def _letter(ref: int, reason: str = "cycle_closed", workspace: str = "w1",
            topic: str = "usage.tokens", seen_at: int = 1_000, original: bytes = b"x"
            ) -> Letter:
    return Letter(0, ref, workspace.encode(), topic, 1, ref, reason, "detail", original,
                  seen_at)


def test_selection_and_counts_by_reason_topic_and_workspace() -> None:
    letters = [_letter(1), _letter(2), _letter(3, workspace="w2"),
               _letter(4, reason="undecodable", topic="usage.api", seen_at=5_000)]
    rows = summarize(letters, {"0:2": [{"deadletter": "0:2"}]})
    assert rows == [("cycle_closed", "usage.tokens", "w1", 2, 1),
                    ("cycle_closed", "usage.tokens", "w2", 1, 0),
                    ("undecodable", "usage.api", "w1", 1, 0)]
    assert [x.offset for x in letters if Selection(reason="cycle_closed",
                                                   workspace="w1").matches(x)] == [1, 2]
    assert [x.offset for x in letters if Selection(since_ms=2_000).matches(x)] == [4]
    assert [x.offset for x in letters if Selection(topic="usage.api").matches(x)] == [4]


def test_since_takes_a_time_epoch_ms_or_an_age() -> None:
    assert parse_since("2026-12-05T10:00:00Z") == 1_796_464_800_000
    assert parse_since("1796464800000") == 1_796_464_800_000
    assert parse_since("2h", now_ms=10 * 3_600_000) == 8 * 3_600_000
    with pytest.raises(UserError, match="--since"):
        parse_since("yesterday")


def test_the_original_is_decoded_where_possible() -> None:
    event = validate("api", {"type": "api", "workspace_id": "w1", "event_id": "e1",
                             "occurred_at": 1_796_464_800_000, "protocol": "rest"})
    assert decoded_original(_letter(1, original=encode_event(event)))["event"]["event_id"] == "e1"
    assert decoded_original(_letter(1, original=b'{"type": "api"}')) == {"json": {"type": "api"}}
    assert decoded_original(_letter(1, original=b"plain words")) == {"text": "plain words"}
    assert decoded_original(_letter(1, original=b"\x00\xff")) == {"base64": "AP8="}


def _meter(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = worker_env(settings, 0)
    result = subprocess.run([sys.executable, "-m", "meter.cli_entry", *args], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result


def _tokens_used(settings: Settings, workspace: str) -> int:
    states = [r for _, r in read_topic(settings, "quota.state")
              if r["workspace_id"] == workspace]
    latest = max(states, key=lambda r: r["version"])
    return next(int(q["used"]) for q in latest["quotas"] if q["quota"] == "ai_tokens")


def _letters(settings: Settings) -> list[dict[str, Any]]:
    return [r for _, r in read_topic(settings, "usage.deadletter")]


def test_a_dead_letter_replayed_after_its_cause_is_gone_counts_once(
        meter_settings: Settings, tmp_path: Path) -> None:
    """A producer whose clock ran 5 min 8 s ahead: its event is dead-lettered as
    time_out_of_range (S5). Once its time has come (the fix), a replay re-publishes the
    original bytes and the worker counts them; replaying again changes nothing. A
    cycle_closed letter, which no fix reopens, replays harmlessly."""
    settings = meter_settings
    now = int(time.time() * 1000)
    tokens = {"type": "tokens", "workspace_id": "w1", "member_id": "m1", "machine_id": None,
              "skill": None, "provider": "openai", "model": "gpt-4o", "output_tokens": 0,
              "surface": "chat"}
    with Publisher(settings) as publisher:
        publisher.publish({"type": "plan", "workspace_id": "w1", "occurred_at": now - MINUTE,
                           "plan": "team", "cycle_anchor": now - 10 * MINUTE,
                           "timezone": "UTC", "limits": {"ai_tokens": 1_000_000},
                           "owners": ["ops@w1.example"]})
        publisher.publish({**tokens, "input_tokens": 100, "occurred_at": now})
        # w2: an event of a cycle long closed (S4), after one of the current cycle
        publisher.publish({"type": "plan", "workspace_id": "w2", "occurred_at": now - MINUTE,
                           "plan": "team", "cycle_anchor": now - 10 * MINUTE,
                           "timezone": "UTC", "limits": {"ai_tokens": 1_000_000},
                           "owners": ["ops@w2.example"]})
        publisher.publish({**tokens, "workspace_id": "w2", "input_tokens": 7,
                           "occurred_at": now})
        publisher.publish({**tokens, "workspace_id": "w2", "input_tokens": 70,
                           "occurred_at": now - 70 * 24 * 60 * MINUTE})
    with running_worker(settings, tmp_path / "worker.log") as worker:
        wait_caught_up(settings, proc=worker)
        # Published once the worker is running and caught up, so that its 8 s past the
        # 5 min allowed are spent on this one event and not on the worker's start (a
        # start slower than 8 s on a loaded machine would count it instead).
        ahead = int(time.time() * 1000) + 5 * MINUTE + 8_000
        with Publisher(settings) as publisher:
            # validated without a clock (as a producer with a wrong one would)
            publisher.publish_valid(validate("tokens", {**tokens, "input_tokens": 50,
                                                        "event_id": "ahead-1",
                                                        "occurred_at": ahead}, now_ms=None))
        wait_caught_up(settings, proc=worker)
        assert _tokens_used(settings, "w1") == 100
        assert _tokens_used(settings, "w2") == 7
        assert sorted(r["reason"] for r in _letters(settings)) == [
            "cycle_closed", "time_out_of_range"]
        listed = _meter(settings, "deadletter", "list").stdout
        assert "time_out_of_range" in listed and "usage.tokens" in listed
        [shown] = [orjson.loads(line) for line in _meter(
            settings, "deadletter", "show", "--reason", "time_out_of_range").stdout.splitlines()]
        assert shown["original"]["event"]["event_id"] == "ahead-1"
        assert shown["replayed_at"] == []

        while time.time() * 1000 < ahead - 5 * MINUTE + 1_000:  # the producer's time came
            time.sleep(0.2)
        first = _meter(settings, "deadletter", "replay", "--reason", "time_out_of_range")
        assert "re-published 1 dead letter(s)" in first.stderr
        wait_caught_up(settings, proc=worker)
        assert _tokens_used(settings, "w1") == 150
        assert len(_letters(settings)) == 2  # counted, not dead-lettered again

        second = _meter(settings, "deadletter", "replay", "--reason", "time_out_of_range")
        assert "re-published 0 dead letter(s)" in second.stderr
        assert "skipped 1 replayed before" in second.stderr
        forced = _meter(settings, "deadletter", "replay", "--reason", "time_out_of_range",
                        "--again")
        assert "re-published 1 dead letter(s)" in forced.stderr
        wait_caught_up(settings, proc=worker)
        assert _tokens_used(settings, "w1") == 150  # S6: the repeat was dropped
        assert len(_letters(settings)) == 2

        # A closed cycle never reopens (S12): replayed, w2's letter comes back as a new
        # dead letter, and no total moves.
        closed = _meter(settings, "deadletter", "replay", "--reason", "cycle_closed")
        assert "re-published 1 dead letter(s)" in closed.stderr
        wait_caught_up(settings, proc=worker)
        assert (_tokens_used(settings, "w1"), _tokens_used(settings, "w2")) == (150, 7)
        assert sorted(r["reason"] for r in _letters(settings)) == [
            "cycle_closed", "cycle_closed", "time_out_of_range"]

        [shown] = [orjson.loads(line) for line in _meter(
            settings, "deadletter", "show", "--reason", "time_out_of_range").stdout.splitlines()]
        assert len(shown["replayed_at"]) == 2
        rows = [line for line in _meter(settings, "deadletter", "list").stdout.splitlines()
                if "time_out_of_range" in line]
        cells = [cell.strip() for cell in rows[0].split("│") if cell.strip()]
        assert cells == ["time_out_of_range", "usage.tokens", "w1", "1", "1"], rows


def test_records_that_are_not_dead_letters_are_named_not_passed_over(
        meter_settings: Settings) -> None:
    """Something else wrote to usage.deadletter (a tool, a wrong producer): `list` still
    counts the real letters and says where the unreadable records lie."""
    from confluent_kafka import Producer

    from groundwork.kafka import producer_config

    settings = meter_settings
    producer = Producer(producer_config(settings))
    producer.produce(settings.topic("usage.deadletter"), key=b"w1", value=b"not avro",
                     partition=0)
    producer.flush(30)
    result = _meter(settings, "deadletter", "list")
    assert "1 record(s) on" in result.stderr and "(PARTITION:OFFSET 0:0)" in result.stderr
    total = [line for line in result.stdout.splitlines() if "total" in line]
    assert [c.strip() for c in total[0].split("│") if c.strip()] == ["total", "0", "0"]
