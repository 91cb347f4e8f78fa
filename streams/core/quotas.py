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
from schemas.quotas import QUOTA_SPECS
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


class ThresholdCrossing(NamedTuple):
    """One fired threshold: every field of a ``quota.thresholds`` record (times int ms)."""

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

    def to_record(self) -> dict[str, Any]:
        """The ``quota.thresholds`` record (times as int epoch ms)."""
        return self._asdict()

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ThresholdCrossing:
        """From a decoded ``quota.thresholds`` dict; ``KeyError``/``TypeError`` if off."""
        values = {name: record[name] for name in cls._fields}
        for name in ("threshold", "arm", "current", "limit", "cycle_start", "cycle_ends_at",
                     "crossed_at"):
            if type(values[name]) is not int:
                raise TypeError(f"{name}: expected an integer, got {values[name]!r}")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The ``thresholds.jsonl`` object (times ``YYYY-MM-DDTHH:MM:SSZ``)."""
        record = self._asdict()
        record["cycle_start"] = utc_text(self.cycle_start)
        record["cycle_ends_at"] = utc_text(self.cycle_ends_at)
        record["crossed_at"] = utc_text(self.crossed_at)
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
    """S9/S10 state of every quota in one cycle (lists indexed by quota index)."""

    __slots__ = ("arms", "fire_at", "fired", "last_limit")

    def __init__(self) -> None:
        # per quota: how many of 80/95/100 fired on this arm
        self.fired: list[int] = [0] * QUOTA_COUNT
        # per quota and threshold: the current arm (S10)
        self.arms: list[int] = [1] * (QUOTA_COUNT * len(THRESHOLDS))
        self.last_limit: list[int | None] = [None] * QUOTA_COUNT
        # Not a limit known yet: the first evaluation must run in full.
        self.fire_at: list[int] = [0] * QUOTA_COUNT

    def to_state(self) -> list[Any]:
        return [self.fired, self.arms, self.last_limit]

    @classmethod
    def from_state(cls, state: list[Any]) -> QuotaArms:
        arms = cls()
        arms.fired = list(state[0])
        arms.arms = list(state[1])
        arms.last_limit = list(state[2])
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


def _count_met(used: int, limit: int, fired: int, margin: int) -> int:
    """How many of the first ``fired`` thresholds still hold at ``t - margin`` percent."""
    scaled = used * 100
    n = 0
    while n < fired and scaled >= (THRESHOLDS[n] - margin) * limit:
        n += 1
    return n
