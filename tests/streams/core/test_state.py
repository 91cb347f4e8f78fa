"""The stream-facing API: serialization, usage.aggregates rows, quota.state, prune requests."""

from __future__ import annotations

from typing import Any

from schemas.aggregates import values_of
from streams.core.meter import WorkspaceMeter
from streams.core.state_codec import decode_meter, encode_meter

from .builders import Run, command, machine, ms, plan, storage, tokens

JAN = ms("2025-01-01T00:00:00Z")


def _rows(meter: WorkspaceMeter) -> dict[tuple[Any, ...], Any]:
    return {(a["cycle_start"], dimension, key, metric): value
            for a in meter.take_changed_aggregates(123)
            for dimension, key, metric, value in values_of(a)}


def test_one_aggregates_record_per_changed_cycle_with_only_changed_keys() -> None:
    meter = WorkspaceMeter("w1")
    meter.apply(tokens("2025-01-02T00:00:00Z", 5, machine="m1", provider="openai", model="o/x"))
    (record,) = meter.take_changed_aggregates(111)
    assert set(record) == {"workspace_id", "cycle_start", "cycle_ends_at", "plan", "entries",
                           "prices_version", "version", "emitted_at"}
    assert (record["cycle_start"], record["version"], record["emitted_at"]) == (JAN, 1, 111)
    keyed = {(d, k, m): v for d, k, m, v in values_of(record)}
    assert keyed[("totals", "", "ai_tokens")] == 5
    assert keyed[("limits", "", "ai_tokens")] is None
    assert keyed[("machine", "m1", "ai_tokens")] == 5
    assert keyed[("model", "openai/o/x", "input_tokens")] == 5  # split at first "/"
    assert meter.take_changed_aggregates(112) == []
    meter.apply(command("2025-01-02T00:00:00Z", member="bob", machine="m2"))
    version_before = meter.version
    changed = _rows(meter)
    assert {k[1:3] for k in changed} == {("totals", ""), ("member", "bob"), ("machine", "m2")}
    assert meter.version == version_before + 1


def test_closed_cycle_rows_are_emitted_before_it_is_forgotten() -> None:
    meter = WorkspaceMeter("w1")
    meter.apply(tokens("2025-01-02T00:00:00Z", 5))
    meter.apply(tokens("2025-03-02T00:00:00Z", 7))  # January closes (Feb is previous)
    rows = _rows(meter)
    assert rows[(JAN, "totals", "", "ai_tokens")] == 5
    assert rows[(ms("2025-03-01T00:00:00Z"), "totals", "", "ai_tokens")] == 7


def test_quota_state_record_shape() -> None:
    meter = WorkspaceMeter("w1")
    for event in (plan("2025-01-01T00:00:00Z", name="team", machines=4, ai_tokens=100),
                  machine("2025-01-02T00:00:00Z", "m2"), machine("2025-01-02T00:00:00Z", "m1"),
                  tokens("2025-01-02T00:00:00Z", 81)):
        meter.apply(event)
    record = meter.quota_state_record(ms("2025-01-05T00:00:00Z"))
    assert set(record) == {"workspace_id", "version", "as_of", "event_time", "plan",
                           "cycle_anchor", "timezone", "cycle_start", "cycle_ends_at",
                           "machine_ids", "quotas", "api_minute"}
    assert record["machine_ids"] == ["m1", "m2"]
    assert (record["cycle_start"], record["cycle_anchor"], record["timezone"]) == (JAN, JAN, "UTC")
    quotas = {q["quota"]: q for q in record["quotas"]}
    assert [q["quota"] for q in record["quotas"]] == [
        "machines", "ai_tokens", "storage_bytes", "schedule_runs", "api_requests_per_minute",
        "api_requests_per_cycle"]
    assert quotas["ai_tokens"] == {"quota": "ai_tokens", "used": 81, "limit": 100,
                                   "plan_limit": 100, "percent": 81, "decision": "allow"}
    assert quotas["machines"]["used"] == 2
    assert record["event_time"] == ms("2025-01-02T00:00:00Z")
    later = meter.quota_state_record(ms("2025-01-05T00:00:01Z"))
    assert later["version"] > record["version"]


def test_to_bytes_round_trip_mid_stream_gives_identical_results() -> None:
    first = [plan("2025-01-01T00:00:00Z", ai_tokens=100, storage_bytes=100, machines=3),
             tokens("2025-01-02T00:00:00Z", 70, machine="m1", skill="s"),
             storage("2025-01-02T00:00:00Z", total=85), machine("2025-01-02T00:00:00Z", "m1")]
    rest = [tokens("2025-01-03T00:00:00Z", 20, event_id="t"),
            storage("2025-01-04T00:00:00Z", total=50),
            storage("2025-01-05T00:00:00Z", total=90), tokens("2025-02-03T00:00:00Z", 90),
            tokens("2025-01-03T00:00:00Z", 20, event_id="t")]
    straight = Run(*first, *rest)
    resumed = Run(*first)
    blob = encode_meter(resumed.meter())
    resumed.meters["w1"] = decode_meter(
        blob, on_cycle_closed=resumed.collector.cycle_closed)
    assert encode_meter(resumed.meters["w1"]) == blob
    resumed.outcomes, resumed.crossings = [], []
    resumed.apply(*rest)
    assert resumed.outcomes == straight.outcomes[len(first):]
    assert resumed.usage() == straight.usage()


def test_state_is_small() -> None:
    meter = WorkspaceMeter("w1")
    meter.apply(plan("2025-01-01T00:00:00Z", ai_tokens=100))
    for day in range(1, 28):
        meter.apply(tokens(f"2025-01-{day:02d}T00:00:00Z", 1, member=f"m{day % 3}"))
    assert len(encode_meter(meter)) < 2500


def test_records_encode_with_the_contract_schemas() -> None:
    from schemas.codec import decode_record, encode_record

    r = Run(plan("2025-01-01T00:00:00Z", storage_bytes=100, ai_tokens=10),
            tokens("2025-01-02T00:00:00Z", 5, machine="m1"),
            storage("2025-01-02T00:00:00Z", total=120))
    meter = r.meter()
    outcome = r.outcomes[-1]
    records = [("quota.state", meter.quota_state_record(ms("2025-01-03T00:00:00Z")))]
    records += [("quota.thresholds", c.to_record()) for c in r.crossings]
    records += [("storage.prune_requests", p.to_record()) for p in outcome.prune_requests]
    emitted = ms("2025-01-03T00:00:00Z")
    records += [("usage.aggregates", a) for a in meter.take_changed_aggregates(emitted)]
    assert outcome.prune_requests and r.crossings
    for topic, record in records:
        assert decode_record(encode_record(topic, record)) == (topic, record)
