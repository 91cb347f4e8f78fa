"""Hints for reducing usage, computed from one cycle's numbers (pure).

Always in this order (the expected order of impact): skill cache, model choice,
schedule frequency, agent context. Each hint says what it found, a status
(``act``: worth doing; ``ok``: nothing to do; ``info``: shown with what the data
allows; ``none``: no such usage) and, where the aggregates cannot tell, what data
would be needed.

Estimates and their assumptions:
- Skill cache: a cache hit costs no tokens, so a skill's tokens per uncached call is
  ``ai_tokens / (invocations - cache_hits)``. The saving is what the calls between the
  skill's hit rate and ``TARGET_HIT_RATE`` would not spend. It is an estimate: the
  aggregates do not say which calls repeat.
- Model choice: the share of model tokens on large models (``dashboard.models``).
  A smaller model lowers cost and latency; the token count, and so the ai_tokens
  quota, stays about the same.
- In dollars (the cycle's ``cost`` object, micro-dollars): the skill cache saving is each
  skill's cost per uncached call times the calls a cache would spare; the model-choice
  saving is the large models' cost less what their tokens would cost at the cycle's
  mean price per token of its smaller priced models (none shown without such usage).
- Schedule frequency: the aggregates count runs per member, not per schedule. A
  member whose runs exceed one per 15 minutes since the cycle start has a schedule
  (or several together) running at least that often; one at or under that pace has
  none running more often on average.
- Agent context: average tokens per chat needs a count of chats, which the
  aggregates do not carry; shown instead: chat tokens per member and how much of
  all tokens is input (context) rather than output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from dashboard import format as fmt
from dashboard.models import is_large
from sinks.shape import parse_time

TARGET_HIT_RATE: Final = 0.5
LARGE_SHARE_TO_ACT: Final = 0.25
SCHEDULE_INTERVAL_MS: Final = 15 * 60_000
CONTEXT_RATIO_TO_ACT: Final = 20  # input tokens per output token
TOP_ROWS: Final = 5


@dataclass(frozen=True, slots=True)
class Hint:
    key: str
    title: str
    status: str  # act | ok | info | none
    headline: str
    detail: str
    saving_tokens: int | None = None
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    needs: str = ""
    saving_micros: int | None = None  # the estimated saving in micro-dollars (USD)


def elapsed_ms(cycle_start: int, cycle_ends_at: int, now_ms: int) -> int:
    """How much of the cycle has passed (all of it once it has ended)."""
    return max(0, min(now_ms, cycle_ends_at) - cycle_start)


def skill_cache_hint(cycle: Mapping[str, Any]) -> Hint:
    skills: Mapping[str, Mapping[str, int]] = cycle.get("skills", {})
    title = "Skill cache"
    calls = sum(int(s.get("invocations", 0)) for s in skills.values())
    if calls == 0:
        return Hint("skill_cache", title, "none", "No skill calls in this cycle.",
                    "Nothing to cache yet.")
    hits = sum(int(s.get("cache_hits", 0)) for s in skills.values())
    candidates: list[tuple[int, str, Mapping[str, int]]] = []
    skill_cost: Mapping[str, int] = (cycle.get("cost") or {}).get("skills", {})
    skill_costs: dict[str, int] = {}
    for name, s in skills.items():
        invocations, cache_hits = int(s.get("invocations", 0)), int(s.get("cache_hits", 0))
        misses = invocations - cache_hits
        if invocations <= 0 or misses <= 0 or cache_hits >= TARGET_HIT_RATE * invocations:
            continue
        per_miss = int(s.get("ai_tokens", 0)) / misses
        extra = math.ceil(TARGET_HIT_RATE * invocations) - cache_hits
        saving = round(extra * per_miss)
        if saving > 0:
            candidates.append((saving, name, s))
            skill_costs[name] = extra * int(skill_cost.get(name, 0)) // misses
    candidates.sort(key=lambda c: (-c[0], c[1]))
    overall = fmt.percent(hits, calls)
    target = f"{TARGET_HIT_RATE * 100:.0f} %"
    if not candidates:
        return Hint("skill_cache", title, "ok",
                    f"Cache hit rate is {overall} of {fmt.count(calls)} skill calls.",
                    f"Every skill with tokens is at or above a {target} hit rate.")
    saving = sum(c[0] for c in candidates)
    saving_micros = sum(skill_costs.get(c[1], 0) for c in candidates)
    ai_tokens = int(cycle.get("totals", {}).get("ai_tokens", 0))
    share = f" ({fmt.percent(saving, ai_tokens)} of this cycle's AI tokens)" if ai_tokens else ""
    money = f", about {fmt.usd(saving_micros)}" if saving_micros else ""
    rows = tuple(
        (name, fmt.count(int(s.get("invocations", 0))),
         fmt.percent(int(s.get("cache_hits", 0)), int(s.get("invocations", 0))),
         fmt.count(round(int(s.get("ai_tokens", 0))
                         / (int(s.get("invocations", 0)) - int(s.get("cache_hits", 0))))),
         fmt.count(amount))
        for amount, name, s in candidates[:TOP_ROWS]
    )
    return Hint(
        "skill_cache", title, "act",
        f"Caching repeated skill calls could save about {fmt.count(saving)} tokens{share}"
        f"{money}.",
        f"Hit rate is {overall} of {fmt.count(calls)} calls. Estimate: each skill below "
        f"reaching a {target} hit rate, at its tokens per uncached call (hits cost no tokens).",
        saving, ("Skill", "Calls", "Hit rate", "Tokens / uncached call", "Est. saving"), rows,
        saving_micros=saving_micros or None)


def model_choice_hint(cycle: Mapping[str, Any]) -> Hint:
    title = "Model choice"
    providers: Mapping[str, Mapping[str, Any]] = cycle.get("providers", {})
    per_model: list[tuple[str, int, bool]] = []
    for provider, entry in providers.items():
        for model, m in entry.get("models", {}).items():
            tokens = int(m.get("input_tokens", 0)) + int(m.get("output_tokens", 0))
            per_model.append((f"{provider}/{model}", tokens, is_large(model)))
    total = sum(t for _, t, _ in per_model)
    if total == 0:
        return Hint("model_choice", title, "none", "No model tokens in this cycle.", "")
    large = sorted(((n, t) for n, t, big in per_model if big and t > 0),
                   key=lambda x: (-x[1], x[0]))
    large_tokens = sum(t for _, t in large)
    share = large_tokens / total
    rows = tuple((name, fmt.count(t), fmt.percent(t, total)) for name, t in large[:TOP_ROWS])
    if not large:
        return Hint("model_choice", title, "ok", "No tokens went to large models.",
                    f"All {fmt.count(total)} model tokens used small or mid-size models.")
    status = "act" if share >= LARGE_SHARE_TO_ACT else "ok"
    saving_micros = _model_choice_saving(cycle)
    money = (f" Moving them to the smaller models used this cycle would save about "
             f"{fmt.usd(saving_micros)}." if saving_micros else "")
    return Hint(
        "model_choice", title, status,
        f"{fmt.percent(large_tokens, total)} of model tokens ({fmt.count(large_tokens)}) "
        f"went to large models.{money}",
        "Route routine work (summaries, classification, skill calls) to a smaller model of "
        "the same provider: it costs less and answers faster. The token count, and so the "
        "AI token quota, stays about the same.",
        None, ("Large model", "Tokens", "Share"), rows, saving_micros=saving_micros)


def _model_choice_saving(cycle: Mapping[str, Any]) -> int | None:
    """Large models' cost less their tokens at the mean price per token of the cycle's
    smaller priced models (micro-dollars); None without priced usage of both."""
    models: Mapping[str, Mapping[str, Any]] = (cycle.get("cost") or {}).get("models", {})
    tokens: dict[str, int] = {}
    for provider, entry in cycle.get("providers", {}).items():
        for model, m in entry.get("models", {}).items():
            tokens[f"{provider}/{model}"] = (int(m.get("input_tokens", 0))
                                             + int(m.get("output_tokens", 0)))
    large_cost = large_tokens = small_cost = small_tokens = 0
    for key, m in models.items():
        if not m.get("priced", True) or key not in tokens:
            continue
        if is_large(key.partition("/")[2]):
            large_cost += int(m.get("cost", 0))
            large_tokens += tokens[key]
        else:
            small_cost += int(m.get("cost", 0))
            small_tokens += tokens[key]
    if not large_tokens or not small_tokens or not large_cost:
        return None
    saving = large_cost - large_tokens * small_cost // small_tokens
    return saving if saving > 0 else None


def schedule_frequency_hint(cycle: Mapping[str, Any], now_ms: int) -> Hint:
    title = "Schedule frequency"
    needs = ("Per-schedule run counts (a schedule dimension keyed by schedule_id in "
             "usage.aggregates) or the runs' times, to name each schedule that runs more "
             "often than every 15 minutes.")
    members: Mapping[str, Mapping[str, int]] = cycle.get("members", {})
    runs = {name: int(m.get("schedule_runs", 0)) for name, m in members.items()}
    total = int(cycle.get("totals", {}).get("schedule_runs", 0)) or sum(runs.values())
    if total == 0:
        return Hint("schedule_frequency", title, "none", "No schedule runs in this cycle.", "")
    start, ends = _bounds(cycle)
    passed = elapsed_ms(start, ends, now_ms)
    if passed <= 0:
        return Hint("schedule_frequency", title, "info",
                    f"{fmt.count(total)} schedule runs; the cycle has just started.", "",
                    needs=needs)
    pace = passed / SCHEDULE_INTERVAL_MS  # runs of one schedule every 15 minutes
    ranked = sorted(((n, r) for n, r in runs.items() if r > 0), key=lambda x: (-x[1], x[0]))
    frequent = [(n, r) for n, r in ranked if r > pace]
    rows = tuple((n, fmt.count(r), _every(passed, r), "yes" if r > pace else "no")
                 for n, r in ranked[:TOP_ROWS])
    header = ("Member", "Runs", "On average every", "Over the 15 min pace")
    if total <= pace:
        return Hint(
            "schedule_frequency", title, "ok",
            "No schedule runs more often than every 15 minutes on average.",
            f"All schedules together ran {fmt.count(total)} times in {fmt.duration(passed)}: "
            f"once every {_every(passed, total)} at most.", None, header, rows, needs)
    if frequent:
        return Hint(
            "schedule_frequency", title, "act",
            f"{_members(len(frequent))} schedules run more often than every 15 minutes.",
            f"Their runs since the cycle start ({fmt.duration(passed)}) exceed one per 15 "
            "minutes: one schedule that frequent, or several together. Running them less "
            "often lowers schedule runs and the tokens each run spends.",
            None, header, rows, needs)
    if sum(runs.values()) < total:
        return Hint(
            "schedule_frequency", title, "info",
            f"Schedules together ran once every {_every(passed, total)} on average.",
            "Not every run is attributed to a member in this cycle, so the runs cannot be "
            "told apart by who owns them.", None, header, rows, needs)
    return Hint(
        "schedule_frequency", title, "ok",
        "No schedule runs more often than every 15 minutes on average.",
        f"Each member's runs together stay within one per 15 minutes over "
        f"{fmt.duration(passed)} of this cycle.", None, header, rows, needs)


def agent_context_hint(cycle: Mapping[str, Any]) -> Hint:
    title = "Agent context"
    needs = ("A count of chats (e.g. a chats metric per member: tokens events with surface "
             "chat) to show average tokens per chat.")
    providers: Mapping[str, Mapping[str, Any]] = cycle.get("providers", {})
    inputs = sum(int(p.get("input_tokens", 0)) for p in providers.values())
    outputs = sum(int(p.get("output_tokens", 0)) for p in providers.values())
    members: Mapping[str, Mapping[str, int]] = cycle.get("members", {})
    chat = sorted(((n, int(m.get("chat_tokens", 0))) for n, m in members.items()
                   if int(m.get("chat_tokens", 0)) > 0), key=lambda x: (-x[1], x[0]))
    chat_total = sum(t for _, t in chat)
    if inputs + outputs == 0:
        return Hint("agent_context", title, "none", "No model tokens in this cycle.", "",
                    needs=needs)
    rows = tuple((n, fmt.count(t), fmt.percent(t, chat_total)) for n, t in chat[:TOP_ROWS])
    ratio = inputs / outputs if outputs else math.inf
    ratio_text = "all input" if outputs == 0 else f"{ratio:.0f} input tokens per output token"
    detail = (f"{fmt.percent(inputs, inputs + outputs)} of tokens are input (context sent to "
              f"the model): {ratio_text}. Chat tokens this cycle: {fmt.count(chat_total)}. "
              "Trim long histories and attached files, or start fresh chats, to send less.")
    if ratio >= CONTEXT_RATIO_TO_ACT:
        return Hint("agent_context", title, "act",
                    f"Context dominates: {ratio_text}.", detail, None,
                    ("Member", "Chat tokens", "Share"), rows, needs)
    return Hint("agent_context", title, "info",
                f"Input is {fmt.percent(inputs, inputs + outputs)} of tokens.", detail, None,
                ("Member", "Chat tokens", "Share"), rows, needs)


def hints(cycle: Mapping[str, Any], now_ms: int) -> list[Hint]:
    """The four hints, in order of impact."""
    return [
        skill_cache_hint(cycle),
        model_choice_hint(cycle),
        schedule_frequency_hint(cycle, now_ms),
        agent_context_hint(cycle),
    ]


def _bounds(cycle: Mapping[str, Any]) -> tuple[int, int]:
    return parse_time(str(cycle["cycle_start"])), parse_time(str(cycle["cycle_ends_at"]))


def _every(passed_ms: int, runs: int) -> str:
    return fmt.duration(passed_ms // runs) if runs else "–"


def _members(n: int) -> str:
    return "1 member's" if n == 1 else f"{n} members'"
