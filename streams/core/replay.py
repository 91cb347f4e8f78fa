"""The replay: the metering core over a JSON lines log, without Kafka (``meter replay``).

Lines are processed in order (S1), each parsed and validated by the one validity
function (``schemas.jsonl.parse_line``), then folded into its workspace's
``WorkspaceMeter``. Rejected lines (invalid, or ``cycle_closed`` per S4) become
dead letters; crossings are reported in the order they fired; every cycle's
final numbers are collected when the meter closes it (``UsageCollector``), so
the meters themselves stay bounded and only the results grow with the log's
cycles.

``--plan`` (what-if): plan records from another file replace the log's plans for
their workspaces. The log's plan lines for those workspaces are skipped, and each
what-if plan is applied just before the first event of its workspace whose
occurred_at is at or after the plan's (the rest after the last line).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.events import Event, PlanEvent
from schemas.jsonl import parse_line
from schemas.validation import InvalidEvent
from streams.core.meter import COUNTED, DUPLICATE, Outcome, WorkspaceMeter
from streams.core.quotas import ThresholdCrossing
from streams.core.timefmt import utc_text
from streams.core.usage import CycleUsage

CrossingSink = Callable[[ThresholdCrossing], None]
DeadLetterSink = Callable[[dict[str, Any]], None]


class UsageCollector:
    """Final numbers of every cycle, as ``usage.json`` shows them."""

    def __init__(self) -> None:
        self.cycles: dict[str, dict[int, dict[str, Any]]] = {}

    def cycle_closed(self, workspace_id: str, record: CycleUsage) -> None:
        self.cycles.setdefault(workspace_id, {})[record.start] = record.to_usage_json()

    def usage_json(self) -> dict[str, Any]:
        return {
            "workspaces": {
                ws: {"cycles": {utc_text(start): cycles[start] for start in sorted(cycles)}}
                for ws, cycles in sorted(self.cycles.items())
            }
        }


@dataclass
class ReplayStats:
    lines: int = 0
    blank: int = 0
    counted: int = 0
    duplicates: int = 0
    rejected: int = 0
    crossings: int = 0
    skipped_plans: int = 0  # log plans replaced by --plan
    workspaces: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def raw_text(raw: bytes) -> str:
    """The line as dead-letter ``raw`` text (bytes that are not UTF-8 are escaped)."""
    return raw.rstrip(b"\r\n").decode("utf-8", errors="backslashreplace")


class Replay:
    """The core over one log. Feed lines in order, then ``finish()``."""

    def __init__(
        self,
        *,
        now_ms: int | None,
        on_crossing: CrossingSink,
        on_deadletter: DeadLetterSink,
        what_if_plans: Iterable[PlanEvent] = (),
    ) -> None:
        self.now_ms = now_ms
        self.on_crossing = on_crossing
        self.on_deadletter = on_deadletter
        self.collector = UsageCollector()
        self.meters: dict[str, WorkspaceMeter] = {}
        self.stats = ReplayStats()
        self.what_if: dict[str, list[PlanEvent]] = {}
        for plan in what_if_plans:
            self.what_if.setdefault(plan.workspace_id, []).append(plan)
        for plans in self.what_if.values():
            plans.sort(key=lambda p: p.occurred_at)  # stable: file order on ties

    def _meter(self, workspace_id: str) -> WorkspaceMeter:
        meter = self.meters[workspace_id] = WorkspaceMeter(
            workspace_id, track_changes=False, on_cycle_closed=self.collector.cycle_closed
        )
        return meter

    def feed(self, lines: Iterable[bytes], first_line: int = 1) -> None:
        """Process lines (each a bytes line, newline optional) numbered from ``first_line``."""
        meters = self.meters
        stats = self.stats
        now_ms = self.now_ms
        what_if = self.what_if
        number = first_line - 1
        for number, raw in enumerate(lines, first_line):
            # A blank line is skipped (S12); JSON lines nearly always start with "{".
            if raw[:1] != b"{" and not raw.strip():
                stats.blank += 1
                continue
            try:
                event = parse_line(raw, now_ms=now_ms)
            except InvalidEvent as exc:
                self._reject(number, exc.reason, exc.detail, raw)
                continue
            workspace_id = event.workspace_id
            meter = meters.get(workspace_id)
            if meter is None:
                meter = self._meter(workspace_id)
            if what_if and workspace_id in what_if:
                if type(event) is PlanEvent:
                    stats.skipped_plans += 1
                    continue
                self._apply_what_if(meter, event.occurred_at)
            outcome = meter.apply(event)
            if outcome is COUNTED:
                continue
            self._outcome(number, raw, outcome)
        stats.lines = max(stats.lines, number)

    def _outcome(self, number: int, raw: bytes, outcome: Outcome) -> None:
        if outcome is DUPLICATE:
            self.stats.duplicates += 1
        elif outcome.status == "rejected":
            self._reject(number, outcome.reason or "invalid_value", outcome.detail or "", raw)
        for crossing in outcome.crossings:
            self.stats.crossings += 1
            self.on_crossing(crossing)

    def _apply_what_if(self, meter: WorkspaceMeter, until_ms: int | None) -> None:
        pending = self.what_if.get(meter.workspace_id)
        while pending and (until_ms is None or pending[0].occurred_at <= until_ms):
            outcome = meter.apply(pending.pop(0))
            for crossing in outcome.crossings:
                self.stats.crossings += 1
                self.on_crossing(crossing)

    def _reject(self, number: int, reason: str, detail: str, raw: bytes) -> None:
        self.stats.rejected += 1
        self.stats.reasons[reason] = self.stats.reasons.get(reason, 0) + 1
        self.on_deadletter({"line": number, "reason": reason, "detail": detail,
                            "raw": raw_text(raw)})

    def apply_event(self, event: Event) -> Outcome:
        """Apply one already validated event (tests and what-if plans)."""
        meter = self.meters.get(event.workspace_id) or self._meter(event.workspace_id)
        return meter.apply(event)

    def finish(self) -> dict[str, Any]:
        """Apply leftover what-if plans, collect the open cycles; the usage.json object."""
        for workspace_id in sorted(self.what_if):
            meter = self.meters.get(workspace_id) or self._meter(workspace_id)
            self._apply_what_if(meter, None)
        for meter in self.meters.values():
            for record in meter.open_cycles():
                self.collector.cycle_closed(meter.workspace_id, record)
        total = self.stats.lines - self.stats.blank - self.stats.rejected
        self.stats.counted = total - self.stats.duplicates - self.stats.skipped_plans
        self.stats.workspaces = len(self.meters)
        return self.collector.usage_json()


def dumps_usage(usage: dict[str, Any]) -> bytes:
    """usage.json bytes: sorted keys, so the same log gives byte-identical output."""
    return orjson.dumps(usage, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"


def dumps_line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj) + b"\n"
