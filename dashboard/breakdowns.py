"""Current-cycle breakdown tables (pure): machines, members, skills, providers with models.

Each table has columns with a value function (raw metrics or derived ones such as a
skill's cache hit rate), a sort (column and direction, parsed from ``col.dir`` query
values, unknown ones fall back to the default) and rows sorted by it, ties by key.
Providers carry their models as child rows, sorted the same way within the provider.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from dashboard import format as fmt
from dashboard.models import is_large
from streams.core.pricing import dollars

Metrics = Mapping[str, int]
Number = int | float | None


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    title: str
    value: Callable[[Metrics], Number]
    show: Callable[[Number], str]
    exact: Callable[[Number], str] = lambda v: "" if v is None else f"{v:,}"


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    values: dict[str, Number]
    children: tuple[Row, ...] = ()
    badges: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Table:
    name: str  # machines | members | skills | providers (also the query parameter)
    title: str
    key_title: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    sort_key: str
    descending: bool
    total: Row | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _metric(name: str) -> Callable[[Metrics], Number]:
    return lambda m: int(m.get(name, 0))


def _tokens(n: Number) -> str:
    return "–" if n is None else fmt.count(int(n))


def _rate(v: Number) -> str:
    return "–" if v is None else f"{v * 100:.0f} %"


def _rate_exact(v: Number) -> str:
    return "" if v is None else f"{v * 100:.2f} %"


def _ratio(numerator: str, denominator: str) -> Callable[[Metrics], Number]:
    def value(m: Metrics) -> Number:
        below = int(m.get(denominator, 0))
        return None if below <= 0 else int(m.get(numerator, 0)) / below
    return value


def _per_call(m: Metrics) -> Number:
    calls = int(m.get("invocations", 0))
    return None if calls <= 0 else round(int(m.get("ai_tokens", 0)) / calls)


def _all_tokens(m: Metrics) -> Number:
    return int(m.get("input_tokens", 0)) + int(m.get("output_tokens", 0))


def _col(key: str, title: str, value: Callable[[Metrics], Number] | None = None) -> Column:
    return Column(key, title, value or _metric(key), _tokens)


def _cost_value(m: Metrics) -> Number:
    """Micro-dollars; None: an unpriced model (its tokens are not in any cost)."""
    value = m.get("cost_micros", 0)
    return None if value is None else int(value)


def _usd(n: Number) -> str:
    return "unpriced" if n is None else fmt.usd(int(n))


def _usd_exact(n: Number) -> str:
    return "not in the price table" if n is None else dollars(int(n))


COST_COLUMN: Final = Column("cost_micros", "Cost (USD)", _cost_value, _usd, _usd_exact)


def _with_cost(entries: Mapping[str, Metrics], costs: Mapping[str, int]) -> dict[str, Metrics]:
    """Entries with their ``cost_micros`` from the cycle's ``cost`` object."""
    return {k: {**m, "cost_micros": int(costs.get(k, 0))} for k, m in entries.items()}


MACHINE_COLUMNS: Final = (
    _col("commands", "Commands"),
    _col("ai_tokens", "AI tokens"),
    COST_COLUMN,
)
MEMBER_COLUMNS: Final = (
    _col("chat_tokens", "Chat tokens"),
    _col("ai_tokens", "AI tokens"),
    _col("schedule_runs", "Schedule runs"),
    _col("commands", "Commands"),
    COST_COLUMN,
)
SKILL_COLUMNS: Final = (
    _col("invocations", "Invocations"),
    _col("cache_hits", "Cache hits"),
    Column("hit_rate", "Hit rate", _ratio("cache_hits", "invocations"), _rate, _rate_exact),
    _col("ai_tokens", "Tokens"),
    _col("tokens_per_call", "Tokens / call", _per_call),
    COST_COLUMN,
)
PROVIDER_COLUMNS: Final = (
    _col("input_tokens", "Input tokens"),
    _col("output_tokens", "Output tokens"),
    _col("tokens", "Tokens", _all_tokens),
    COST_COLUMN,
)

DEFAULT_SORT: Final = {
    "machines": "ai_tokens", "members": "ai_tokens", "skills": "ai_tokens",
    "providers": "tokens",
}


def parse_sort(text: str | None, columns: Sequence[Column], default: str) -> tuple[str, bool]:
    """``"col.asc"`` / ``"col.desc"`` / ``"key.asc"`` -> (column, descending); default desc."""
    allowed = {c.key for c in columns} | {"key"}
    if text:
        name, _, direction = text.partition(".")
        if name in allowed and direction in ("asc", "desc", ""):
            return name, direction != "asc"
    return default, True


def _sorted(rows: Sequence[Row], sort_key: str, descending: bool) -> tuple[Row, ...]:
    if sort_key == "key":
        return tuple(sorted(rows, key=lambda r: r.key, reverse=descending))

    def missing_last(row: Row) -> tuple[bool, float, str]:
        value = row.values.get(sort_key)
        number = float(value) if value is not None else 0.0
        # None sorts after every number in both directions; ties by key ascending.
        return (value is None, -number if descending else number, row.key)

    return tuple(sorted(rows, key=missing_last))


def _rows(entries: Mapping[str, Metrics], columns: Sequence[Column]) -> list[Row]:
    return [Row(key, {c.key: c.value(metrics) for c in columns})
            for key, metrics in entries.items()]


def _total(entries: Mapping[str, Metrics], columns: Sequence[Column]) -> Row:
    summed: dict[str, int] = {}
    for metrics in entries.values():
        for name, value in metrics.items():
            if isinstance(value, int):
                summed[name] = summed.get(name, 0) + value
    return Row("Total", {c.key: c.value(summed) for c in columns})


def simple_table(cycle: Mapping[str, Any], name: str, title: str, key_title: str,
                 columns: Sequence[Column], sort: str | None = None, note: str = "") -> Table:
    """The breakdown ``cycle[name]`` (machines, members or skills), each entry with its cost."""
    entries: Mapping[str, Metrics] = _with_cost(cycle.get(name, {}), _costs(cycle, name))
    sort_key, descending = parse_sort(sort, columns, DEFAULT_SORT[name])
    rows = _sorted(_rows(entries, columns), sort_key, descending)
    return Table(name, title, key_title, tuple(columns), rows, sort_key, descending,
                 _total(entries, columns) if entries else None, note)


def machines_table(cycle: Mapping[str, Any], sort: str | None = None) -> Table:
    return simple_table(cycle, "machines", "By machine", "Machine", MACHINE_COLUMNS, sort,
                        "AI tokens are those of sessions naming the machine.")


def members_table(cycle: Mapping[str, Any], sort: str | None = None) -> Table:
    return simple_table(cycle, "members", "By member", "Member", MEMBER_COLUMNS, sort,
                        "Chat tokens are tokens on the chat surface.")


def skills_table(cycle: Mapping[str, Any], sort: str | None = None) -> Table:
    return simple_table(cycle, "skills", "By skill", "Skill", SKILL_COLUMNS, sort,
                        "Tokens are those of calls naming the skill, on any surface.")


def providers_table(cycle: Mapping[str, Any], sort: str | None = None) -> Table:
    """Providers, each with its models as child rows; large models carry a badge."""
    providers: Mapping[str, Mapping[str, Any]] = cycle.get("providers", {})
    sort_key, descending = parse_sort(sort, PROVIDER_COLUMNS, DEFAULT_SORT["providers"])
    rows: list[Row] = []
    flat: dict[str, Metrics] = {}
    model_costs: Mapping[str, Mapping[str, Any]] = (cycle.get("cost") or {}).get("models", {})
    for provider, entry in providers.items():
        models: dict[str, dict[str, Any]] = {}
        for model, m in entry.get("models", {}).items():
            priced = model_costs.get(f"{provider}/{model}", {})
            cost = None if priced.get("priced") is False else int(priced.get("cost", 0))
            models[model] = {**m, "cost_micros": cost}
        metrics = {k: int(v) for k, v in entry.items() if k != "models"}
        metrics["cost_micros"] = sum(int(m["cost_micros"] or 0) for m in models.values())
        flat[provider] = metrics
        children = [
            Row(model, {c.key: c.value(m) for c in PROVIDER_COLUMNS},
                badges=("large",) if is_large(model) else ())
            for model, m in models.items()
        ]
        rows.append(Row(provider, {c.key: c.value(metrics) for c in PROVIDER_COLUMNS},
                        _sorted(children, sort_key, descending)))
    return Table("providers", "By provider and model", "Provider / model", PROVIDER_COLUMNS,
                 _sorted(rows, sort_key, descending), sort_key, descending,
                 _total(flat, PROVIDER_COLUMNS) if flat else None,
                 "“large” marks models on the large-model list (see Reducing usage).")


def _costs(cycle: Mapping[str, Any], section: str) -> Mapping[str, int]:
    return dict((cycle.get("cost") or {}).get(section, {}))


def all_tables(cycle: Mapping[str, Any], sorts: Mapping[str, str | None]) -> list[Table]:
    return [
        machines_table(cycle, sorts.get("machines")),
        members_table(cycle, sorts.get("members")),
        skills_table(cycle, sorts.get("skills")),
        providers_table(cycle, sorts.get("providers")),
    ]


def chart_items(table: Table, column: str, top: int = 8) -> list[tuple[str, int]]:
    """The ``top`` rows by ``column`` for a bar chart, the rest summed as ``others``."""
    ranked = sorted(((r.key, int(r.values.get(column) or 0)) for r in table.rows),
                    key=lambda item: (-item[1], item[0]))
    head, tail = ranked[:top], ranked[top:]
    rest = sum(v for _, v in tail)
    if tail:
        head.append((f"{len(tail)} others", rest))
    return [item for item in head if item[1] > 0] if any(v for _, v in head) else []
