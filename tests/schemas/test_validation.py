"""Validation (S5, S12): which inputs are events, and the stable reason code of every fault.

The shared acceptance case ``invalid_events`` pins the code of each kind of fault;
the other acceptance cases must be accepted line by line.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import (
    AlertSettingsEvent,
    ApiEvent,
    ForecastOptIn,
    Limits,
    Mute,
    PlanEvent,
    StorageEvent,
    TokensEvent,
    TopupEvent,
)
from schemas.jsonl import event_to_json, parse_line
from schemas.validation import REASONS, InvalidEvent, parse_rfc3339_ms, validate

MAY_5 = 1746421505000  # 2025-05-05T05:05:05Z


def good(type_name: str, **changes: Any) -> dict[str, Any]:
    """A valid JSON lines object of each type; `changes` set (or, with ..., remove) fields."""
    base: dict[str, dict[str, Any]] = {
        "tokens": {"member_id": "kim", "machine_id": "m1", "skill": None, "provider": "openai",
                   "model": "gpt-4o", "input_tokens": 5, "output_tokens": 6, "surface": "chat"},
        "command": {"member_id": "kim", "machine_id": "m1", "command": "ls"},
        "schedule_run": {"member_id": "kim", "schedule_id": "nightly", "machine_id": None},
        "skill": {"member_id": "kim", "skill": "web-search", "machine_id": None,
                  "cache_hit": True},
        "storage": {"category": "transcripts", "delta_bytes": -10},
        "api": {"member_id": None, "protocol": "rest", "requests": 3},
        "machine": {"machine_id": "m1", "action": "registered"},
        "plan": {"plan": "team", "cycle_anchor": "2025-05-05T00:00:00Z", "timezone": "UTC",
                 "limits": {"ai_tokens": 1000}, "owners": ["ops@wz.example"]},
        "topup": {"quota": "ai_tokens", "amount": 10},
        "alert_settings": {"email": True},
    }
    obj: dict[str, Any] = {"type": type_name, "event_id": "e1", "workspace_id": "wz",
                           "occurred_at": "2025-05-05T05:05:05Z", **base[type_name]}
    for key, value in changes.items():
        if value is ...:
            obj.pop(key, None)
        else:
            obj[key] = value
    return obj


def reason_of(obj: dict[str, Any], now_ms: int | None = None) -> tuple[str, str | None]:
    with pytest.raises(InvalidEvent) as info:
        parse_line(orjson.dumps(obj), now_ms=now_ms)
    return info.value.reason, info.value.field


# --- the shared acceptance cases ---------------------------------------------------------


def test_invalid_events_case_gives_the_expected_reason_per_line(acceptance_dir: Path) -> None:
    case = acceptance_dir / "invalid_events"
    expected = {
        row["line"]: row["reason"]
        for row in map(json.loads, (case / "expected_deadletter.jsonl").read_text().splitlines())
    }
    got: dict[int, str] = {}
    for number, raw in enumerate((case / "events.jsonl").read_bytes().splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            parse_line(raw, now_ms=None)
        except InvalidEvent as exc:
            got[number] = exc.reason
            assert exc.detail, f"line {number} has no detail"
    assert got == expected


def test_every_line_of_the_other_acceptance_cases_is_valid(acceptance_dir: Path) -> None:
    files = [p for p in acceptance_dir.glob("*/events.jsonl") if p.parent.name != "invalid_events"]
    assert files
    for path in files:
        for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
            if raw.strip():
                event = parse_line(raw, now_ms=None)
                assert event.event_id, f"{path}:{number}"


# --- one test per reason code --------------------------------------------------------------


def test_bad_json_is_undecodable() -> None:
    for raw in (b'{"type": "command", "event_id"', b"not json", b"\xff\xfe", b"[1, 2]", b"7"):
        with pytest.raises(InvalidEvent) as info:
            parse_line(raw, now_ms=None)
        assert info.value.reason == "undecodable"


def test_unknown_or_missing_type() -> None:
    assert reason_of(good("command", type="gpu_minutes")) == ("unknown_type", "type")
    assert reason_of(good("command", type=...)) == ("missing_field", "type")
    assert reason_of(good("command", type=3)) == ("wrong_type", "type")
    with pytest.raises(InvalidEvent) as info:
        validate("gpu_minutes", {})
    assert info.value.reason == "unknown_type"


@pytest.mark.parametrize(
    ("type_name", "field"),
    [("tokens", "model"), ("tokens", "surface"), ("command", "command"),
     ("schedule_run", "schedule_id"), ("skill", "cache_hit"), ("machine", "action"),
     ("plan", "owners"), ("plan", "limits"), ("plan", "cycle_anchor"), ("plan", "plan"),
     ("topup", "amount"), ("topup", "quota"), ("api", "protocol"), ("storage", "category"),
     ("command", "event_id"), ("command", "workspace_id"), ("command", "occurred_at")],
)
def test_a_required_field_left_out_is_missing_field(type_name: str, field: str) -> None:
    assert reason_of(good(type_name, **{field: ...})) == ("missing_field", field)


def test_storage_with_neither_reading_is_missing_field() -> None:
    assert reason_of(good("storage", delta_bytes=...))[0] == "missing_field"
    assert reason_of(good("storage", delta_bytes=None, total_bytes=None))[0] == "missing_field"


@pytest.mark.parametrize(
    ("type_name", "field", "value"),
    [("tokens", "input_tokens", "100"), ("tokens", "output_tokens", 1.0),
     ("tokens", "output_tokens", True), ("skill", "cache_hit", "yes"), ("skill", "cache_hit", 1),
     ("command", "member_id", 7), ("command", "machine_id", None), ("tokens", "machine_id", 5),
     ("tokens", "model", None), ("command", "occurred_at", 1.5e12),
     ("command", "occurred_at", True), ("command", "occurred_at", None),
     ("plan", "limits", [1]), ("plan", "owners", "ops@x.example"), ("plan", "owners", [1]),
     ("plan", "limits", {"ai_tokens": "10"}), ("plan", "limits", {"ai_tokens": True}),
     ("plan", "timezone", 5), ("alert_settings", "email", "yes"),
     ("alert_settings", "muted", {"quota": "ai_tokens"}), ("alert_settings", "muted", ["x"]),
     ("alert_settings", "webhook_url", 5), ("alert_settings", "forecasts", {"quota": "x"}),
     ("alert_settings", "forecasts", ["ai_tokens"]),
     ("alert_settings", "forecasts", [{"quota": "ai_tokens", "lead_days": "3"}]),
     ("alert_settings", "muted_forecasts", "ai_tokens"), ("api", "requests", None),
     ("api", "requests", "1"),
     ("storage", "delta_bytes", "10"), ("topup", "amount", 2.5), ("machine", "action", 1)],
)
def test_a_wrongly_typed_field_is_wrong_type(type_name: str, field: str, value: Any) -> None:
    assert reason_of(good(type_name, **{field: value})) == ("wrong_type", field)


@pytest.mark.parametrize(
    ("type_name", "field", "value"),
    [("tokens", "input_tokens", -5), ("api", "requests", -1), ("storage", "total_bytes", -1),
     ("topup", "amount", -1), ("tokens", "output_tokens", 2**63)],
)
def test_a_negative_count_is_invalid_value(type_name: str, field: str, value: Any) -> None:
    changes: dict[str, Any] = {field: value}
    if field == "total_bytes":
        changes["delta_bytes"] = ...
    assert reason_of(good(type_name, **changes)) == ("invalid_value", field)


@pytest.mark.parametrize(
    ("type_name", "changes", "field"),
    [
        ("tokens", {"surface": "email"}, "surface"),
        ("tokens", {"provider": "open/ai"}, "provider"),
        ("tokens", {"model": ""}, "model"),
        ("storage", {"category": "photos"}, "category"),
        ("storage", {"total_bytes": 100}, "total_bytes"),
        ("api", {"protocol": "soap"}, "protocol"),
        ("machine", {"action": "Registered"}, "action"),
        ("command", {"occurred_at": "2025-05-05T05:11:00"}, "occurred_at"),
        ("command", {"occurred_at": "2025-05-05"}, "occurred_at"),
        ("command", {"occurred_at": "2025-02-30T00:00:00Z"}, "occurred_at"),
        ("command", {"occurred_at": "2025-05-05T24:00:00Z"}, "occurred_at"),
        ("command", {"occurred_at": "2025-05-05 05:11:00Z"}, "occurred_at"),
        ("command", {"occurred_at": "20250505T051100Z"}, "occurred_at"),
        ("command", {"occurred_at": "2025-05-05T05:11:00+0100"}, "occurred_at"),
        ("plan", {"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ("plan", {"timezone": "../etc/passwd"}, "timezone"),
        ("plan", {"cycle_anchor": "2025-05-05"}, "cycle_anchor"),
        ("plan", {"cycle_anchor": "soon"}, "cycle_anchor"),
        ("plan", {"limits": {"gpu_minutes": 5}}, "limits"),
        ("plan", {"limits": {"ai_tokens": 0}}, "limits"),
        ("plan", {"limits": {"machines": -3}}, "limits"),
        ("plan", {"owners": ["not-an-email"]}, "owners"),
        ("plan", {"plan": ""}, "plan"),
        ("topup", {"quota": "api_requests_per_minute"}, "quota"),
        ("topup", {"quota": "gpu_minutes"}, "quota"),
        ("alert_settings", {"muted": [{"quota": "gpu_minutes", "threshold": None}]}, "muted"),
        ("alert_settings", {"muted": [{"quota": "ai_tokens", "threshold": 90}]}, "muted"),
        ("alert_settings", {"forecasts": [{"quota": "machines"}]}, "forecasts"),
        ("alert_settings", {"forecasts": [{"quota": "ai_tokens", "lead_days": -1}]},
         "forecasts"),
        ("alert_settings", {"forecasts": [{"quota": "ai_tokens", "lead_days": 366}]},
         "forecasts"),
        ("alert_settings", {"forecasts": [{"quota": "ai_tokens"}, {"quota": "ai_tokens"}]},
         "forecasts"),
        ("alert_settings", {"muted_forecasts": ["storage_bytes"]}, "muted_forecasts"),
        ("alert_settings", {"webhook_secret": "s3cret"}, "webhook_secret"),
        ("alert_settings", {"webhook_secret": "whsec_not base64!"}, "webhook_secret"),
        ("alert_settings", {"webhook_secret": "whsec_"}, "webhook_secret"),
    ],
)
def test_a_value_outside_the_contract_is_invalid_value(
    type_name: str, changes: dict[str, Any], field: str
) -> None:
    assert reason_of(good(type_name, **changes)) == ("invalid_value", field)


@pytest.mark.parametrize(
    ("type_name", "field"),
    [("command", "event_id"), ("command", "workspace_id"), ("command", "member_id"),
     ("command", "machine_id"), ("schedule_run", "schedule_id"), ("tokens", "machine_id"),
     ("machine", "machine_id")],
)
def test_an_empty_id_is_empty_id(type_name: str, field: str) -> None:
    assert reason_of(good(type_name, **{field: ""})) == ("empty_id", field)


def test_occurred_at_before_2000_or_after_now_is_time_out_of_range() -> None:
    assert reason_of(good("command", occurred_at="1999-12-31T23:59:59Z")) == (
        "time_out_of_range", "occurred_at")
    assert reason_of(good("command", occurred_at=946684799999))[0] == "time_out_of_range"
    assert reason_of(good("command", occurred_at=MAY_5 + 300_001), now_ms=MAY_5)[0] == (
        "time_out_of_range")
    # exactly 2000 and exactly five minutes after now are in range; no now makes it inert
    assert validate("command", good("command", occurred_at=946684800000)).occurred_at == (
        946684800000)
    assert validate("command", good("command", occurred_at=MAY_5 + 300_000),
                    now_ms=MAY_5).occurred_at == MAY_5 + 300_000
    assert validate("command", good("command", occurred_at="2090-01-01T00:00:00Z")).occurred_at


def test_every_reason_code_is_covered_here() -> None:
    # cycle_closed is the core's verdict (S4), never validation's
    assert set(REASONS) == {"undecodable", "unknown_type", "missing_field", "wrong_type",
                            "invalid_value", "empty_id", "time_out_of_range", "cycle_closed"}


# --- what is accepted, and what it becomes ------------------------------------------------


def test_times_are_rfc3339_with_an_offset_or_epoch_ms_and_truncate_past_milliseconds() -> None:
    def at(value: Any) -> int:
        return validate("command", good("command", occurred_at=value)).occurred_at

    assert at("2025-05-05T05:05:05Z") == MAY_5
    assert at("2025-05-05t05:05:05z") == MAY_5
    assert at("2025-05-05T10:35:05+05:30") == MAY_5
    assert at("2025-05-05T00:05:05-05:00") == MAY_5
    assert at("2025-05-05T05:05:05.1Z") == MAY_5 + 100
    assert at("2025-05-05T05:05:05.123999999Z") == MAY_5 + 123
    assert at(MAY_5) == MAY_5


def test_unknown_fields_are_ignored_and_nullable_fields_may_be_left_out() -> None:
    event = validate("tokens", good("tokens", machine_id=..., skill=..., colour="blue"))
    assert isinstance(event, TokensEvent)
    assert (event.machine_id, event.skill) == (None, None)


def test_requests_left_out_means_one_and_zero_counts_are_valid() -> None:
    assert validate("api", good("api", requests=...)) == ApiEvent(
        "e1", "wz", MAY_5, None, "rest", 1)
    zero = validate("tokens", good("tokens", input_tokens=0, output_tokens=0))
    assert isinstance(zero, TokensEvent) and zero.input_tokens == 0


def test_storage_takes_a_signed_delta_or_an_absolute_total() -> None:
    assert validate("storage", good("storage")) == StorageEvent(
        "e1", "wz", MAY_5, "transcripts", -10, None)
    total = validate("storage", good("storage", delta_bytes=..., total_bytes=0))
    assert (total.delta_bytes, total.total_bytes) == (None, 0)  # type: ignore[union-attr]


def test_plan_defaults_timezone_to_utc_and_left_out_limits_to_unlimited() -> None:
    event = validate("plan", good("plan", timezone=..., limits={"machines": 3, "ai_tokens": None}))
    assert event == PlanEvent("e1", "wz", MAY_5, "team", 1746403200000, "UTC",
                              Limits(machines=3), ("ops@wz.example",))
    assert validate("plan", good("plan", timezone="")).timezone == "UTC"  # type: ignore[union-attr]
    berlin = validate("plan", good("plan", timezone="Europe/Berlin", cycle_anchor=1746403200000))
    assert isinstance(berlin, PlanEvent) and berlin.cycle_anchor == 1746403200000


def test_topups_and_mutes_name_one_of_the_six_quotas() -> None:
    assert validate("topup", good("topup")) == TopupEvent("e1", "wz", MAY_5, "ai_tokens", 10)
    event = validate("alert_settings", good(
        "alert_settings", muted=[{"quota": "ai_tokens", "threshold": None},
                                 {"quota": "api_requests_per_minute", "threshold": 95},
                                 {"quota": "machines"}],
        webhook_url="https://hooks.example/wz",
        webhook_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
    assert isinstance(event, AlertSettingsEvent)
    assert event.muted == (Mute("ai_tokens", None), Mute("api_requests_per_minute", 95),
                           Mute("machines", None))
    assert (event.email, event.slack_webhook_url) == (True, None)


def test_forecast_opt_ins_name_counter_quotas_with_a_lead_in_days() -> None:
    event = validate("alert_settings", good(
        "alert_settings", forecasts=[{"quota": "ai_tokens"},
                                     {"quota": "api_requests_per_cycle", "lead_days": 0},
                                     {"quota": "schedule_runs", "lead_days": 365}],
        muted_forecasts=["schedule_runs", "schedule_runs"]))
    assert isinstance(event, AlertSettingsEvent)
    assert event.forecasts == (ForecastOptIn("ai_tokens", None),
                               ForecastOptIn("api_requests_per_cycle", 0),
                               ForecastOptIn("schedule_runs", 365))
    assert event.muted_forecasts == ("schedule_runs",)


def test_every_alert_settings_field_is_optional() -> None:
    event = validate("alert_settings", good("alert_settings", email=...))
    assert event == AlertSettingsEvent("e1", "wz", MAY_5, None, None, None, None, ())


def test_json_lines_errors_name_the_field() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_line(orjson.dumps(good("tokens", input_tokens="100")), now_ms=None, line=5)
    assert info.value.line == 5
    assert "input_tokens" in info.value.detail
    assert str(info.value).startswith("line 5: wrong_type: ")


def test_event_to_json_round_trips_through_parse_line() -> None:
    for type_name in ("tokens", "command", "schedule_run", "skill", "storage", "api",
                      "machine", "plan", "topup", "alert_settings"):
        event = validate(type_name, good(type_name))
        obj = event_to_json(event)
        assert obj["type"] == type_name
        assert parse_line(orjson.dumps(obj), now_ms=None) == event


@settings(max_examples=300, deadline=None)
@given(moment=st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(9998, 12, 1),
                           timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                                      timezone(timedelta(hours=-8))])),
       digits=st.integers(0, 6))
def test_rfc3339_parsing_agrees_with_datetime_twice(moment: datetime, digits: int) -> None:
    """The cached fast path (second call) and the full parse give datetime's answer."""
    text = moment.isoformat(timespec="seconds" if digits == 0 else "microseconds")
    if digits:
        head, _, rest = text.partition(".")
        text = f"{head}.{rest[:digits]}{rest[6:]}"
    text = text.replace("+00:00", "Z")
    micros = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    seconds, sub = divmod(micros, 1_000_000)
    expected = seconds * 1000 + int(f"{sub:06d}"[:digits][:3].ljust(3, "0"))
    assert parse_rfc3339_ms(text) == expected
    assert parse_rfc3339_ms(text) == expected


def test_two_space_separated_secrets_are_valid_during_a_rotation() -> None:
    from schemas.validation import is_webhook_secret

    one = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert is_webhook_secret(one)
    assert is_webhook_secret(f"{one} {one}")
    assert not is_webhook_secret(f"{one}  {one}")  # exactly one space
    assert not is_webhook_secret(f"{one} {one} {one}")  # at most two
    assert not is_webhook_secret(f"{one} base64!")
    assert not is_webhook_secret("whsec_not base64!")  # acceptance invalid_events line 21
