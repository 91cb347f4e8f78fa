"""The quota table (``schemas.quotas``) and every view derived from it agree.

Each quota fact lives in one row of ``QUOTA_SPECS``; the lists, indices and lookups
elsewhere are derived from it. These tests hold the derivations, and the table's
facts against the behaviour of the core (which events move which quota, what a check
answers at the limit, which total shows the usage).
"""

from __future__ import annotations

import typing

import pytest

from alerting.facts import QUOTA_LABELS, facts_of
from schemas.aggregates import METRICS_OF, TOTAL_METRICS
from schemas.events import EVENT_CLASSES, QUOTAS, Event, Limits
from schemas.quotas import (
    CYCLE_COUNTER_NAMES,
    DECISION_AT_LIMIT,
    GAUGE_NAMES,
    HARD_NAMES,
    QUOTA_SPECS,
    SPEC_OF,
    TOPUP_NAMES,
    QuotaName,
    QuotaSpec,
)
from schemas.validation import TOPUP_QUOTAS
from sinks.shape import GAUGES as SINK_GAUGES
from streams.core import quotas as core
from streams.core.enforcement import GAUGES, decide
from streams.core.forecast import COUNTER_QUOTAS
from streams.core.meter import WorkspaceMeter
from streams.core.usage import CycleUsage
from streams.quota_view import HARD_QUOTAS
from tests.alerting.factories import crossing
from tests.streams.core import builders as b

AT = "2026-03-10T12:00:00"


def test_names_are_unique_and_in_s12_order() -> None:
    assert tuple(s.name for s in QUOTA_SPECS) == QUOTAS
    assert len(set(QUOTAS)) == len(QUOTAS)
    assert list(SPEC_OF) == list(QUOTAS)


def test_contract_shapes_list_the_quotas_in_table_order() -> None:
    # Limits, the limits dimension of usage.aggregates and the check API's type.
    assert Limits._fields == QUOTAS
    assert METRICS_OF["limits"] == QUOTAS
    assert typing.get_args(QuotaName) == QUOTAS


def test_name_sets_are_the_table_filtered() -> None:
    assert GAUGE_NAMES == ("machines", "storage_bytes")
    assert frozenset(GAUGE_NAMES) == GAUGES
    assert SINK_GAUGES == GAUGE_NAMES
    assert HARD_NAMES == HARD_QUOTAS == {"machines", "ai_tokens", "api_requests_per_cycle"}
    assert TOPUP_QUOTAS == TOPUP_NAMES == tuple(q for q in QUOTAS
                                                if q != "api_requests_per_minute")
    assert COUNTER_QUOTAS == CYCLE_COUNTER_NAMES == ("ai_tokens", "schedule_runs",
                                                     "api_requests_per_cycle")
    assert set(DECISION_AT_LIMIT) == set(QUOTA_LABELS) == set(QUOTAS)


def test_core_indices_follow_the_table() -> None:
    assert len(QUOTA_SPECS) == core.QUOTA_COUNT
    assert tuple(range(len(QUOTA_SPECS))) == core.ALL_QUOTAS
    assert {q: QUOTAS[q] for q in (core.Q_MACHINES, core.Q_AI_TOKENS, core.Q_STORAGE,
                                   core.Q_SCHEDULE_RUNS, core.Q_API_MINUTE, core.Q_API_CYCLE)} == {
        core.Q_MACHINES: "machines", core.Q_AI_TOKENS: "ai_tokens",
        core.Q_STORAGE: "storage_bytes", core.Q_SCHEDULE_RUNS: "schedule_runs",
        core.Q_API_MINUTE: "api_requests_per_minute", core.Q_API_CYCLE: "api_requests_per_cycle",
    }
    assert {QUOTAS[q] for q in core.GAUGE_QUOTAS} == set(GAUGE_NAMES)
    assert tuple(DECISION_AT_LIMIT[q] for q in QUOTAS) == core.AT_LIMIT_BY_INDEX
    arms = core.QuotaArms()
    assert len(arms.fired) == len(arms.fire_at) == len(arms.last_limit) == len(QUOTAS)
    assert len(arms.arms) == 3 * len(QUOTAS)


def test_each_total_field_is_the_total_shown_under_the_quota_name() -> None:
    usage = CycleUsage(0, 1, core.NO_PLAN, 0, 0)
    for i, spec in enumerate(QUOTA_SPECS):
        setattr(usage, spec.total_field, 1000 + i)
    totals = dict(zip(TOTAL_METRICS, usage.totals(), strict=False))
    assert {s.name: totals[s.name] for s in QUOTA_SPECS} == {
        s.name: 1000 + i for i, s in enumerate(QUOTA_SPECS)}


# One event of each usage type, moving whatever it moves by a little.
_EVENT_OF_TYPE: dict[str, Event] = {
    "tokens": b.tokens(AT, 7),
    "command": b.command(AT),
    "schedule_run": b.run(AT),
    "skill": b.skill(AT),
    "storage": b.storage(AT, delta=5),
    "api": b.api(AT, 3),
    "machine": b.machine(AT, "m1"),
}


@pytest.mark.parametrize("event_type", sorted(_EVENT_OF_TYPE))
def test_fed_by_names_the_event_types_that_move_each_quota(event_type: str) -> None:
    assert all(t in EVENT_CLASSES for s in QUOTA_SPECS for t in s.fed_by)
    meter = WorkspaceMeter("w1")
    meter.apply(b.plan("2026-03-01T00:00:00", anchor="2026-03-01T00:00:00"))
    before = {q["quota"]: q["used"] for q in meter.quota_state_record(b.ms(AT))["quotas"]}
    assert meter.apply(_EVENT_OF_TYPE[event_type]).counted
    after = {q["quota"]: q["used"] for q in meter.quota_state_record(b.ms(AT))["quotas"]}
    moved = {q for q in QUOTAS if after[q] != before[q]}
    assert moved == {s.name for s in QUOTA_SPECS if event_type in s.fed_by}


@pytest.mark.parametrize("spec", QUOTA_SPECS, ids=lambda s: s.name)
def test_a_check_past_the_limit_answers_the_decision_and_unit_of_the_row(spec: QuotaSpec) -> None:
    answer = decide(spec.name, used=5, limit=5, amount=1, cycle_ends_at=b.ms(AT),
                    now_ms=b.ms(AT))
    assert (answer.allowed, answer.decision) == (False, spec.at_limit)
    if spec.name != "machines":  # machines words its own reason (registrations)
        assert f"5 of 5 {spec.unit} used" in answer.reason
    per_minute = answer.resets_at != b.ms(AT)
    assert per_minute == (spec.window == "minute")


@pytest.mark.parametrize("spec", QUOTA_SPECS, ids=lambda s: s.name)
def test_alert_facts_use_the_rows_label_and_topups(spec: QuotaSpec) -> None:
    facts = facts_of(crossing(quota=spec.name, threshold=100))
    assert facts.quota_label == spec.label
    assert ("top-up for this cycle" in facts.raise_limit) == spec.topups
