"""Quota bars: S9 thresholds in integers, S11 percent, the check API's answer."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard.quotas import (
    HEADROOM,
    Decisions,
    parse_quotas_answer,
    quota_bar,
    quota_bars,
)
from schemas.events import QUOTAS
from tests.dashboard import data


def test_thresholds_are_met_by_integer_comparison() -> None:
    # 79.99 % is not 80 %: used * 100 >= t * limit
    assert quota_bar("ai_tokens", 7_999, 10_000).met == ()
    assert quota_bar("ai_tokens", 8_000, 10_000).met == (80,)
    assert quota_bar("ai_tokens", 9_500, 10_000).met == (80, 95)
    assert quota_bar("ai_tokens", 10_000, 10_000).met == (80, 95, 100)
    assert quota_bar("ai_tokens", 2, 3).percent == 66  # floor, S11


@pytest.mark.parametrize(("used", "level"), [
    (0, "ok"), (79, "ok"), (80, "t80"), (95, "t95"), (100, "over"), (250, "over"),
])
def test_levels_follow_the_highest_threshold_met(used: int, level: str) -> None:
    assert quota_bar("schedule_runs", used, 100).level == level


def test_unlimited_quotas_have_no_percent_marks_or_fill() -> None:
    bar = quota_bar("api_requests_per_cycle", 45_000, None)
    assert (bar.percent, bar.met, bar.level, bar.fill, bar.mark(100)) == (
        None, (), "unlimited", 0.0, 0.0)


def test_the_bar_leaves_headroom_and_stretches_for_overuse() -> None:
    half = quota_bar("ai_tokens", 50, 100)
    assert half.fill == pytest.approx(50 / (100 * HEADROOM))
    assert half.mark(100) == pytest.approx(1 / HEADROOM)
    assert half.mark(80) == pytest.approx(0.8 / HEADROOM)
    over = quota_bar("storage_bytes", 200, 100)
    assert over.fill == 1.0
    assert over.mark(100) == pytest.approx(0.5)
    assert over.mark(95) < over.mark(100)


def test_the_check_api_answer_is_parsed() -> None:
    answer: dict[str, Any] = {
        "workspace_id": "acme", "plan": "team", "cycle_start": "2026-04-01T00:00:00Z",
        "cycle_ends_at": "2026-05-01T00:00:00Z", "as_of": "2026-04-10T11:59:55Z",
        "stale": False,
        "quotas": [{"quota": q, "used": 1, "limit": None, "percent": None,
                    "decision": "queue" if q == "schedule_runs" else "allow",
                    "resets_at": "2026-05-01T00:00:00Z",
                    "cycle_ends_at": "2026-05-01T00:00:00Z", "reason": "r"} for q in QUOTAS],
    }
    decisions = parse_quotas_answer(answer)
    assert decisions.available and not decisions.stale
    assert decisions.by_quota["schedule_runs"].decision == "queue"
    assert decisions.cycle_start == 1_775_001_600_000
    with pytest.raises(ValueError, match="unknown decision"):
        parse_quotas_answer({**answer, "quotas": [{**answer["quotas"][0], "decision": "maybe"}]})


def test_bars_of_a_cycle_follow_the_quota_order_with_decisions() -> None:
    cycle = {**data.CURRENT, "cycle_start": data.APR}
    bars = quota_bars(cycle, Decisions.unavailable("down"))
    assert [b.quota for b in bars] == list(QUOTAS)
    assert all(b.decision is None for b in bars)
    storage = bars[QUOTAS.index("storage_bytes")]
    assert (storage.used, storage.limit, storage.percent) == (3_400_000_000, 3_000_000_000, 113)
