"""Quota thresholds: when a crossing fires and with which id (S8, S9, S10).

Per cycle and quota the state is tiny: which thresholds have fired on their current
arm, each threshold's arm number, the limit seen at the last evaluation (to notice
a rise, S10 a) and ``fire_at``, the usage at which the next threshold fires.

Fired thresholds always form a prefix of (80, 95, 100): firing goes lowest first
(S9) and both re-arm rules free a suffix (usage below t of a limit is also below
every higher t). So "fired" is one count per quota, and the hot path for a counter
is a single comparison ``used >= fire_at``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from schemas.events import QUOTAS, THRESHOLDS, Limits
from schemas.quotas import CYCLE_COUNTER_NAMES, QUOTA_SPECS
from streams.core.forecast import forecast
from streams.core.timefmt import utc_text

# Index views of ``schemas.quotas.QUOTA_SPECS`` for the hot path: quota ``q`` is
# ``QUOTA_SPECS[q]``, and per-quota state is a list indexed by ``q``.
QUOTA_COUNT: Final = len(QUOTA_SPECS)
ALL_QUOTAS: Final = tuple(range(QUOTA_COUNT))
QUOTA_INDEX: Final = {name: i for i, name in enumerate(QUOTAS)}
Q_MACHINES: Final = QUOTA_INDEX["machines"]
Q_AI_TOKENS: Final = QUOTA_INDEX["ai_tokens"]
Q_STORAGE: Final = QUOTA_INDEX["storage_bytes"]
Q_SCHEDULE_RUNS: Final = QUOTA_INDEX["schedule_runs"]
Q_API_MINUTE: Final = QUOTA_INDEX["api_requests_per_minute"]
Q_API_CYCLE: Final = QUOTA_INDEX["api_requests_per_cycle"]
GAUGE_QUOTAS: Final = frozenset(q for q in ALL_QUOTAS if QUOTA_SPECS[q].kind == "gauge")
# Counters over the whole cycle: the quotas that are forecast (streams/core/forecast.py).
CYCLE_COUNTER_QUOTAS: Final = tuple(QUOTA_INDEX[name] for name in CYCLE_COUNTER_NAMES)
# S11: the decision once a quota is exhausted (and a 100 % crossing's enforcement).
AT_LIMIT_BY_INDEX: Final = tuple(s.at_limit for s in QUOTA_SPECS)
# The CycleUsage attribute holding each quota's usage in a cycle; None for a per-minute
# quota (its usage is the current minute's count, which the meter keeps itself).
USED_FIELD: Final = tuple(None if s.window == "minute" else s.total_field for s in QUOTA_SPECS)
NEVER: Final = 2**63  # fire_at when nothing can fire (no limit, or all three fired)
REARM_MARGIN: Final = 5  # S10 b: gauges re-arm below t - 5 percent
PRUNE_TARGET_PERCENT: Final = 90  # storage.prune_requests: free down to 90 % of the limit


class PlanTerms(NamedTuple):
    """The plan in force: its name and limits (S8), and the schedule it asks for (S2)."""

    name: str | None
    limits: Limits
    cycle_anchor: int | None  # None: no plan (default cycles)
    timezone: str


NO_PLAN: Final = PlanTerms(None, Limits(), None, "UTC")


def effective_limit(plan_limit: int | None, topups: int) -> int | None:
    """S8: plan limit plus the cycle's top-ups; a null (unlimited) limit stays null."""
    return None if plan_limit is None else plan_limit + topups


def alert_id(workspace_id: str, cycle_start: int, quota: str, threshold: int, arm: int) -> str:
    """S10: ``{workspace}/{cycle_start}/{quota}/{t}``, ``#{arm}`` from the second arm on."""
    base = f"{workspace_id}/{utc_text(cycle_start)}/{quota}/{threshold}"
    return base if arm == 1 else f"{base}#{arm}"


def forecast_alert_id(workspace_id: str, cycle_start: int, quota: str, arm: int) -> str:
    """A forecast alert: ``{workspace}/{cycle_start}/{quota}/forecast``, ``#{arm}`` from
    the second arm on (never a threshold's id: those end in a number)."""
    base = f"{workspace_id}/{utc_text(cycle_start)}/{quota}/forecast"
    return base if arm == 1 else f"{base}#{arm}"


KIND_THRESHOLD: Final = "threshold"
KIND_FORECAST: Final = "forecast"


class ThresholdCrossing(NamedTuple):
    """One fired threshold, or a forecast alert (``kind`` ``forecast``: 100 % projected at
    ``forecast_at``): every field of a ``quota.thresholds`` record (times int ms)."""

    alert_id: str
    workspace_id: str
    quota: str
    threshold: int
    arm: int
    highest_in_event: bool
    current: int
    limit: int
    cycle_start: int
    cycle_ends_at: int
    crossed_at: int
    event_id: str
    enforcement: str
    kind: str = KIND_THRESHOLD  # quota.thresholds v2
    forecast_at: int | None = None  # a forecast: when 100 % is projected (epoch ms)

    def to_record(self) -> dict[str, Any]:
        """The ``quota.thresholds`` record (times as int epoch ms)."""
        return self._asdict()

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ThresholdCrossing:
        """From a decoded ``quota.thresholds`` dict; ``KeyError``/``TypeError`` if off."""
        values = {name: record[name] for name in cls._fields[:-2]}
        # version 1 records (and older thresholds.jsonl lines) have neither: thresholds
        values["kind"] = record.get("kind", KIND_THRESHOLD)
        values["forecast_at"] = record.get("forecast_at")
        if values["kind"] not in (KIND_THRESHOLD, KIND_FORECAST):
            raise TypeError(f"kind: expected threshold or forecast, got {values['kind']!r}")
        if values["forecast_at"] is not None and type(values["forecast_at"]) is not int:
            raise TypeError(f"forecast_at: expected an integer, got {values['forecast_at']!r}")
        for name in ("threshold", "arm", "current", "limit", "cycle_start", "cycle_ends_at",
                     "crossed_at"):
            if type(values[name]) is not int:
                raise TypeError(f"{name}: expected an integer, got {values[name]!r}")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The ``thresholds.jsonl`` object (times ``YYYY-MM-DDTHH:MM:SSZ``); a threshold
        crossing has DESIGN.md's fields only, a forecast adds ``kind`` and ``forecast_at``."""
        record = self._asdict()
        record["cycle_start"] = utc_text(self.cycle_start)
        record["cycle_ends_at"] = utc_text(self.cycle_ends_at)
        record["crossed_at"] = utc_text(self.crossed_at)
        if self.kind == KIND_THRESHOLD:
            del record["kind"], record["forecast_at"]
        elif self.forecast_at is not None:
            record["forecast_at"] = utc_text(self.forecast_at)
        return record


class PruneRequest(NamedTuple):
    """A ``storage.prune_requests`` record: free transcripts down to the target."""

    request_id: str
    workspace_id: str
    category: str
    bytes_to_free: int
    current: int
    limit: int
    target: int
    cycle_start: int
    requested_at: int

    def to_record(self) -> dict[str, Any]:
        return self._asdict()


def prune_request(crossing: ThresholdCrossing, transcripts_bytes: int) -> PruneRequest:
    """The request sent with a storage 100 % crossing (its id is the crossing's id).

    Only transcripts can be pruned, so ``bytes_to_free`` is capped at what transcripts hold.
    """
    target = crossing.limit * PRUNE_TARGET_PERCENT // 100
    to_free = min(max(0, crossing.current - target), transcripts_bytes)
    return PruneRequest(
        crossing.alert_id, crossing.workspace_id, "transcripts", to_free, crossing.current,
        crossing.limit, target, crossing.cycle_start, crossing.crossed_at,
    )


def _fire_at(fired: int, limit: int | None) -> int:
    """Smallest usage meeting the lowest unfired threshold: used*100 >= t*limit (S9)."""
    if limit is None or fired >= 3:
        return NEVER
    return -(-THRESHOLDS[fired] * limit // 100)


class QuotaArms:
    """S9/S10 state of every quota in one cycle (lists indexed by quota index), and
    of their forecast alerts.

    A forecast alert has an arm of its own per quota (``forecast_arms``) and fires once
    per arm (``forecast_fired``); the limit rising re-arms it as it re-arms the 100 %
    threshold (S10 a: usage below the new limit).
    """

    __slots__ = ("arms", "fire_at", "fired", "forecast_arms", "forecast_fired", "last_limit")

    def __init__(self) -> None:
        # per quota: how many of 80/95/100 fired on this arm
        self.fired: list[int] = [0] * QUOTA_COUNT
        # per quota and threshold: the current arm (S10)
        self.arms: list[int] = [1] * (QUOTA_COUNT * len(THRESHOLDS))
        self.last_limit: list[int | None] = [None] * QUOTA_COUNT
        # Not a limit known yet: the first evaluation must run in full.
        self.fire_at: list[int] = [0] * QUOTA_COUNT
        self.forecast_fired: list[int] = [0] * QUOTA_COUNT  # 1 once fired on this arm
        self.forecast_arms: list[int] = [1] * QUOTA_COUNT

    def to_state(self) -> list[Any]:
        state = [self.fired, self.arms, self.last_limit]
        # forecast arms only once one moved: most workspaces never opt in (state stays small)
        if any(self.forecast_fired) or any(a != 1 for a in self.forecast_arms):
            state += [self.forecast_fired, self.forecast_arms]
        return state

    @classmethod
    def from_state(cls, state: list[Any]) -> QuotaArms:
        arms = cls()
        arms.fired = list(state[0])
        arms.arms = list(state[1])
        arms.last_limit = list(state[2])
        if len(state) > 3:  # state written before forecast alerts has no forecast arms
            arms.forecast_fired = list(state[3])
            arms.forecast_arms = list(state[4])
        arms.fire_at = [
            _fire_at(f, lim) for f, lim in zip(arms.fired, arms.last_limit, strict=True)
        ]
        return arms

    def evaluate(
        self,
        q: int,
        used: int,
        limit: int | None,
        workspace_id: str,
        cycle_start: int,
        cycle_end: int,
        crossed_at: int,
        event_id: str,
        out: list[ThresholdCrossing],
    ) -> None:
        """Evaluate quota ``q`` at usage ``used`` under ``limit``; append crossings to ``out``.

        Re-arming comes first (S12: a gauge's re-arm is checked before the firing test),
        then every met threshold of the current arm fires, lowest first (S9).
        """
        fired = self.fired[q]
        if self.forecast_fired[q]:
            last = self.last_limit[q]
            # As the 100 % threshold re-arms (S10 a): the limit rose and usage is below it.
            if last is not None and (limit is None or (limit > last and used < limit)):
                self.forecast_fired[q] = 0
                self.forecast_arms[q] += 1
        if fired:
            last = self.last_limit[q]
            # S10 a: the limit rose (null = infinite) and usage is below t of the new one.
            # Lowering a limit never re-arms (S12).
            rose = last is not None and (limit is None or limit > last)
            keep = fired
            if rose:
                keep = 0 if limit is None else _count_met(used, limit, fired, 0)
            # S10 b: gauges re-arm when usage falls below t - 5 percent.
            if q in GAUGE_QUOTAS and limit is not None:
                keep = min(keep, _count_met(used, limit, fired, REARM_MARGIN))
            if keep < fired:
                base = q * 3
                for ti in range(keep, fired):
                    self.arms[base + ti] += 1
                fired = keep
        self.last_limit[q] = limit
        if limit is not None and fired < 3:
            scaled = used * 100
            first = len(out)
            quota = QUOTAS[q]
            while fired < 3 and scaled >= THRESHOLDS[fired] * limit:
                threshold = THRESHOLDS[fired]
                arm = self.arms[q * 3 + fired]
                out.append(ThresholdCrossing(
                    alert_id(workspace_id, cycle_start, quota, threshold, arm),
                    workspace_id, quota, threshold, arm, False, used, limit,
                    cycle_start, cycle_end, crossed_at, event_id,
                    AT_LIMIT_BY_INDEX[q] if threshold == 100 else "allow",
                ))
                fired += 1
            if len(out) > first:
                out[-1] = out[-1]._replace(highest_in_event=True)
        self.fired[q] = fired
        self.fire_at[q] = _fire_at(fired, limit)


    def forecast(
        self,
        q: int,
        used: int,
        limit: int | None,
        lead_ms: int,
        workspace_id: str,
        cycle_start: int,
        cycle_end: int,
        now_ms: int,
        event_id: str,
    ) -> ThresholdCrossing | None:
        """The forecast alert of counter quota ``q`` at ``now_ms``, if it fires now: not
        fired on this arm, past the forecast's guard (24 h, some usage), below the limit,
        and 100 % projected at least ``lead_ms`` before the cycle ends."""
        if self.forecast_fired[q] or limit is None:
            return None
        projection = forecast(used, limit, cycle_start, cycle_end, now_ms)
        reached_at = projection.exhausted_at
        if reached_at is None or cycle_end - reached_at < lead_ms:
            return None
        self.forecast_fired[q] = 1
        arm = self.forecast_arms[q]
        quota = QUOTAS[q]
        return ThresholdCrossing(
            forecast_alert_id(workspace_id, cycle_start, quota, arm), workspace_id, quota,
            100, arm, True, used, limit, cycle_start, cycle_end, now_ms, event_id, "allow",
            KIND_FORECAST, reached_at,
        )


def _count_met(used: int, limit: int, fired: int, margin: int) -> int:
    """How many of the first ``fired`` thresholds still hold at ``t - margin`` percent."""
    scaled = used * 100
    n = 0
    while n < fired and scaled >= (THRESHOLDS[n] - margin) * limit:
        n += 1
    return n
