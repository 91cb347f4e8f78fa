"""``QuotaView``: quota checks in process, for Python gateways, and the check API's engine.

A ``QuotaView`` follows the compacted ``quota.state`` topic (``read_committed``, through
``QuotaStateView``) in a background thread and answers ``check()`` from memory with
the core's S11 rules (``decide_from_state``: decisions and cycle rollover). It applies
the staleness policy: when the newest record or worker heartbeat seen is older than
``METER_API_STALE_AFTER_S``, hard quotas answer by ``METER_API_STALE_POLICY``.
``meter api`` answers every request through one of these, so a gateway embedding it
gets the same answer as one calling the HTTP API.

    view = QuotaView()            # settings from the environment (METER_KAFKA_BOOTSTRAP, ...)
    view.start()
    view.wait_ready(30)
    answer = view.check("ws-1", "ai_tokens", amount=1200)
    if not answer.allowed: ...
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from groundwork.settings import Settings, StalePolicy, get_settings
from schemas.events import QUOTAS
from schemas.quotas import HARD_NAMES
from streams.core.enforcement import Decision, cycle_at, decide_from_state
from streams.core.forecast import COUNTER_QUOTAS, Forecast, forecast
from streams.core.timefmt import utc_text
from streams.state_view import QuotaStateView

# Quotas whose limit rejects (S11); a stale view changes only their answers.
HARD_QUOTAS = HARD_NAMES


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class UnknownWorkspace(LookupError):
    """No ``quota.state`` record (usage or plan) is known for the workspace."""

    def __init__(self, workspace_id: str) -> None:
        super().__init__(f"no usage or plan is known for workspace {workspace_id!r}")
        self.workspace_id = workspace_id


class CheckAnswer(NamedTuple):
    """One quota's answer for one workspace (S11), after the staleness policy."""

    allowed: bool
    decision: str  # allow | reject | queue | throttle | prune
    quota: str
    used: int
    limit: int | None
    percent: int | None
    cycle_start: int  # ms
    cycle_ends_at: int  # ms
    resets_at: int  # ms: cycle_ends_at, or the next minute for throttle
    reason: str
    as_of: int  # ms: when the workspace's record was produced
    stale: bool  # the view as a whole is older than the staleness limit

    def to_json(self) -> dict[str, Any]:
        """The body of ``POST /v1/check``."""
        return {"decision": self.decision, "used": self.used, "limit": self.limit,
                "percent": self.percent, "resets_at": utc_text(self.resets_at),
                "reason": self.reason, "as_of": utc_text(self.as_of), "stale": self.stale}


class WorkspaceAnswers(NamedTuple):
    """Every quota of one workspace, in QUOTAS order."""

    workspace_id: str
    plan: str | None
    cycle_start: int
    cycle_ends_at: int
    as_of: int
    stale: bool
    quotas: list[CheckAnswer]
    # per quota, in QUOTAS order: the counter quotas' forecast at this pace, None for
    # gauges and the per-minute rate
    forecasts: list[Forecast | None]

    def to_json(self) -> dict[str, Any]:
        """The body of ``GET /v1/workspaces/{workspace_id}/quotas``."""
        return {
            "workspace_id": self.workspace_id, "plan": self.plan,
            "cycle_start": utc_text(self.cycle_start),
            "cycle_ends_at": utc_text(self.cycle_ends_at),
            "as_of": utc_text(self.as_of), "stale": self.stale,
            "quotas": [{"quota": a.quota, "used": a.used, "limit": a.limit,
                        "percent": a.percent, "decision": a.decision,
                        "resets_at": utc_text(a.resets_at),
                        "cycle_ends_at": utc_text(a.cycle_ends_at), "reason": a.reason,
                        "forecast": _forecast_json(f)}
                       for a, f in zip(self.quotas, self.forecasts, strict=True)],
        }


def _forecast_json(f: Forecast | None) -> dict[str, Any] | None:
    if f is None:
        return None
    return {"status": f.status, "projected": f.projected,
            "exhausted_at": None if f.exhausted_at is None else utc_text(f.exhausted_at)}


def forecast_of(answer: CheckAnswer, now_ms: int) -> Forecast | None:
    """A counter quota's usage at cycle end and when it reaches 100 % at this pace
    (streams/core/forecast.py); None for gauges and the per-minute rate."""
    if answer.quota not in COUNTER_QUOTAS:
        return None
    return forecast(answer.used, answer.limit, answer.cycle_start, answer.cycle_ends_at,
                    now_ms)


class QuotaView:
    """Quota decisions from an in-memory view of ``quota.state``.

    ``state_view`` and ``clock_ms`` are for tests and for the check API, which hands in
    the view it owns; by default the view reads Kafka once ``start()`` is called.
    """

    def __init__(self, settings: Settings | None = None, *,
                 state_view: QuotaStateView | None = None,
                 clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.settings = settings if settings is not None else get_settings()
        self.state = state_view if state_view is not None else QuotaStateView(self.settings)
        self._clock_ms = clock_ms
        self._stale_after_ms = self.settings.api_stale_after_s * 1000
        self._stale_decision = ("allow" if self.settings.api_stale_policy is StalePolicy.FAIL_OPEN
                                else "reject")
        self._stale_reason = (f"the usage view is older than {self.settings.api_stale_after_s:g} s;"
                              f" {self.settings.api_stale_policy.value} policy: "
                              f"{self._stale_decision}")

    # lifecycle -------------------------------------------------------------------------

    def start(self) -> QuotaView:
        self.state.start()
        return self

    def stop(self) -> None:
        self.state.stop()

    def __enter__(self) -> QuotaView:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def ready(self) -> bool:
        """True once every partition of ``quota.state`` has been read to its end."""
        return self.state.ready

    def wait_ready(self, timeout_s: float) -> bool:
        return self.state.wait_ready(timeout_s)

    @property
    def as_of(self) -> int:
        """Milliseconds: the newest record or worker heartbeat seen (0 before any)."""
        return self.state.newest_seen_ms

    @property
    def stale(self) -> bool:
        return self._clock_ms() - self.state.newest_seen_ms > self._stale_after_ms

    def __len__(self) -> int:
        return len(self.state)

    # answers ---------------------------------------------------------------------------

    def check(self, workspace_id: str, quota: str, amount: int = 1,
              machine_id: str | None = None) -> CheckAnswer:
        """May ``amount`` more units of ``quota`` go through for the workspace?

        Raises ``UnknownWorkspace``, or ``ValueError`` for an unknown quota or a
        negative amount.
        """
        record = self.state.get(workspace_id)
        if record is None:
            raise UnknownWorkspace(workspace_id)
        now_ms = self._clock_ms()
        stale = now_ms - self.state.newest_seen_ms > self._stale_after_ms
        return self._answer(decide_from_state(record, now_ms, quota, amount, machine_id),
                            record["as_of"], stale)

    def workspace(self, workspace_id: str) -> WorkspaceAnswers:
        """Every quota of the workspace, for one more unit each."""
        record = self.state.get(workspace_id)
        if record is None:
            raise UnknownWorkspace(workspace_id)
        now_ms = self._clock_ms()
        stale = now_ms - self.state.newest_seen_ms > self._stale_after_ms
        answers = [self._answer(decide_from_state(record, now_ms, quota), record["as_of"], stale)
                   for quota in QUOTAS]
        cycle_start, cycle_ends_at = cycle_at(record, now_ms)
        return WorkspaceAnswers(workspace_id, record["plan"], cycle_start, cycle_ends_at,
                                record["as_of"], stale, answers,
                                [forecast_of(a, now_ms) for a in answers])

    def _answer(self, core: Decision, as_of: int, stale: bool) -> CheckAnswer:
        decision, allowed, reason = core.decision, core.allowed, core.reason
        # A stale view changes hard quotas' answers only (S11's reject quotas).
        if stale and core.quota in HARD_QUOTAS and decision != self._stale_decision:
            decision = self._stale_decision
            allowed = decision == "allow"
            reason = self._stale_reason
        return CheckAnswer(allowed, decision, core.quota, core.used, core.limit, core.percent,
                           core.cycle_start, core.cycle_ends_at, core.resets_at, reason,
                           as_of, stale)
