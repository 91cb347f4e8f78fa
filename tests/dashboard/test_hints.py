"""Reducing-usage hints: order, estimates and what they cannot tell."""

from __future__ import annotations

from typing import Any

from dashboard.hints import (
    agent_context_hint,
    hints,
    model_choice_hint,
    schedule_frequency_hint,
    skill_cache_hint,
)
from sinks.shape import parse_time
from tests.dashboard import data

CYCLE: dict[str, Any] = {**data.CURRENT, "cycle_start": data.APR}


def test_hints_come_in_order_of_impact() -> None:
    assert [h.key for h in hints(CYCLE, data.NOW)] == [
        "skill_cache", "model_choice", "schedule_frequency", "agent_context"]


def test_skill_cache_estimates_tokens_saved_at_the_target_hit_rate() -> None:
    hint = skill_cache_hint(CYCLE)
    # summarize: 600 calls, 60 hits, 270 k tokens over 540 misses = 500 per uncached call;
    # reaching 50 % adds 240 hits = 120 000 tokens. triage is already at 75 %.
    assert hint.status == "act"
    assert hint.saving_tokens == 120_000
    assert [r[0] for r in hint.rows] == ["summarize"]
    assert hint.rows[0] == ("summarize", "600", "10 %", "500", "120 k")
    assert "120 k tokens" in hint.headline and "10 %" in hint.headline


def test_skill_cache_without_calls_or_already_cached() -> None:
    assert skill_cache_hint({"skills": {}}).status == "none"
    cached = {"skills": {"s": {"invocations": 10, "cache_hits": 6, "ai_tokens": 400}}}
    assert skill_cache_hint(cached).status == "ok"
    all_hits = {"skills": {"s": {"invocations": 10, "cache_hits": 10, "ai_tokens": 0}}}
    assert skill_cache_hint(all_hits).status == "ok"


def test_model_choice_measures_the_share_on_large_models() -> None:
    hint = model_choice_hint(CYCLE)
    assert hint.status == "act"  # 680 k of 1 234 567 = 55 %
    assert hint.rows == (("anthropic/claude-opus-4", "680 k", "55 %"),)
    small = {"providers": {"openai": {"input_tokens": 1, "output_tokens": 1, "models": {
        "gpt-4o-mini": {"input_tokens": 1, "output_tokens": 1}}}}}
    assert model_choice_hint(small).status == "ok"
    assert model_choice_hint({"providers": {}}).status == "none"


def test_schedule_frequency_flags_members_over_the_15_minute_pace() -> None:
    hint = schedule_frequency_hint(CYCLE, data.NOW)
    # 9.5 days since the cycle start: one schedule every 15 minutes is 912 runs.
    assert hint.status == "act"
    assert hint.rows[0] == ("kim", "1.6 k", "8 min", "yes")
    assert hint.rows[1] == ("lee", "400", "34 min", "no")
    assert "schedule_id" in hint.needs
    calm = {**CYCLE, "members": {"lee": {"schedule_runs": 400}},
            "totals": {**CYCLE["totals"], "schedule_runs": 400}}
    assert schedule_frequency_hint(calm, data.NOW).status == "ok"


def test_schedule_frequency_of_a_closed_cycle_uses_its_whole_length() -> None:
    later = parse_time("2026-09-01T00:00:00Z")
    hint = schedule_frequency_hint(CYCLE, later)  # 30 days: 2 880 runs per schedule
    assert hint.status == "ok"


def test_schedule_frequency_at_the_cycle_start_says_so() -> None:
    hint = schedule_frequency_hint(CYCLE, parse_time(data.APR))
    assert hint.status == "info"
    assert "just started" in hint.headline


def test_agent_context_says_what_it_cannot_compute() -> None:
    hint = agent_context_hint(CYCLE)
    assert hint.status == "info"  # 1 080 000 input vs 154 567 output: 7 to 1
    assert "7 input tokens per output token" in hint.detail
    assert "count of chats" in hint.needs
    assert hint.rows[0] == ("kim", "500 k", "71 %")
    heavy = {"providers": {"p": {"input_tokens": 2_100, "output_tokens": 100, "models": {}}},
             "members": {}}
    assert agent_context_hint(heavy).status == "act"


def test_schedule_frequency_with_runs_not_attributed_to_members() -> None:
    busy = {**CYCLE, "members": {}, "totals": {**CYCLE["totals"], "schedule_runs": 5_000}}
    hint = schedule_frequency_hint(busy, data.NOW)  # 5 000 runs > 912: cannot attribute
    assert hint.status == "info"
    assert "not every run is attributed" in hint.detail.lower()
    calm = {**busy, "totals": {**CYCLE["totals"], "schedule_runs": 900}}
    assert schedule_frequency_hint(calm, data.NOW).status == "ok"  # all together within pace


def test_hints_state_their_saving_in_dollars() -> None:
    # summarize cost 1,080,000 uUSD over 540 uncached calls = 2,000 per call; the 240
    # calls a 50 % hit rate would spare: 480,000 uUSD = $0.48
    priced = {**CYCLE, "cost": {**CYCLE["cost"], "skills": {"summarize": 1_080_000}}}
    hint = skill_cache_hint(priced)
    assert hint.saving_micros == 480_000
    assert "about $0.48" in hint.headline
    # large model claude-opus-4: 680,000 tokens for 15,000,000 uUSD; the small models
    # priced 554,567 tokens for 154,740 uUSD, so 680,000 tokens at their mean price cost
    # 189,739 (floor of 189,739.8): saving 14,810,261 uUSD
    model = model_choice_hint(CYCLE)
    assert model.saving_micros == 14_810_261
    assert "save about $14.81" in model.headline
    assert model_choice_hint({k: v for k, v in CYCLE.items() if k != "cost"}).saving_micros \
        is None  # no cost object: no dollar estimate
