"""The ``usage.aggregates`` record, schema version 2: one workspace's cycle, with the
entries (a dimension and a key) that changed, each carrying the values of that
dimension's metrics in the fixed order below.

Metric orders are part of the contract, like the schema: the stream writes values in
this order and every reader names them from it. A metric is only ever appended to its
dimension (older records then carry fewer values; a reader takes what is there).
Version 1 carried one value per record (``dimension``, ``key``, ``metric``, ``value``);
readers that must read it too decode records as written (``schemas.codec.decode_written``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from schemas.events import QUOTAS

TOTAL_METRICS: Final = (
    "ai_tokens", "schedule_runs", "api_requests_per_cycle", "api_requests_per_minute",
    "machines", "storage_bytes", "commands", "skill_invocations",
)
MACHINE_METRICS: Final = ("commands", "ai_tokens")
MEMBER_METRICS: Final = ("ai_tokens", "chat_tokens", "schedule_runs", "commands")
SKILL_METRICS: Final = ("invocations", "cache_hits", "ai_tokens")
TOKEN_METRICS: Final = ("input_tokens", "output_tokens")
# Cost metrics, appended to the counts above (schema version 3): cost_micros is the
# price of the tokens in integer micro-dollars (USD, genai-prices), unpriced_tokens the
# input + output tokens of models the price table does not know (not in cost_micros).
TOTAL_COST_METRICS: Final = ("cost_micros", "unpriced_tokens")
BREAKDOWN_COST_METRICS: Final = ("cost_micros",)
TOKEN_COST_METRICS: Final = (
    "cache_read_tokens", "cache_write_tokens", "cost_micros", "unpriced_tokens",
)
# dimension -> its metrics, in the order an entry's values follow; limits are the
# effective limits of the six quotas (null: unlimited), every other value an integer
METRICS_OF: Final[dict[str, tuple[str, ...]]] = {
    "totals": TOTAL_METRICS + TOTAL_COST_METRICS,
    "limits": QUOTAS,
    "machine": MACHINE_METRICS + BREAKDOWN_COST_METRICS,
    "member": MEMBER_METRICS + BREAKDOWN_COST_METRICS,
    "skill": SKILL_METRICS + BREAKDOWN_COST_METRICS,
    "provider": TOKEN_METRICS + TOKEN_COST_METRICS,
    "model": TOKEN_METRICS + TOKEN_COST_METRICS,  # key "<provider>/<model>"
}

Value = tuple[str, str, str, int | None]  # (dimension, key, metric, value)


def values_of(record: Mapping[str, Any]) -> Iterator[Value]:
    """Every (dimension, key, metric, value) of a version 2 record (values past the
    metrics this reader knows are ignored: a newer writer appended metrics)."""
    for entry in record["entries"]:
        dimension, key = entry["dimension"], entry["key"]
        # a dimension this reader does not know ("unknown", Avro's fallback) names nothing
        metrics = METRICS_OF.get(dimension, ())
        for metric, value in zip(metrics, entry["values"], strict=False):
            yield dimension, key, metric, value


def entries_of(values: Iterable[Value]) -> list[dict[str, Any]]:
    """Entries holding ``values``, each entry complete: a metric not given is 0 (a limit
    not given is null, unlimited)."""
    grouped: dict[tuple[str, str], dict[str, int | None]] = {}
    for dimension, key, metric, value in values:
        grouped.setdefault((dimension, key), {})[metric] = value
    return [
        {"dimension": dimension, "key": key,
         "values": [given.get(m, None if dimension == "limits" else 0)
                    for m in METRICS_OF[dimension]]}
        for (dimension, key), given in grouped.items()
    ]
