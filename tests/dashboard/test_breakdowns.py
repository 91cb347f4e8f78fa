"""Breakdown tables: columns, derived values, sorting, totals, provider/model rows."""

from __future__ import annotations

from dashboard.breakdowns import (
    SKILL_COLUMNS,
    chart_items,
    machines_table,
    members_table,
    parse_sort,
    providers_table,
    skills_table,
)
from tests.dashboard import data

CYCLE = {**data.CURRENT, "cycle_start": data.APR}


def test_sort_parameters_fall_back_to_the_default() -> None:
    assert parse_sort("hit_rate.asc", SKILL_COLUMNS, "ai_tokens") == ("hit_rate", False)
    assert parse_sort("key.desc", SKILL_COLUMNS, "ai_tokens") == ("key", True)
    assert parse_sort("nope.asc", SKILL_COLUMNS, "ai_tokens") == ("ai_tokens", True)
    assert parse_sort("ai_tokens.sideways", SKILL_COLUMNS, "ai_tokens") == ("ai_tokens", True)
    assert parse_sort(None, SKILL_COLUMNS, "ai_tokens") == ("ai_tokens", True)


def test_machines_sort_by_tokens_by_default_and_by_any_column() -> None:
    table = machines_table(CYCLE)
    assert [r.key for r in table.rows] == ["build-01", "build-02", "laptop-kim"]
    assert table.rows[0].values == {"commands": 3_000, "ai_tokens": 400_000, "cost_micros": 0}
    assert table.total is not None
    assert table.total.values == {"commands": 5_321, "ai_tokens": 734_567, "cost_micros": 0}
    by_commands = machines_table(CYCLE, "commands.asc")
    assert [r.key for r in by_commands.rows] == ["laptop-kim", "build-02", "build-01"]
    by_name = machines_table(CYCLE, "key.desc")
    assert [r.key for r in by_name.rows] == ["laptop-kim", "build-02", "build-01"]


def test_ties_sort_by_key() -> None:
    cycle = {"members": {"b": {"ai_tokens": 5}, "a": {"ai_tokens": 5}, "c": {"ai_tokens": 9}}}
    assert [r.key for r in members_table(cycle).rows] == ["c", "a", "b"]
    assert [r.key for r in members_table(cycle, "ai_tokens.asc").rows] == ["a", "b", "c"]


def test_skills_have_hit_rate_and_tokens_per_call() -> None:
    table = skills_table(CYCLE, "hit_rate.desc")
    assert [r.key for r in table.rows] == ["triage", "summarize"]
    triage = table.rows[0].values
    assert triage["hit_rate"] == 0.75
    assert triage["tokens_per_call"] == 100
    assert table.total is not None
    assert table.total.values["hit_rate"] == 210 / 800


def test_missing_derived_values_sort_last_both_ways() -> None:
    cycle = {"skills": {"x": {"invocations": 0, "cache_hits": 0, "ai_tokens": 50},
                        "y": {"invocations": 10, "cache_hits": 1, "ai_tokens": 5}}}
    for sort in ("hit_rate.asc", "hit_rate.desc"):
        assert [r.key for r in skills_table(cycle, sort).rows] == ["y", "x"]


def test_providers_carry_their_models_with_large_badges() -> None:
    table = providers_table(CYCLE)
    assert [r.key for r in table.rows] == ["anthropic", "openai"]
    anthropic = table.rows[0]
    assert anthropic.values == {"input_tokens": 700_000, "output_tokens": 100_000,
                                "tokens": 800_000, "cost_micros": 15_065_000}
    assert [(c.key, c.badges) for c in anthropic.children] == [
        ("claude-opus-4", ("large",)), ("claude-3-haiku", ())]
    assert table.total is not None
    assert table.total.values["tokens"] == 1_234_567
    assert table.total.values["cost_micros"] == 15_154_740  # the cycle's cost


def test_cost_columns_come_from_the_cost_object_and_unpriced_models_say_so() -> None:
    members = {r.key: r.values["cost_micros"] for r in members_table(CYCLE).rows}
    assert members == {"kim": 15_000_000, "lee": 154_740}
    cost = {**CYCLE["cost"], "models": {**CYCLE["cost"]["models"], "anthropic/claude-3-haiku": {
        "cost": 0, "cache_read_tokens": 0, "cache_write_tokens": 0, "priced": False,
        "unpriced_tokens": 120_000}}}
    table = providers_table({**CYCLE, "cost": cost})
    haiku = next(c for c in table.rows[0].children if c.key == "claude-3-haiku")
    assert haiku.values["cost_micros"] is None
    cost_column = next(c for c in table.columns if c.key == "cost_micros")
    assert cost_column.show(None) == "unpriced"
    assert cost_column.exact(15_065_000) == "$15.065000"


def test_chart_items_keep_the_top_and_sum_the_rest() -> None:
    entries = {f"m{i}": {"commands": 0, "ai_tokens": 10 * i} for i in range(1, 11)}
    items = chart_items(machines_table({"machines": entries}), "ai_tokens", top=3)
    assert items == [("m10", 100), ("m9", 90), ("m8", 80), ("7 others", 280)]
    assert chart_items(machines_table({"machines": {}}), "ai_tokens") == []
