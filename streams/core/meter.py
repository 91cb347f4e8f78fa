"""``WorkspaceMeter``: one workspace's whole metering state and the fold over its events.

This is the processor the stream worker, the replay and the tests drive:

    meter = WorkspaceMeter("w1")
    outcome = meter.apply(event)          # counted / duplicate / rejected + crossings
    meter.take_changed_aggregates(now_ms) # usage.aggregates records of changed cycles
    meter.quota_state_record(now_ms)      # the quota.state record

Its stored form (the stream's changelog and local store) is ``streams.core.state_codec``'s.

What it holds (and why memory is bounded): the current and the previous cycle only
(S4: older cycles no longer accept events), the running gauges (registered machine
ids, three storage categories), the two latest API minutes (S7), the S6 id memory
(``ids``: in memory for the replay, a store of its own in the stream, see
``dedup``), top-up ids of the open cycles, and
the timeline segments still needed for those cycles. A cycle leaving the open
window is handed to ``on_cycle_closed`` (the replay collects them for usage.json;
the stream has already emitted its aggregates) and forgotten.

Hot path: an event inside the current cycle does one S6 lookup, compares two ints
to find its cycle (``_count``), updates ints in place and compares usage with
``fire_at`` (the usage at which the next threshold fires); nothing is allocated for
an event that crosses nothing (the outcome is a shared constant).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, NamedTuple

from schemas.events import (
    DEFAULT_FORECAST_LEAD_DAYS,
    QUOTAS,
    STORAGE_CATEGORIES,
    AlertSettingsEvent,
    ApiEvent,
    CommandEvent,
    Event,
    MachineEvent,
    PlanEvent,
    ScheduleRunEvent,
    SkillEvent,
    StorageEvent,
    TokensEvent,
    TopupEvent,
)
from streams.core.cycles import DEFAULT_SCHEDULE, CycleBounds, Schedule, Timeline
from streams.core.dedup import (
    K_ALERT,
    K_API,
    K_COMMAND,
    K_MACHINE,
    K_PLAN,
    K_SCHEDULE,
    K_SKILL,
    K_STORAGE,
    K_TOKENS,
    CycleIds,
    EventIds,
    IdWindows,
)
from streams.core.enforcement import decide
from streams.core.pricing import PRICER, Pricer
from streams.core.quotas import (
    ALL_QUOTAS,
    CYCLE_COUNTER_QUOTAS,
    GAUGE_QUOTAS,
    NO_PLAN,
    Q_AI_TOKENS,
    Q_API_CYCLE,
    Q_API_MINUTE,
    Q_MACHINES,
    Q_SCHEDULE_RUNS,
    Q_STORAGE,
    QUOTA_COUNT,
    QUOTA_INDEX,
    USED_FIELD,
    PlanTerms,
    PruneRequest,
    ThresholdCrossing,
    prune_request,
)
from streams.core.timefmt import MINUTE_MS, utc_text
from streams.core.usage import (
    LIMITS,
    TOTALS,
    CycleUsage,
    MachineUsage,
    MemberUsage,
    SkillUsage,
    TokenUsage,
    entry,
)

DAY_MS: Final = 86_400_000
_CATEGORY: Final = {name: i for i, name in enumerate(STORAGE_CATEGORIES)}


class Outcome(NamedTuple):
    """What applying one event did."""

    status: str  # "counted" | "duplicate" | "rejected"
    reason: str | None  # S12 code when rejected (cycle_closed)
    detail: str | None
    crossings: tuple[ThresholdCrossing, ...]
    prune_requests: tuple[PruneRequest, ...]

    @property
    def counted(self) -> bool:
        return self.status == "counted"


COUNTED: Final = Outcome("counted", None, None, (), ())
DUPLICATE: Final = Outcome("duplicate", None, None, (), ())

CycleListener = Callable[[str, CycleUsage], None]


def _closed(t: int, prev_start: int) -> Outcome:
    return Outcome(
        "rejected", "cycle_closed",
        f"occurred_at {utc_text(t)} is in a closed cycle (the previous cycle started "
        f"{utc_text(prev_start)}; S4)", (), (),
    )


class WorkspaceMeter:
    """All metering state of one workspace (see the module docstring)."""

    # Prices tokens events (None: pricing off, every cost 0; the benchmark's baseline).
    pricer: Pricer | None = PRICER

    __slots__ = (
        "_full_eval", "carry_machines", "carry_storage", "count_new", "count_old", "cur",
        "forecast_leads", "ids",
        "machine_ids", "minute_new", "minute_old", "on_cycle_closed", "pending_aggregates",
        "plan", "prev", "prev_start", "storage", "storage_total", "timeline", "topup_ids",
        "track_changes", "version", "workspace_id",
    )

    def __init__(
        self,
        workspace_id: str,
        *,
        track_changes: bool = True,
        on_cycle_closed: CycleListener | None = None,
        ids: EventIds | None = None,
    ) -> None:
        self.workspace_id = workspace_id
        self.track_changes = track_changes  # usage.aggregates bookkeeping (off in replay)
        self.on_cycle_closed = on_cycle_closed
        self.timeline = Timeline()
        self.plan: PlanTerms = NO_PLAN  # the plan in force (S3: when processed)
        self.cur: CycleUsage | None = None  # S4: the latest cycle of any counted event
        self.prev: CycleUsage | None = None  # the cycle before it, if anything counted there
        self.prev_start = 0  # start of the schedule's cycle before the current one
        # Gauges carried into the previous cycle when it has no record of its own (S7).
        self.carry_machines = 0
        self.carry_storage = 0
        self.machine_ids: set[str] = set()  # S7: registered machines
        self.storage = [0, 0, 0]  # S7: per category, never below 0
        self.storage_total = 0
        # S7: the workspace's latest two event-time minutes (minute index, count).
        self.minute_old = -1
        self.count_old = 0
        self.minute_new = -1
        self.count_new = 0
        # S6: in memory unless the owner keeps the ids in a store of its own (the stream)
        self.ids: EventIds = IdWindows() if ids is None else ids
        self.topup_ids = CycleIds()
        self.version = 0  # usage.aggregates / quota.state version: only grows
        # usage.aggregates records of cycles closed before the next take
        self.pending_aggregates: list[dict[str, Any]] = []
        # Forecast alerts, per quota: the lead (ms before the cycle ends that 100 % must be
        # projected) when the latest alert_settings opts the quota in, else None.
        self.forecast_leads: list[int | None] = [None] * QUOTA_COUNT
        self._full_eval = False  # evaluate every quota at the end of this event (S9)

    # ------------------------------------------------------------------ entry point

    def apply(self, event: Event) -> Outcome:
        """Fold one validated event into the state (S1: call in partition order)."""
        return _HANDLERS[type(event)](self, event)

    # ------------------------------------------------------------------ cycles (S2-S4)

    def _count(self, kind: int, ev: Event) -> CycleUsage | Outcome:
        """The preamble of counting ``ev`` (an event with an S6 window of type ``kind``):
        the cycle record it counts in, its id now remembered; or, when it does not
        count, its outcome (a duplicate, S6; a closed cycle, S4)."""
        ids = self.ids
        if ids.seen(kind, ev.event_id):
            return DUPLICATE
        t = ev.occurred_at
        c = self.cur
        if c is None or not c.start <= t < c.end:
            c = self._enter(t)
            if c is None:
                return _closed(t, self.prev_start)
        ids.remember(kind, ev.event_id, t)
        return c

    def _cycle_at(self, t: int) -> CycleUsage | None:
        """The cycle record an event at ``t`` counts in (see ``_enter``)."""
        c = self.cur
        if c is not None and c.start <= t < c.end:
            return c
        return self._enter(t)

    def _enter(self, t: int) -> CycleUsage | None:
        """The cycle record an event at ``t`` counts in, rolling over if it is newer (S4).

        None: the cycle is closed (older than the previous one). Called only when
        ``t`` is outside the current cycle (the hot path compares ms itself).
        """
        cur = self.cur
        if cur is None:
            self._open_first(self.timeline.cycle_of(t))
            return self.cur
        if t >= cur.end:
            self._roll_to(self.timeline.cycle_of(t))
            return self.cur
        if t >= self.prev_start:
            return self._previous()
        return None

    def _new_record(self, bounds: CycleBounds, machines: int, storage: int) -> CycleUsage:
        record = CycleUsage(bounds.start, bounds.end, self.plan, machines, storage)
        if self.track_changes:
            record.dirty = set(record.entries())
        return record

    def _open_first(self, bounds: CycleBounds) -> None:
        self.cur = self._new_record(bounds, len(self.machine_ids), self.storage_total)
        self.prev_start = self.timeline.cycle_of(bounds.start - 1).start
        self.carry_machines = len(self.machine_ids)
        self.carry_storage = self.storage_total
        self._full_eval = True  # S9: every quota at the first event of a new cycle

    def _roll_to(self, bounds: CycleBounds) -> None:
        """S4: the event's cycle becomes current; cycles before the previous one close."""
        old_cur = self.cur
        old_prev = self.prev
        assert old_cur is not None
        prev_start = self.timeline.cycle_of(bounds.start - 1).start
        if old_prev is not None:
            self._close(old_prev)
        if old_cur.start == prev_start:
            self.prev = old_cur
        else:
            self._close(old_cur)
            self.prev = None
        # Without a record of its own, the previous cycle shows the carried gauges (S7).
        self.carry_machines = len(self.machine_ids)
        self.carry_storage = self.storage_total
        self.prev_start = prev_start
        self.cur = self._new_record(bounds, len(self.machine_ids), self.storage_total)
        self._full_eval = True
        self.topup_ids.forget_before(prev_start)
        self.timeline.forget_before(prev_start)

    def _previous(self) -> CycleUsage:
        """The previous cycle's record (created when a late event is its first, S4)."""
        cur = self.cur
        assert cur is not None
        record = self.prev
        if record is None:
            record = self._new_record(
                CycleBounds(self.prev_start, cur.start), self.carry_machines, self.carry_storage
            )
            self.prev = record
            self._full_eval = True
        elif record.plan is not self.plan and record.plan != self.plan:
            # S3/S12: an event counts under the plan in force when it is processed.
            record.plan = self.plan
            if record.dirty is not None:
                record.dirty.add(LIMITS)
            self._full_eval = True
        return record

    def _close(self, record: CycleUsage) -> None:
        if record.dirty:
            self.pending_aggregates.append(self._aggregate_of(record, record.dirty))
            record.dirty = set()
        if self.on_cycle_closed is not None:
            self.on_cycle_closed(self.workspace_id, record)

    # ------------------------------------------------------------------ quotas (S9)

    def _used(self, c: CycleUsage, q: int, t: int) -> int:
        field = USED_FIELD[q]  # schemas.quotas: the cycle's attribute, None per minute
        if field is not None:
            used: int = getattr(c, field)
            return used
        # S12: on plan, top-up and new-cycle evaluations, the count of the event's minute.
        return self._minute_count(t // MINUTE_MS)

    def _minute_count(self, minute: int) -> int:
        if minute == self.minute_new:
            return self.count_new
        if minute == self.minute_old:
            return self.count_old
        return 0

    def _evaluate(
        self, c: CycleUsage, event: Event, quotas: tuple[int, ...],
        minute_used: int | None = None, then: CycleUsage | None = None,
    ) -> Outcome:
        """Evaluate ``quotas`` in ``c`` (all of them when a new cycle or plan asks, S9),
        then, for a gauge event in the previous cycle, the gauge quota in ``then``."""
        out: list[ThresholdCrossing] = []
        if self._full_eval:
            self._full_eval = False
            quotas = ALL_QUOTAS
        t = event.occurred_at
        for cycle in (c, then):
            if cycle is None:
                continue
            arms = cycle.quotas
            for q in quotas:  # QUOTAS order: S12's order of one event's crossings
                if q == Q_API_MINUTE and minute_used is not None:
                    used = minute_used
                else:
                    used = self._used(cycle, q, t)
                arms.evaluate(q, used, cycle.limit(q), self.workspace_id, cycle.start,
                              cycle.end, t, event.event_id, out)
            quotas = tuple(q for q in quotas if q in GAUGE_QUOTAS)
        if not out:
            return COUNTED
        prunes = tuple(
            prune_request(x, self.storage[0]) for x in out
            if x.quota == "storage_bytes" and x.threshold == 100
        )
        return Outcome("counted", None, None, tuple(out), prunes)

    def _forecasts(self, c: CycleUsage, quotas: tuple[int, ...], event: Event,
                   outcome: Outcome) -> Outcome:
        """Add the forecast alerts that fire after ``event`` (its time is "now") to
        ``outcome``: opted-in counter ``quotas``, current cycle only (a previous cycle has
        ended in event time)."""
        if c is not self.cur:
            return outcome
        found = []
        for q in quotas:
            lead = self.forecast_leads[q]
            if lead is None:
                continue
            alert = c.quotas.forecast(q, self._used(c, q, 0), c.limit(q), lead,
                                      self.workspace_id, c.start, c.end, event.occurred_at,
                                      event.event_id)
            if alert is not None:
                found.append(alert)
        if not found:
            return outcome
        return Outcome("counted", None, None, outcome.crossings + tuple(found),
                       outcome.prune_requests)

    def _counter_moved(self, c: CycleUsage, ev: Event, q: int, used: int) -> Outcome:
        """``ev`` raised counter quota ``q`` to ``used``: evaluate once it reaches the
        quota's next armed threshold (or on every event in full evaluation), then add its
        forecast if the workspace opted in."""
        outcome = COUNTED
        if used >= c.quotas.fire_at[q] or self._full_eval:
            outcome = self._evaluate(c, ev, (q,))
        if self.forecast_leads[q] is None:
            return outcome
        return self._forecasts(c, (q,), ev, outcome)

    # ------------------------------------------------------------------ handlers

    def _tokens(self, ev: TokensEvent) -> Outcome:
        c = self._count(K_TOKENS, ev)
        if isinstance(c, Outcome):
            return c
        n = ev.input_tokens + ev.output_tokens
        c.ai_tokens += n
        pricer = self.pricer
        cost: int | None = 0
        if pricer is not None:
            cost = pricer.cost(ev.provider, ev.model, ev.occurred_at, ev.input_tokens,
                               ev.output_tokens, ev.cache_read_tokens, ev.cache_write_tokens)
            if c.prices_version is None:
                c.prices_version = pricer.version
        unpriced = 0
        if cost is None:  # the price table does not know the model: never guessed
            cost = 0
            unpriced = n
            c.unpriced_tokens += n
        else:
            c.cost_micros += cost
        member = entry(c.by_member, ev.member_id, MemberUsage)
        member.ai_tokens += n
        member.cost_micros += cost
        if ev.surface == "chat":
            member.chat_tokens += n
        machine_id = ev.machine_id
        if machine_id is not None:
            machine = entry(c.by_machine, machine_id, MachineUsage)
            machine.ai_tokens += n
            machine.cost_micros += cost
        skill_name = ev.skill
        if skill_name is not None:
            skill = entry(c.by_skill, skill_name, SkillUsage)
            skill.ai_tokens += n
            skill.cost_micros += cost
        provider_name = ev.provider
        entry(c.by_provider, provider_name, TokenUsage).add(ev, cost, unpriced)
        models = entry(c.by_model, provider_name, dict)
        entry(models, ev.model, TokenUsage).add(ev, cost, unpriced)
        dirty = c.dirty
        if dirty is not None:
            dirty.add(TOTALS)
            dirty.add(("member", ev.member_id))
            dirty.add(("provider", provider_name))
            dirty.add(("model", f"{provider_name}/{ev.model}"))
            if machine_id is not None:
                dirty.add(("machine", machine_id))
            if skill_name is not None:
                dirty.add(("skill", skill_name))
        return self._counter_moved(c, ev, Q_AI_TOKENS, c.ai_tokens)

    def _command(self, ev: CommandEvent) -> Outcome:
        c = self._count(K_COMMAND, ev)
        if isinstance(c, Outcome):
            return c
        c.commands += 1
        member = entry(c.by_member, ev.member_id, MemberUsage)
        member.commands += 1
        machine = entry(c.by_machine, ev.machine_id, MachineUsage)
        machine.commands += 1
        dirty = c.dirty
        if dirty is not None:
            dirty.add(TOTALS)
            dirty.add(("member", ev.member_id))
            dirty.add(("machine", ev.machine_id))
        if self._full_eval:  # S12: a command evaluates nothing unless it opens a cycle
            return self._evaluate(c, ev, ())
        return COUNTED

    def _schedule_run(self, ev: ScheduleRunEvent) -> Outcome:
        c = self._count(K_SCHEDULE, ev)
        if isinstance(c, Outcome):
            return c
        c.schedule_runs += 1
        member = entry(c.by_member, ev.member_id, MemberUsage)
        member.schedule_runs += 1
        dirty = c.dirty
        if dirty is not None:
            dirty.add(TOTALS)
            dirty.add(("member", ev.member_id))
        return self._counter_moved(c, ev, Q_SCHEDULE_RUNS, c.schedule_runs)

    def _skill(self, ev: SkillEvent) -> Outcome:
        c = self._count(K_SKILL, ev)
        if isinstance(c, Outcome):
            return c
        c.skill_invocations += 1
        skill = entry(c.by_skill, ev.skill, SkillUsage)
        skill.invocations += 1
        if ev.cache_hit:
            skill.cache_hits += 1
        dirty = c.dirty
        if dirty is not None:
            dirty.add(TOTALS)
            dirty.add(("skill", ev.skill))
        if self._full_eval:
            return self._evaluate(c, ev, ())
        return COUNTED

    def _api(self, ev: ApiEvent) -> Outcome:
        c = self._count(K_API, ev)
        if isinstance(c, Outcome):
            return c
        n = ev.requests
        c.api_requests += n
        # S7: per-minute counts for the latest two event-time minutes only.
        minute = ev.occurred_at // MINUTE_MS
        count: int | None
        if minute == self.minute_new:
            count = self.count_new = self.count_new + n
        elif minute > self.minute_new:
            self.minute_old, self.count_old = self.minute_new, self.count_new
            self.minute_new = minute
            count = self.count_new = n
        elif minute == self.minute_old:
            count = self.count_old = self.count_old + n
        elif minute > self.minute_old:  # between the two: it becomes the older one
            self.minute_old = minute
            count = self.count_old = n
        else:
            count = None  # older minutes count toward the cycle only
        if count is not None and count > c.api_busiest_minute:
            c.api_busiest_minute = count
        if c.dirty is not None:
            c.dirty.add(TOTALS)
        fire_at = c.quotas.fire_at
        outcome = COUNTED
        if (
            c.api_requests >= fire_at[Q_API_CYCLE]
            or (count is not None and count >= fire_at[Q_API_MINUTE])
            or self._full_eval
        ):
            # An older minute's usage is unknown (S7), so only the per-cycle quota moves.
            quotas = (Q_API_CYCLE,) if count is None else (Q_API_MINUTE, Q_API_CYCLE)
            outcome = self._evaluate(c, ev, quotas, minute_used=count)
        if self.forecast_leads[Q_API_CYCLE] is None:
            return outcome
        return self._forecasts(c, (Q_API_CYCLE,), ev, outcome)

    def _gauge_cycle(self, t: int) -> tuple[CycleUsage | None, CycleUsage]:
        """(the event's own open cycle or None if closed, the current cycle) for a gauge."""
        own = self._cycle_at(t)
        cur = self.cur
        assert cur is not None  # a closed cycle implies a current one
        return own, cur

    def _gauge_moved(
        self, own: CycleUsage | None, cur: CycleUsage, ev: Event, q: int
    ) -> Outcome:
        """Show the running gauge in the current cycle (and in the event's own, if open)
        and evaluate: in the event's cycle, and in the current cycle if that differs
        (S4, S12: a late gauge event in a closed cycle is evaluated in the current one)."""
        machines, storage = len(self.machine_ids), self.storage_total
        cur.machines_gauge = machines
        cur.storage_gauge = storage
        if cur.dirty is not None:
            cur.dirty.add(TOTALS)
        if own is not None and own is not cur:
            # Only the gauge this event moved: the previous cycle keeps the other gauge's
            # value after its own last event there (or the carried one), whatever the
            # order across topics (S1; a storage event processed before a late machine
            # event must not leak into the previous cycle's storage_bytes).
            if q == Q_MACHINES:
                own.machines_gauge = machines
            else:
                own.storage_gauge = storage
            if own.dirty is not None:
                own.dirty.add(TOTALS)
        if own is None:
            return self._evaluate(cur, ev, (q,))
        return self._evaluate(own, ev, (q,), then=None if own is cur else cur)

    def _storage(self, ev: StorageEvent) -> Outcome:
        ids = self.ids
        if ids.seen(K_STORAGE, ev.event_id):
            return DUPLICATE
        own, cur = self._gauge_cycle(ev.occurred_at)
        ids.remember(K_STORAGE, ev.event_id, ev.occurred_at)
        i = _CATEGORY[ev.category]
        old = self.storage[i]
        new = ev.total_bytes if ev.total_bytes is not None else max(0, old + (ev.delta_bytes or 0))
        self.storage[i] = new
        self.storage_total += new - old
        return self._gauge_moved(own, cur, ev, Q_STORAGE)

    def _machine(self, ev: MachineEvent) -> Outcome:
        ids = self.ids
        if ids.seen(K_MACHINE, ev.event_id):
            return DUPLICATE
        own, cur = self._gauge_cycle(ev.occurred_at)
        ids.remember(K_MACHINE, ev.event_id, ev.occurred_at)
        # S7: registering a registered id or removing an unknown one changes nothing.
        if ev.action == "registered":
            self.machine_ids.add(ev.machine_id)
        else:
            self.machine_ids.discard(ev.machine_id)
        return self._gauge_moved(own, cur, ev, Q_MACHINES)

    def _plan(self, ev: PlanEvent) -> Outcome:
        ids = self.ids
        if ids.seen(K_PLAN, ev.event_id):
            return DUPLICATE
        t = ev.occurred_at
        terms = PlanTerms(ev.plan, ev.limits, ev.cycle_anchor, ev.timezone or "UTC")
        schedule = Schedule(ev.cycle_anchor, terms.timezone)
        if self.cur is None:
            # S12: a first plan before anything counted applies at once; its anchor
            # cuts the cycles from the start.
            self.timeline = Timeline(schedule)
            self.plan = terms
            c = self._enter(t)
            assert c is not None
        else:
            found = self._cycle_at(t)
            if found is None:
                return _closed(t, self.prev_start)
            c = found
            cur = self.cur
            # S3: a new anchor/timezone applies from the end of the plan event's cycle.
            # A late plan (previous cycle) never re-cuts the open current cycle: it
            # applies from the current cycle's end (a documented departure).
            self.timeline.change_at(max(c.end, cur.end), schedule)
            self.plan = terms
            for record in (c, cur):
                record.plan = terms  # S12: name and limits apply at once
                if record.dirty is not None:
                    record.dirty.add(LIMITS)
                    record.dirty.add(TOTALS)
        ids.remember(K_PLAN, ev.event_id, t)
        self._full_eval = True  # S9: every quota after a plan change
        other = self.cur if self.cur is not c else None
        outcome = self._evaluate(c, ev, ALL_QUOTAS)
        if other is not None:
            self._full_eval = True
            more = self._evaluate(other, ev, ALL_QUOTAS)
            if more.crossings:
                outcome = Outcome(
                    "counted", None, None, outcome.crossings + more.crossings,
                    outcome.prune_requests + more.prune_requests,
                )
        assert self.cur is not None
        return self._forecasts(self.cur, CYCLE_COUNTER_QUOTAS, ev, outcome)

    def _topup(self, ev: TopupEvent) -> Outcome:
        if self.topup_ids.seen(ev.event_id):
            return DUPLICATE  # S6: top-up ids are remembered while their cycle is open
        t = ev.occurred_at
        c = self._cycle_at(t)
        if c is None:
            return _closed(t, self.prev_start)
        self.topup_ids.remember(ev.event_id, c.start)
        q = QUOTA_INDEX[ev.quota]
        c.topups[q] += ev.amount  # S8 (on a null limit it has no effect: effective_limit)
        if c.dirty is not None:
            c.dirty.add(LIMITS)
        return self._forecasts(c, (q,), ev, self._evaluate(c, ev, (q,)))

    def _alert_settings(self, ev: AlertSettingsEvent) -> Outcome:
        c = self._count(K_ALERT, ev)
        if isinstance(c, Outcome):
            return c
        # The settings in force from now on: forecast alerts of the quotas opted in.
        leads: list[int | None] = [None] * QUOTA_COUNT
        for opt_in in ev.forecasts:
            days = DEFAULT_FORECAST_LEAD_DAYS if opt_in.lead_days is None else opt_in.lead_days
            leads[QUOTA_INDEX[opt_in.quota]] = days * DAY_MS
        self.forecast_leads = leads
        outcome = self._evaluate(c, ev, ()) if self._full_eval else COUNTED
        return self._forecasts(c, CYCLE_COUNTER_QUOTAS, ev, outcome)

    # ------------------------------------------------------------------ outputs

    def open_cycles(self) -> list[CycleUsage]:
        """The open cycles, oldest first (the replay reads them out at the end)."""
        return [r for r in (self.prev, self.cur) if r is not None]

    @property
    def event_time(self) -> int | None:
        """The latest occurred_at counted (for quota.state)."""
        return self.ids.latest_time()

    def remembered_ids(self) -> int:
        """Event ids this meter holds for S6 (its memory grows with them, not with keys)."""
        return len(self.ids) + len(self.topup_ids.ids)

    def _aggregate_of(self, record: CycleUsage, entries: set[tuple[str, str]]) -> dict[str, Any]:
        """The ``usage.aggregates`` record of one cycle's changed entries (no version yet)."""
        return {
            "workspace_id": self.workspace_id,
            "cycle_start": record.start,
            "cycle_ends_at": record.end,
            "plan": record.plan.name,
            "prices_version": record.prices_version,
            "entries": [{"dimension": entry[0], "key": entry[1],
                         "values": record.entry_values(entry)} for entry in sorted(entries)],
        }

    def take_changed_aggregates(self, emitted_at_ms: int) -> list[dict[str, Any]]:
        """``usage.aggregates`` records, one per cycle with entries changed since the
        last call (cycles closed meanwhile included).

        All records of one call share a version one higher than any before, so the sink
        keeps the latest and writing a record twice is harmless.
        """
        records = self.pending_aggregates
        self.pending_aggregates = []
        for record in self.open_cycles():
            if record.dirty:
                records.append(self._aggregate_of(record, record.dirty))
                record.dirty = set()
            elif record.dirty is None and self.track_changes:
                record.dirty = set()
        if records:
            self.version += 1
            for aggregate in records:
                aggregate["version"] = self.version
                aggregate["emitted_at"] = emitted_at_ms
        return records

    def quota_state_record(self, as_of_ms: int) -> dict[str, Any]:
        """The quota.state record of the current cycle."""
        cur = self.cur
        if cur is None:
            bounds = self.timeline.cycle_of(as_of_ms)
            cur = CycleUsage(bounds.start, bounds.end, self.plan, 0, 0)
        quotas = []
        for q, name in enumerate(QUOTAS):
            used = self.count_new if q == Q_API_MINUTE else self._used(cur, q, 0)
            limit = cur.limit(q)
            decision = decide(name, used, limit, 1)
            quotas.append({
                "quota": name,
                "used": used,
                "limit": limit,
                "plan_limit": cur.plan.limits[q],
                "percent": decision.percent,
                "decision": decision.decision,
            })
        self.version += 1
        latest = self.timeline.latest
        planned = self.plan.cycle_anchor is not None or latest != DEFAULT_SCHEDULE
        return {
            "workspace_id": self.workspace_id,
            "version": self.version,
            "as_of": as_of_ms,
            # The Avro field is not nullable: 0 until an event has counted.
            "event_time": self.event_time or 0,
            "plan": self.plan.name,
            # The schedule in force after cycle_ends_at (a pending S3 change included),
            # so the check API can roll the cycle over on its own.
            "cycle_anchor": latest.anchor_ms if planned else None,
            "timezone": latest.timezone,
            "cycle_start": cur.start,
            "cycle_ends_at": cur.end,
            "machine_ids": sorted(self.machine_ids),
            "quotas": quotas,
            "api_minute": self.minute_new * MINUTE_MS if self.minute_new >= 0 else None,
        }


_HANDLERS: Final[dict[type, Callable[[WorkspaceMeter, Any], Outcome]]] = {
    TokensEvent: WorkspaceMeter._tokens,
    CommandEvent: WorkspaceMeter._command,
    ScheduleRunEvent: WorkspaceMeter._schedule_run,
    SkillEvent: WorkspaceMeter._skill,
    ApiEvent: WorkspaceMeter._api,
    StorageEvent: WorkspaceMeter._storage,
    MachineEvent: WorkspaceMeter._machine,
    PlanEvent: WorkspaceMeter._plan,
    TopupEvent: WorkspaceMeter._topup,
    AlertSettingsEvent: WorkspaceMeter._alert_settings,
}
