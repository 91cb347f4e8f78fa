"""The wire format: Confluent framing, golden bytes, round trips, and bad bytes (S5, S12)."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import (
    decode_event,
    decode_record,
    decode_written,
    encode_event,
    encode_record,
    schema_id_of,
    strip_logical_types,
)
from schemas.events import EVENT_CLASSES, TOPIC_OF_TYPE, Event
from schemas.jsonl import dumps_event, parse_line
from schemas.registry import default_registry, topics
from schemas.validation import InvalidEvent, validate
from tests.schemas.strategies import avro_values, event_fields
from tests.schemas.test_evolution import write_with

GOLDEN = json.loads((Path(__file__).parent / "golden" / "records.json").read_text())
DESIGN_TOPICS = {
    "usage.tokens", "usage.commands", "usage.schedules", "usage.skills", "usage.storage",
    "usage.api", "usage.machines", "quota.plans", "quota.topups", "alerting.settings",
    "quota.thresholds", "quota.state", "usage.aggregates", "storage.prune_requests",
    "alerting.deliveries", "usage.deadletter",
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def golden_record(case: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if case["topic"] is None:
        obj = case["event"]
        return TOPIC_OF_TYPE[obj["type"]], obj
    record = dict(case["record"])
    if "original" in record:
        record["original"] = base64.b64decode(record["original"])
    return case["topic"], record


def written_with_current(case: dict[str, Any]) -> bool:
    """True for golden bytes of their topic's current schema, False for an older version's."""
    topic, _ = golden_record(case)
    return int.from_bytes(bytes.fromhex(case["hex"])[1:5], "big") == schema_id_of(topic)


CURRENT = [case for case in GOLDEN if written_with_current(case)]
OLDER = [case for case in GOLDEN if not written_with_current(case)]


def case_id(case: dict[str, Any]) -> str:
    return str(case["topic"] or case["event"]["type"])


def _ms_to_datetimes(value: Any, schema: Any) -> Any:
    """A stripped-schema value as the `avro` package sees it (timestamp-millis as datetime)."""
    if isinstance(schema, dict) and schema.get("logicalType") == "timestamp-millis":
        return None if value is None else datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(schema, list):
        for branch in schema:
            if branch == "null" and value is None:
                return None
            if branch != "null":
                return _ms_to_datetimes(value, branch)
    if isinstance(schema, dict) and schema.get("type") == "record":
        return {f["name"]: _ms_to_datetimes(value[f["name"]], f["type"])
                for f in schema["fields"]}
    if isinstance(schema, dict) and schema.get("type") == "array":
        return [_ms_to_datetimes(v, schema["items"]) for v in value]
    if isinstance(schema, dict) and isinstance(schema.get("type"), dict | list):
        return _ms_to_datetimes(value, schema["type"])
    return value


# --- the schema set ---------------------------------------------------------------------------


def test_there_is_one_schema_per_design_topic_with_a_doc_on_every_field() -> None:
    assert set(topics()) == DESIGN_TOPICS
    for topic, version in default_registry().current.items():
        assert version.subject == f"{topic}-value"
        assert version.path.name == f"{topic}.avsc"
        schema = version.load()
        assert schema["namespace"] == "dev.meter"

        def check(node: Any, where: str) -> None:
            if isinstance(node, list):
                for item in node:
                    check(item, where)
            elif isinstance(node, dict):
                if node.get("type") == "record":
                    for field in node["fields"]:
                        assert field.get("doc"), f"{where}.{field['name']} has no doc"
                        check(field["type"], f"{where}.{field['name']}")
                elif node.get("type") == "enum":
                    assert node["default"] in node["symbols"], where
                elif node.get("type") == "array":
                    check(node["items"], where)

        check(schema, topic)


def test_times_are_timestamp_millis() -> None:
    schema = default_registry().current["usage.tokens"].load()
    occurred_at = next(f for f in schema["fields"] if f["name"] == "occurred_at")
    assert occurred_at["type"] == {"type": "long", "logicalType": "timestamp-millis"}


# --- golden bytes -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CURRENT, ids=case_id)
def test_golden_bytes(case: dict[str, Any]) -> None:
    topic, record = golden_record(case)
    expected = bytes.fromhex(case["hex"])
    assert expected[0] == 0
    assert int.from_bytes(expected[1:5], "big") == schema_id_of(topic)
    if case["topic"] is None:
        event = parse_line(json.dumps(record), now_ms=None)
        assert encode_event(event) == expected
        assert decode_event(expected) == event
    else:
        assert encode_record(topic, record) == expected
        assert decode_record(expected) == (topic, record)


@pytest.mark.parametrize("case", OLDER, ids=case_id)
def test_golden_bytes_of_an_older_version_decode_as_written(case: dict[str, Any]) -> None:
    topic, record = golden_record(case)
    expected = bytes.fromhex(case["hex"])
    (version,) = [v.version for v in default_registry().history(topic)
                  if v.schema_id == int.from_bytes(expected[1:5], "big")]
    if case["topic"] is None:
        # an event written with an older version decodes as the same event, new fields
        # at their defaults (usage.tokens v1: no cache tokens)
        assert decode_event(expected) == parse_line(json.dumps(record), now_ms=None)
        written_topic, written_version, _ = decode_written(expected)
        assert (written_topic, written_version) == (topic, version)
    else:
        assert decode_written(expected) == (topic, version, record)


@pytest.mark.parametrize("case", CURRENT, ids=case_id)
def test_the_avro_package_reads_and_writes_the_same_bytes(case: dict[str, Any]) -> None:
    topic, _ = golden_record(case)
    expected = bytes.fromhex(case["hex"])
    schema_json = default_registry().current[topic].load()
    schema = avro.schema.parse(json.dumps(schema_json))
    ours = decode_record(expected)[1]
    theirs = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(BytesIO(expected[5:])))
    assert theirs == _ms_to_datetimes(ours, schema_json)
    out = BytesIO()
    avro.io.DatumWriter(schema).write(theirs, avro.io.BinaryEncoder(out))
    assert out.getvalue() == expected[5:]


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("type_name", list(EVENT_CLASSES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_valid_event_round_trips_through_avro_and_json_lines(
    type_name: str, data: st.DataObject
) -> None:
    event = validate(type_name, data.draw(event_fields(type_name)))
    assert decode_event(encode_event(event)) == event
    assert parse_line(dumps_event(event), now_ms=None) == event


@pytest.mark.parametrize("topic", sorted(DESIGN_TOPICS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_record_of_every_schema_round_trips(topic: str, data: st.DataObject) -> None:
    schema = strip_logical_types(default_registry().current[topic].load())
    record = data.draw(avro_values(schema))
    assert decode_record(encode_record(topic, record)) == (topic, record)


def test_usage_aggregates_decode_as_written_in_each_version() -> None:
    """Version 1 carries one value in the record itself; resolved to version 2 it would
    read as ``entries: []``, so readers that keep every value read it as written."""
    v1, v2, v3 = default_registry().history("usage.aggregates")
    head = {"workspace_id": "w1", "cycle_start": 1735689600000, "cycle_ends_at": 1738368000000,
            "plan": "team", "version": 7, "emitted_at": 1736640002000}
    one = {**head, "dimension": "totals", "key": "", "metric": "ai_tokens", "value": 1234}
    old = write_with(v1.load(), v1.schema_id, one)
    assert decode_written(old) == ("usage.aggregates", 1, one)
    assert decode_record(old) == ("usage.aggregates",
                                  {**head, "entries": [], "prices_version": None})
    many = {**head, "entries": [
        {"dimension": "totals", "key": "", "values": [1234, 0, 0, 0, 2, 0, 0, 0]},
        {"dimension": "limits", "key": "", "values": [None, 5000, None, None, 60, None]}]}
    second = write_with(v2.load(), v2.schema_id, many)
    assert decode_written(second) == ("usage.aggregates", 2, many)
    assert decode_record(second) == ("usage.aggregates", {**many, "prices_version": None})
    priced = {**many, "prices_version": "genai-prices 0.2.5"}
    new = encode_record("usage.aggregates", priced)
    assert new[1:5] == v3.schema_id.to_bytes(4, "big")
    assert decode_written(new) == ("usage.aggregates", 3, priced)


# --- bad bytes ---------------------------------------------------------------------------------


def tokens_bytes() -> bytes:
    return bytes.fromhex(GOLDEN[0]["hex"])


def test_wrong_magic_byte_unknown_schema_id_and_bad_body_are_undecodable() -> None:
    good = tokens_bytes()
    cases = {
        "wrong magic": b"\x01" + good[1:],
        "unknown schema id": b"\x00\x00\x00\x27\x0f" + good[5:],
        "truncated body": good[:-3],
        "trailing bytes": good + b"\x00",
        "too short": b"\x00\x00",
        "empty": b"",
        "bad utf-8": good[:5] + b"\x04\xff\xfe" + good[8:],
    }
    for what, data in cases.items():
        for decode in (decode_event, decode_record, decode_written):
            with pytest.raises(InvalidEvent) as info:
                decode(data)
            assert info.value.reason == "undecodable", (what, decode.__name__)


def test_a_decodable_record_that_breaks_the_contract_gets_its_reason() -> None:
    record = json.loads(json.dumps(GOLDEN[0]["event"]))
    record.pop("type")
    record["occurred_at"] = 946684799999
    record["input_tokens"] = -1
    data = encode_record("usage.tokens", record)
    with pytest.raises(InvalidEvent) as info:
        decode_event(data)
    assert info.value.reason == "time_out_of_range"
    record["occurred_at"] = 1735689600000
    with pytest.raises(InvalidEvent) as info:
        decode_event(encode_record("usage.tokens", record))
    assert (info.value.reason, info.value.field) == ("invalid_value", "input_tokens")
    record["input_tokens"], record["surface"] = 1, "unknown"  # an old reader's default symbol
    with pytest.raises(InvalidEvent) as info:
        decode_event(encode_record("usage.tokens", record))
    assert (info.value.reason, info.value.field) == ("invalid_value", "surface")


def test_an_output_record_or_another_topic_is_not_an_event() -> None:
    crossing = next(c for c in GOLDEN if c["topic"] == "quota.thresholds")
    with pytest.raises(InvalidEvent) as info:
        decode_event(bytes.fromhex(crossing["hex"]))
    assert info.value.reason == "unknown_type"
    with pytest.raises(InvalidEvent) as info:
        decode_event(tokens_bytes(), topic="usage.commands")
    assert info.value.reason == "unknown_type"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_random_bytes_never_raise_anything_but_invalid_event(data: bytes) -> None:
    for candidate in (data, b"\x00" + tokens_bytes()[1:5] + data):
        try:
            event: Event = decode_event(candidate)
        except InvalidEvent as exc:
            assert exc.reason in {"undecodable", "unknown_type", "missing_field", "wrong_type",
                                  "invalid_value", "empty_id", "time_out_of_range"}
        else:
            assert event.event_id


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_corrupted_encodings_never_raise_anything_but_invalid_event(data: st.DataObject) -> None:
    case = data.draw(st.sampled_from(GOLDEN))
    raw = bytearray(bytes.fromhex(case["hex"]))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(5, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(5, len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut])):
        with contextlib.suppress(InvalidEvent):
            decode_event(candidate)
        for decode in (decode_record, decode_written):
            try:
                decode(candidate)
            except InvalidEvent as exc:
                assert exc.reason == "undecodable"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(type_name=st.sampled_from([*EVENT_CLASSES, "nope"]), data=st.data())
def test_any_field_values_give_an_event_or_invalid_event(
    type_name: str, data: st.DataObject
) -> None:
    fields = data.draw(st.one_of(
        st.dictionaries(st.sampled_from(
            ["event_id", "workspace_id", "occurred_at", "member_id", "machine_id", "skill",
             "provider", "model", "input_tokens", "output_tokens", "surface", "command",
             "schedule_id", "cache_hit", "category", "delta_bytes", "total_bytes", "protocol",
             "requests", "action", "plan", "cycle_anchor", "timezone", "limits", "owners",
             "quota", "amount", "email", "slack_webhook_url", "webhook_url", "webhook_secret",
             "muted"]), json_values),
        event_fields(type_name if type_name != "nope" else "command").flatmap(
            lambda good: st.dictionaries(st.sampled_from(sorted(good)), json_values).map(
                lambda bad: {**good, **bad}))))
    try:
        validate(type_name, fields)
    except InvalidEvent as exc:
        assert exc.detail


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_line_gives_an_event_or_invalid_event(raw: bytes) -> None:
    try:
        parse_line(raw, now_ms=None)
    except InvalidEvent as exc:
        assert exc.reason in {"undecodable", "unknown_type", "missing_field", "wrong_type"}
