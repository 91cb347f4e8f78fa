"""usage.aggregates records from a usage.json document (``meter replay`` output).

The inverse of history's shape: one record (schema version 2) per (workspace, cycle)
holding every value of the cycle, so a replay's result can be loaded into the store
(backfills, audits), and tests and the benchmark can write what the stream would have
written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from schemas.aggregates import Value, entries_of
from sinks.shape import BREAKDOWNS, parse_time


def cycle_values(cycle: Mapping[str, Any]) -> Iterator[Value]:
    """Every (dimension, key, metric, value) of one usage.json cycle object."""

    def item(dimension: str, key: str, metric: str, value: int | None) -> Value:
        return dimension, key, metric, value

    for metric, value in cycle.get("totals", {}).items():
        yield item("totals", "", metric, value)
    for metric, value in cycle.get("limits", {}).items():
        yield item("limits", "", metric, value)
    for dimension in ("machine", "member", "skill"):
        for key, metrics in cycle.get(BREAKDOWNS[dimension][0], {}).items():
            for metric, value in metrics.items():
                yield item(dimension, key, metric, value)
    for provider, entry in cycle.get("providers", {}).items():
        for metric in BREAKDOWNS["provider"][1]:
            yield item("provider", provider, metric, entry.get(metric, 0))
        for model, metrics in entry.get("models", {}).items():
            for metric, value in metrics.items():
                yield item("model", f"{provider}/{model}", metric, value)
    yield from _cost_values(cycle.get("cost"))


def _cost_values(cost: Mapping[str, Any] | None) -> Iterator[Value]:
    """The cost metrics of a usage.json ``cost`` object (absent before costs: none)."""
    if not cost:
        return
    yield "totals", "", "cost_micros", cost["total"]
    yield "totals", "", "unpriced_tokens", cost["unpriced_tokens"]
    for dimension in ("machine", "member", "skill"):
        for key, micros in cost.get(BREAKDOWNS[dimension][0], {}).items():
            yield dimension, key, "cost_micros", micros
    providers: dict[tuple[str, str], int] = {}
    for key, m in cost.get("models", {}).items():
        provider = key.partition("/")[0]
        for metric, field in (("cache_read_tokens", "cache_read_tokens"),
                              ("cache_write_tokens", "cache_write_tokens"),
                              ("cost_micros", "cost"), ("unpriced_tokens", "unpriced_tokens")):
            yield "model", key, metric, m[field]
            providers[(provider, metric)] = providers.get((provider, metric), 0) + m[field]
    for (provider, metric), value in providers.items():
        yield "provider", provider, metric, value


def cycle_record(
    workspace_id: str, cycle_start: str, cycle: Mapping[str, Any], *, version: int,
    emitted_at: int = 0,
) -> dict[str, Any]:
    """The record of one usage.json cycle object: all its entries, with ``version``."""
    return {
        "workspace_id": workspace_id,
        "cycle_start": parse_time(cycle_start),
        "cycle_ends_at": parse_time(cycle["cycle_ends_at"]),
        "plan": cycle.get("plan"),
        "entries": entries_of(cycle_values(cycle)),
        "prices_version": (cycle.get("cost") or {}).get("prices"),
        "version": version,
        "emitted_at": emitted_at,
    }


def usage_records(usage: Mapping[str, Any], *, version: int = 1) -> Iterator[dict[str, Any]]:
    """One record per workspace and cycle of a usage.json document."""
    for workspace_id, workspace in usage.get("workspaces", {}).items():
        for cycle_start, cycle in workspace.get("cycles", {}).items():
            yield cycle_record(workspace_id, cycle_start, cycle, version=version)
