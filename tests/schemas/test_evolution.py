"""Schema evolution: every registered version stays readable by the current one."""

from __future__ import annotations

import json
import shutil
from io import BytesIO
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import Codec, decode_event, encode_event, frame, strip_logical_types
from schemas.events import AlertSettingsEvent, ForecastOptIn, Mute
from schemas.registry import SCHEMA_DIR, Registry, default_registry
from streams.core.quotas import ThresholdCrossing
from tests.schemas.strategies import avro_values


def write_with(schema_json: dict[str, Any], schema_id: int, record: dict[str, Any]) -> bytes:
    out = BytesIO()
    schemaless_writer(out, parse_schema(strip_logical_types(schema_json)), record)
    return frame(schema_id, out.getvalue())


def test_registry_ids_and_versions_are_unique_and_files_exist() -> None:
    registry = default_registry()
    for topic in registry.current:
        history = registry.history(topic)
        assert [v.version for v in history] == list(range(1, len(history) + 1))
        for old in history[:-1]:
            assert old.path.parent.name == "history", old
        assert all(v.path.is_file() for v in history)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_current_codec_reads_data_written_with_every_previous_version(
    data: st.DataObject,
) -> None:
    registry = default_registry()
    codec = Codec(registry)
    for topic, current in registry.current.items():
        for old in registry.history(topic)[:-1]:
            schema = old.load()
            record = data.draw(avro_values(strip_logical_types(schema)))
            written = write_with(schema, old.schema_id, record)
            decoded_topic, decoded = codec.decode_record(written)
            assert decoded_topic == topic
            assert set(decoded) == {f["name"] for f in current.load()["fields"]}
            assert codec.decode_written(written) == (topic, old.version, record)


def test_a_new_version_with_a_defaulted_field_reads_old_data(tmp_path: Path) -> None:
    """The mechanism, on a registry with a second version of usage.api."""
    for path in SCHEMA_DIR.glob("*.avsc"):
        shutil.copy(path, tmp_path / path.name)
    shutil.copytree(SCHEMA_DIR / "history", tmp_path / "history")  # the registry lists them
    shutil.copy(SCHEMA_DIR / "usage.api.avsc", tmp_path / "history" / "usage.api.v1.avsc")
    v2 = json.loads((SCHEMA_DIR / "usage.api.avsc").read_text())
    v2["fields"].append({"name": "client", "type": "string", "default": "",
                         "doc": "The API client (added in version 2)."})
    protocol = next(f for f in v2["fields"] if f["name"] == "protocol")
    protocol["type"]["symbols"].insert(-1, "graphql")
    (tmp_path / "usage.api.avsc").write_text(json.dumps(v2))
    registry_json = json.loads((SCHEMA_DIR / "registry.json").read_text())
    registry_json["subjects"]["usage.api-value"] = [
        {"version": 1, "id": 6, "file": "history/usage.api.v1.avsc"},
        {"version": 2, "id": 1000, "file": "usage.api.avsc"},
    ]
    (tmp_path / "registry.json").write_text(json.dumps(registry_json))

    codec = Codec(Registry.load(tmp_path / "registry.json"))
    old_record = {"event_id": "a1", "workspace_id": "w1", "occurred_at": 1735689600000,
                  "member_id": None, "protocol": "rest", "requests": 3}
    v1 = json.loads((SCHEMA_DIR / "usage.api.avsc").read_text())
    topic, record = codec.decode_record(write_with(v1, 6, old_record))
    assert (topic, record) == ("usage.api", {**old_record, "client": ""})
    new_bytes = codec.encode_record("usage.api", {**old_record, "protocol": "graphql",
                                                  "client": "sdk"})
    assert new_bytes[1:5] == (1000).to_bytes(4, "big")
    # an old reader (the project's codec) does not know id 1000: undecodable, dead-lettered
    old_codec = Codec(default_registry())
    try:
        old_codec.decode_record(new_bytes)
    except Exception as exc:
        assert getattr(exc, "reason", None) == "undecodable"
    else:
        raise AssertionError("an unknown schema id must not decode")


def test_quota_thresholds_v1_records_read_as_threshold_crossings() -> None:
    """Version 2 adds ``kind`` and ``forecast_at`` (forecast alerts); a version 1 crossing
    (written before forecasts existed) reads as a threshold crossing without a forecast."""
    v1, v2 = default_registry().history("quota.thresholds")
    old = {"alert_id": "w1/2025-01-01T00:00:00Z/ai_tokens/95", "workspace_id": "w1",
           "quota": "ai_tokens", "threshold": 95, "arm": 1, "highest_in_event": True,
           "current": 951, "limit": 1000, "cycle_start": 1735689600000,
           "cycle_ends_at": 1738368000000, "crossed_at": 1736121600000, "event_id": "t2",
           "enforcement": "allow"}
    codec = Codec(default_registry())
    topic, record = codec.decode_record(write_with(v1.load(), v1.schema_id, old))
    assert (topic, record) == ("quota.thresholds",
                               {**old, "kind": "threshold", "forecast_at": None})
    crossing = ThresholdCrossing.from_record(record)
    assert (crossing.kind, crossing.forecast_at) == ("threshold", None)
    assert ThresholdCrossing.from_record(old) == crossing  # a dict without the new fields
    forecast = {**old, "alert_id": "w1/2025-01-01T00:00:00Z/ai_tokens/forecast",
                "threshold": 100, "kind": "forecast", "forecast_at": 1737763200000}
    new = codec.encode_record("quota.thresholds", forecast)
    assert new[1:5] == v2.schema_id.to_bytes(4, "big")
    assert ThresholdCrossing.from_record(codec.decode_record(new)[1]).forecast_at == (
        1737763200000)


def test_alerting_settings_v1_records_read_without_forecasts() -> None:
    """Version 2 adds ``forecasts`` (opt-ins) and ``muted_forecasts``; version 1 settings
    read as opting in to none and muting no forecast."""
    v1, v2 = default_registry().history("alerting.settings")
    old = {"event_id": "as1", "workspace_id": "w1", "occurred_at": 1735776000000,
           "email": True, "slack_webhook_url": None, "webhook_url": None,
           "webhook_secret": None, "muted": [{"quota": "ai_tokens", "threshold": None}]}
    data = write_with(v1.load(), v1.schema_id, old)
    event = decode_event(data)
    assert isinstance(event, AlertSettingsEvent)
    assert (event.muted, event.forecasts, event.muted_forecasts) == (
        (Mute("ai_tokens", None),), (), ())
    opted = event._replace(forecasts=(ForecastOptIn("ai_tokens", 5),),
                           muted_forecasts=("ai_tokens",))
    new = encode_event(opted)
    assert new[1:5] == v2.schema_id.to_bytes(4, "big")
    assert decode_event(new) == opted
