"""Row mapping: a record of every registered version of a sink topic, read as written,
becomes rows of its table (one per value of a usage.aggregates record); appended as
columns (the writer's form) it gives the same rows."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.aggregates import METRICS_OF
from schemas.codec import decode_written, strip_logical_types
from schemas.events import QUOTAS
from schemas.registry import default_registry
from sinks.rows import AGGREGATES, CROSSINGS, SINK_TOPICS, TABLE_OF_TOPIC, Columns, TableSpec
from tests.schemas.strategies import avro_values
from tests.schemas.test_evolution import write_with

HEAD = {"workspace_id": "w1", "cycle_start": 1_000, "cycle_ends_at": 2_000, "plan": None,
        "version": 5, "emitted_at": 1_500}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_every_registered_version_of_every_sink_topic_maps_to_rows(data: st.DataObject) -> None:
    for topic in SINK_TOPICS:
        spec = TABLE_OF_TOPIC[topic]
        for version in default_registry().history(topic):
            schema = version.load()
            record = data.draw(avro_values(strip_logical_types(schema)))
            _, _, written = decode_written(write_with(schema, version.schema_id, record))
            rows = spec.to_rows(written)
            expected = (sum(min(len(e["values"]), len(METRICS_OF.get(e["dimension"], ())))
                            for e in written["entries"])
                        if "entries" in written else 1)
            assert len(rows) == expected
            assert all(len(row) == len(spec.columns) for row in rows)
            assert as_rows(columns_of(spec, [written, written])) == [*rows, *rows]


def columns_of(spec: TableSpec, records: list[dict[str, Any]]) -> Columns:
    columns = spec.empty_columns()
    added = sum(spec.to_columns(record, columns) for record in records)
    assert {len(column) for column in columns} == {added}
    return columns


def as_rows(columns: Columns) -> list[tuple[Any, ...]]:
    return list(zip(*columns, strict=True))


def test_a_forecast_alert_is_stored_as_a_forecast_beside_threshold_crossings() -> None:
    crossing = {"alert_id": "w1/2025-01-01T00:00:00Z/ai_tokens/100", "workspace_id": "w1",
                "quota": "ai_tokens", "threshold": 100, "arm": 1, "highest_in_event": True,
                "current": 100, "limit": 100, "cycle_start": 1_000, "cycle_ends_at": 2_000,
                "crossed_at": 1_500, "event_id": "t1", "enforcement": "reject"}
    kind, forecast_at = CROSSINGS.columns.index("kind"), CROSSINGS.columns.index("forecast_at")
    [v1] = CROSSINGS.to_rows(crossing)  # version 1: no kind, a threshold crossing
    assert (v1[kind], v1[forecast_at]) == ("threshold", None)
    forecast = {**crossing, "alert_id": "w1/2025-01-01T00:00:00Z/ai_tokens/forecast",
                "current": 10, "enforcement": "allow", "kind": "forecast", "forecast_at": 1_900}
    [row] = CROSSINGS.to_rows(forecast)
    assert (row[0], row[kind], row[forecast_at]) == (forecast["alert_id"], "forecast", 1_900)
    assert as_rows(columns_of(CROSSINGS, [crossing, forecast])) == [v1, row]


def test_an_aggregates_record_of_each_version_gives_its_rows() -> None:
    one = {**HEAD, "dimension": "totals", "key": "", "metric": "ai_tokens", "value": 7}
    many = {**HEAD, "entries": [
        {"dimension": "limits", "key": "", "values": [2, None, 9, None, 60, 100]},
        {"dimension": "model", "key": "openai/gpt-4o", "values": [3, 4]}]}
    row = ("w1", 1_000, 2_000, None, "totals", "", "ai_tokens", 7, 5, 1_500, None)
    assert AGGREGATES.to_rows(one) == [row]
    assert AGGREGATES.to_rows(many) == [
        ("w1", 1_000, 2_000, None, "limits", "", quota, limit, 5, 1_500, None)
        for quota, limit in zip(QUOTAS, [2, None, 9, None, 60, 100], strict=True)
    ] + [("w1", 1_000, 2_000, None, "model", "openai/gpt-4o", "input_tokens", 3, 5, 1_500, None),
         ("w1", 1_000, 2_000, None, "model", "openai/gpt-4o", "output_tokens", 4, 5, 1_500, None)]
    assert AGGREGATES.to_rows({**HEAD, "entries": []}) == []
    # version 3: cost metrics are rows like the others; each row names the price table
    priced = {**HEAD, "prices_version": "genai-prices 0.2.5", "entries": [
        {"dimension": "totals", "key": "", "values": [7, 0, 0, 0, 0, 0, 0, 0, 1_234, 5]}]}
    rows = AGGREGATES.to_rows(priced)
    assert rows[-2:] == [
        ("w1", 1_000, 2_000, None, "totals", "", "cost_micros", 1_234, 5, 1_500,
         "genai-prices 0.2.5"),
        ("w1", 1_000, 2_000, None, "totals", "", "unpriced_tokens", 5, 5, 1_500,
         "genai-prices 0.2.5")]


def test_an_aggregates_record_appended_as_columns_gives_the_same_rows() -> None:
    one = {**HEAD, "dimension": "totals", "key": "", "metric": "ai_tokens", "value": 7}
    many = {**HEAD, "cycle_start": "2025-04-01T00:00:00Z", "prices_version": "p1", "entries": [
        {"dimension": "limits", "key": "", "values": [2, None, 9, None, 60, 100]},
        {"dimension": "unknown", "key": "x", "values": [1, 2]},  # names nothing
        {"dimension": "member", "key": "m1", "values": [1, 2, 3, 4, 5, 6, 7]},  # newer writer
        {"dimension": "model", "key": "openai/gpt-4o", "values": [3]},  # older writer
        {"dimension": "skill", "key": "s1", "values": []}]}
    empty = {**HEAD, "entries": []}
    records = [one, many, empty, one]
    expected = [row for record in records for row in AGGREGATES.to_rows(record)]
    assert len(expected) == 1 + 6 + 5 + 1 + 1
    assert as_rows(columns_of(AGGREGATES, records)) == expected
