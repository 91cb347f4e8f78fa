"""Hypothesis strategies: valid events of every type, and any record of an Avro schema."""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import strategies as st

from schemas.events import (
    API_PROTOCOLS,
    MACHINE_ACTIONS,
    QUOTAS,
    STORAGE_CATEGORIES,
    SURFACES,
    THRESHOLDS,
)
from schemas.validation import (
    MAX_LONG,
    MAX_OCCURRED_AT_MS,
    MIN_INSTANT_MS,
    MIN_OCCURRED_AT_MS,
    TOPUP_QUOTAS,
)

ids = st.text(min_size=1, max_size=12)
names = st.text(min_size=1, max_size=12)
providers = names.filter(lambda s: "/" not in s)
counts = st.integers(0, MAX_LONG)
times = st.integers(MIN_OCCURRED_AT_MS, MAX_OCCURRED_AT_MS - 1)
emails = st.from_regex(r"[a-z0-9.]{1,8}@[a-z]{1,8}\.example", fullmatch=True)
secrets = st.binary(min_size=1, max_size=40).map(
    lambda b: "whsec_" + base64.b64encode(b).decode())
urls = st.one_of(st.none(), st.sampled_from(["https://hooks.example/a", "http://127.0.0.1:9/x"]))


def _fields(type_name: str) -> st.SearchStrategy[dict[str, Any]]:
    nullable_id = st.none() | ids
    per_type: dict[str, dict[str, st.SearchStrategy[Any]]] = {
        "tokens": {"member_id": ids, "machine_id": nullable_id, "skill": st.none() | names,
                   "provider": providers, "model": names, "input_tokens": counts,
                   "output_tokens": counts, "surface": st.sampled_from(SURFACES)},
        "command": {"member_id": ids, "machine_id": ids, "command": names},
        "schedule_run": {"member_id": ids, "schedule_id": ids, "machine_id": nullable_id},
        "skill": {"member_id": ids, "skill": names, "machine_id": nullable_id,
                  "cache_hit": st.booleans()},
        "storage": {"category": st.sampled_from(STORAGE_CATEGORIES)},
        "api": {"member_id": nullable_id, "protocol": st.sampled_from(API_PROTOCOLS),
                "requests": counts},
        "machine": {"machine_id": ids, "action": st.sampled_from(MACHINE_ACTIONS)},
        "plan": {"plan": names,
                 "cycle_anchor": st.integers(MIN_INSTANT_MS, MAX_OCCURRED_AT_MS - 1),
                 "timezone": st.sampled_from(["UTC", "Europe/Berlin", "America/New_York",
                                              "Asia/Kolkata", "Australia/Lord_Howe"]),
                 "limits": st.dictionaries(st.sampled_from(QUOTAS),
                                           st.none() | st.integers(1, MAX_LONG)),
                 "owners": st.lists(emails, max_size=3)},
        "topup": {"quota": st.sampled_from(TOPUP_QUOTAS), "amount": counts},
        "alert_settings": {
            "email": st.none() | st.booleans(), "slack_webhook_url": urls, "webhook_url": urls,
            "webhook_secret": st.none() | secrets,
            "muted": st.lists(st.fixed_dictionaries(
                {"quota": st.sampled_from(QUOTAS),
                 "threshold": st.none() | st.sampled_from(THRESHOLDS)}), max_size=3)},
    }
    envelope = {"event_id": ids, "workspace_id": ids, "occurred_at": times}
    base = st.fixed_dictionaries({**envelope, **per_type[type_name]})
    if type_name == "storage":
        reading = st.one_of(
            st.fixed_dictionaries({"delta_bytes": st.integers(-MAX_LONG, MAX_LONG)}),
            st.fixed_dictionaries({"total_bytes": counts}))
        return st.tuples(base, reading).map(lambda pair: {**pair[0], **pair[1]})
    return base


def event_fields(type_name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Field mappings that ``validate(type_name, ...)`` accepts."""
    return _fields(type_name)


def avro_values(schema: Any, named: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Any value of an Avro schema (logical types stripped: times are plain longs)."""
    named = {} if named is None else named
    if isinstance(schema, str):
        primitive: dict[str, st.SearchStrategy[Any]] = {
            "null": st.none(), "boolean": st.booleans(), "string": st.text(max_size=12),
            "bytes": st.binary(max_size=12), "int": st.integers(-(2**31), 2**31 - 1),
            "long": st.integers(-(2**63), 2**63 - 1),
            "double": st.floats(allow_nan=False), "float": st.floats(width=32, allow_nan=False),
        }
        return primitive[schema] if schema in primitive else named[schema]
    if isinstance(schema, list):
        return st.one_of(*(avro_values(s, named) for s in schema))
    kind = schema["type"]
    if kind == "enum":
        strategy: st.SearchStrategy[Any] = st.sampled_from(schema["symbols"])
    elif kind == "array":
        return st.lists(avro_values(schema["items"], named), max_size=3)
    elif kind == "map":
        return st.dictionaries(st.text(max_size=5), avro_values(schema["values"], named),
                               max_size=3)
    elif kind == "record":
        strategy = st.fixed_dictionaries(
            {f["name"]: avro_values(f["type"], named) for f in schema["fields"]})
    else:
        return avro_values(kind, named)
    named[schema["name"]] = strategy
    if "namespace" in schema:
        named[f"{schema['namespace']}.{schema['name']}"] = strategy
    return strategy
