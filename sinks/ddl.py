"""Versioned ClickHouse DDL: each migration runs once, recorded in ``schema_migrations``.

Migrations are append-only: never edit one that has shipped, add the next version.
Every statement is idempotent (``IF NOT EXISTS`` / ``OR REPLACE``), so two sinks
starting at once against one server, or a crash between a statement and its
record, are harmless. ``{db}`` is the database (an identifier, quoted by us).

Idempotency comes from the data, never from insert dedup tokens:
- ``usage_snapshots``: ReplacingMergeTree on ``version``; reads take
  ``argMax(tuple(value, ...), version)`` per key, so they are exact before merges
  (``tuple`` because ``argMax`` skips NULL arguments, and NULL means unlimited).
- crossings by ``alert_id``, deliveries by ``delivery_id``, dead letters by their
  source coordinates, plans by (workspace, event): ReplacingMergeTree read with FINAL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from clickhouse_connect.driver.client import Client


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


_TABLES_V1: Final = (
    """CREATE TABLE IF NOT EXISTS {db}.usage_snapshots (
        workspace_id String,
        cycle_start DateTime64(3, 'UTC'),
        cycle_ends_at DateTime64(3, 'UTC'),
        plan Nullable(String),
        dimension LowCardinality(String),
        key String,
        metric LowCardinality(String),
        value Nullable(Int64),
        version UInt64,
        emitted_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree(version)
    ORDER BY (workspace_id, cycle_start, dimension, key, metric)""",
    """CREATE TABLE IF NOT EXISTS {db}.threshold_crossings (
        alert_id String,
        workspace_id String,
        quota LowCardinality(String),
        threshold UInt8,
        arm UInt32,
        highest_in_event Bool,
        current Int64,
        `limit` Int64,
        cycle_start DateTime64(3, 'UTC'),
        cycle_ends_at DateTime64(3, 'UTC'),
        crossed_at DateTime64(3, 'UTC'),
        event_id String,
        enforcement LowCardinality(String)
    ) ENGINE = ReplacingMergeTree
    PARTITION BY toYYYYMM(cycle_start)
    ORDER BY (workspace_id, cycle_start, alert_id)""",
    """CREATE TABLE IF NOT EXISTS {db}.alert_deliveries (
        delivery_id String,
        alert_id String,
        workspace_id String,
        channel LowCardinality(String),
        status LowCardinality(String),
        attempt UInt32,
        detail Nullable(String),
        target Nullable(String),
        quota LowCardinality(String),
        threshold UInt8,
        recorded_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree
    PARTITION BY toYYYYMM(recorded_at)
    ORDER BY (workspace_id, alert_id, delivery_id)""",
    """CREATE TABLE IF NOT EXISTS {db}.dead_letters (
        source_topic LowCardinality(String),
        partition Int32,
        offset Int64,
        reason LowCardinality(String),
        detail String,
        original String,
        seen_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree
    PARTITION BY toYYYYMM(seen_at)
    ORDER BY (source_topic, partition, offset, reason, cityHash64(original))""",
    """CREATE TABLE IF NOT EXISTS {db}.plans (
        workspace_id String,
        event_id String,
        occurred_at DateTime64(3, 'UTC'),
        plan String,
        cycle_anchor DateTime64(3, 'UTC'),
        timezone String,
        limit_machines Nullable(Int64),
        limit_ai_tokens Nullable(Int64),
        limit_storage_bytes Nullable(Int64),
        limit_schedule_runs Nullable(Int64),
        limit_api_requests_per_minute Nullable(Int64),
        limit_api_requests_per_cycle Nullable(Int64),
        owners Array(String)
    ) ENGINE = ReplacingMergeTree
    ORDER BY (workspace_id, occurred_at, event_id)""",
)

def _breakdown_view(dimension: str, key: str, metrics: tuple[str, ...]) -> str:
    """The analyst view ``usage_by_<dimension>``: a row per (workspace, cycle, ``key``), a
    column per metric, from the latest snapshot rows."""
    sums = "".join(f",\n           sumIf(ifNull(value, 0), metric = '{m}') AS {m}"
                   for m in metrics)
    return (f"CREATE OR REPLACE VIEW {{db}}.usage_by_{dimension} AS\n"
            f"    SELECT workspace_id, cycle_start, key AS {key}{sums}\n"
            f"    FROM {{db}}.usage_latest WHERE dimension = '{dimension}'\n"
            f"    GROUP BY workspace_id, cycle_start, {key}")


# Analyst views: every one resolves the latest snapshot version itself, so numbers
# are right before background merges. Gauges carry over to cycles without a row.
_VIEWS_V1: Final = (
    """CREATE OR REPLACE VIEW {db}.usage_latest AS
    SELECT workspace_id, cycle_start, dimension, key, metric,
           latest.1 AS value, latest.2 AS plan, latest.3 AS cycle_ends_at,
           max_version AS version
    FROM (
        SELECT workspace_id, cycle_start, dimension, key, metric,
               argMax(tuple(value, plan, cycle_ends_at), version) AS latest,
               max(version) AS max_version
        FROM {db}.usage_snapshots
        GROUP BY workspace_id, cycle_start, dimension, key, metric
    )""",
    """CREATE OR REPLACE VIEW {db}.current_cycle AS
    WITH current AS (
        SELECT workspace_id, max(cycle_start) AS current_start
        FROM {db}.usage_snapshots GROUP BY workspace_id
    )
    SELECT u.workspace_id AS workspace_id,
           any(c.current_start) AS cycle_start,
           argMaxIf(u.cycle_ends_at, u.version, u.cycle_start = c.current_start) AS cycle_ends_at,
           argMaxIf(tuple(u.plan), u.version, u.cycle_start = c.current_start).1 AS plan,
           sumIf(ifNull(u.value, 0), u.cycle_start = c.current_start AND u.dimension = 'totals'
                 AND u.metric = 'ai_tokens') AS ai_tokens,
           sumIf(ifNull(u.value, 0), u.cycle_start = c.current_start AND u.dimension = 'totals'
                 AND u.metric = 'schedule_runs') AS schedule_runs,
           sumIf(ifNull(u.value, 0), u.cycle_start = c.current_start AND u.dimension = 'totals'
                 AND u.metric = 'api_requests_per_cycle') AS api_requests_per_cycle,
           sumIf(ifNull(u.value, 0), u.cycle_start = c.current_start AND u.dimension = 'totals'
                 AND u.metric = 'api_requests_per_minute') AS api_requests_per_minute,
           sumIf(ifNull(u.value, 0), u.cycle_start = c.current_start AND u.dimension = 'totals'
                 AND u.metric = 'commands') AS commands,
           sumIf(ifNull(u.value, 0), u.cycle_start = c.current_start AND u.dimension = 'totals'
                 AND u.metric = 'skill_invocations') AS skill_invocations,
           coalesce(argMaxIf(u.value, u.cycle_start, u.dimension = 'totals'
                    AND u.metric = 'machines'), 0) AS machines,
           coalesce(argMaxIf(u.value, u.cycle_start, u.dimension = 'totals'
                    AND u.metric = 'storage_bytes'), 0) AS storage_bytes
    FROM {db}.usage_latest AS u
    INNER JOIN current AS c ON u.workspace_id = c.workspace_id
    GROUP BY u.workspace_id""",
    _breakdown_view("provider", "provider", ("input_tokens", "output_tokens")),
    """CREATE OR REPLACE VIEW {db}.usage_by_model AS
    SELECT workspace_id, cycle_start,
           substring(key, 1, position(key, '/') - 1) AS provider,
           substring(key, position(key, '/') + 1) AS model,
           sumIf(ifNull(value, 0), metric = 'input_tokens') AS input_tokens,
           sumIf(ifNull(value, 0), metric = 'output_tokens') AS output_tokens
    FROM {db}.usage_latest WHERE dimension = 'model'
    GROUP BY workspace_id, cycle_start, key""",
    _breakdown_view("member", "member_id",
                    ("ai_tokens", "chat_tokens", "schedule_runs", "commands")),
    _breakdown_view("machine", "machine_id", ("commands", "ai_tokens")),
    _breakdown_view("skill", "skill", ("invocations", "cache_hits", "ai_tokens")),
    """CREATE OR REPLACE VIEW {db}.crossings AS
    SELECT * FROM {db}.threshold_crossings FINAL""",
    """CREATE OR REPLACE VIEW {db}.deliveries AS
    SELECT * FROM {db}.alert_deliveries FINAL""",
)

# The history rollup: one row per (workspace, cycle) after merges, holding every
# (dimension, metric, key) of the cycle with its latest (version, value), and the cycle's
# latest (version, cycle_ends_at, plan). Kept by a materialized view on every insert into
# usage_snapshots; ``max`` of tuples picks the highest version, so the rollup is
# idempotent and versioned like the snapshot rows (a block written twice changes
# nothing, a corrected row wins by its version). Reads use FINAL (merging the parts),
# exact before merges. Entry names are ``dimension|metric|key`` (key last: it is data).
# Rows are large (every value of a cycle), so granules are small: a workspace's history
# reads a granule or two, not thousands of other workspaces' rows.
_ROLLUP_V3: Final = (
    """CREATE TABLE IF NOT EXISTS {db}.usage_cycles (
        workspace_id String,
        cycle_start DateTime64(3, 'UTC'),
        entries SimpleAggregateFunction(maxMap, Map(String, Tuple(UInt64, Nullable(Int64)))),
        head SimpleAggregateFunction(max, Tuple(UInt64, DateTime64(3, 'UTC'), Nullable(String)))
    ) ENGINE = AggregatingMergeTree
    ORDER BY (workspace_id, cycle_start)
    SETTINGS index_granularity = 16""",
    """CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_cycles_mv TO {db}.usage_cycles AS
    SELECT workspace_id, cycle_start,
           maxMap(map(concat(dimension, '|', metric, '|', key), tuple(version, value)))
               AS entries,
           max(tuple(version, cycle_ends_at, plan)) AS head
    FROM {db}.usage_snapshots
    GROUP BY workspace_id, cycle_start""",
    # rows written before the view existed (harmless to repeat: max is idempotent)
    """INSERT INTO {db}.usage_cycles
    SELECT workspace_id, cycle_start,
           maxMap(map(concat(dimension, '|', metric, '|', key), tuple(version, value))),
           max(tuple(version, cycle_ends_at, plan))
    FROM {db}.usage_snapshots
    GROUP BY workspace_id, cycle_start""",
)

# Cost (usage.aggregates v3): the cost metrics are rows like every other metric; each
# row also carries the price table that priced its cycle (null before costs were metered).
_COST_V4: Final = (
    """ALTER TABLE {db}.usage_snapshots
    ADD COLUMN IF NOT EXISTS prices_version Nullable(String)""",
    """CREATE OR REPLACE VIEW {db}.usage_cost AS
    SELECT workspace_id, cycle_start, dimension, key,
           sumIf(ifNull(value, 0), metric = 'cost_micros') AS cost_micros,
           sumIf(ifNull(value, 0), metric = 'unpriced_tokens') AS unpriced_tokens
    FROM {db}.usage_latest
    WHERE metric IN ('cost_micros', 'unpriced_tokens')
    GROUP BY workspace_id, cycle_start, dimension, key""",
)

# Forecast alerts (quota.thresholds v2): stored with the crossings, told apart by
# ``kind``; ``forecast_at`` is when the quota is projected to reach 100 %. Rows written
# before have the defaults (threshold crossings, no forecast).
_FORECASTS_V5: Final = (
    """ALTER TABLE {db}.threshold_crossings
    ADD COLUMN IF NOT EXISTS kind LowCardinality(String) DEFAULT 'threshold'""",
    """ALTER TABLE {db}.threshold_crossings
    ADD COLUMN IF NOT EXISTS forecast_at Nullable(DateTime64(3, 'UTC'))""",
    # a view's ``*`` is expanded when it is created: again, with the new columns
    """CREATE OR REPLACE VIEW {db}.crossings AS
    SELECT * FROM {db}.threshold_crossings FINAL""",
)

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(1, "tables", _TABLES_V1),
    Migration(2, "analyst views", _VIEWS_V1),
    Migration(3, "history rollup", _ROLLUP_V3),
    Migration(4, "cost", _COST_V4),
    Migration(5, "forecast alerts", _FORECASTS_V5),
)

_MIGRATIONS_TABLE: Final = """CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
    version UInt32,
    name String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree ORDER BY version"""


def quote_identifier(name: str) -> str:
    """A ClickHouse identifier in backquotes (a database name from settings)."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def applied_versions(client: Client, database: str) -> set[int]:
    db = quote_identifier(database)
    result = client.query(f"SELECT DISTINCT version FROM {db}.schema_migrations")
    return {int(row[0]) for row in result.result_rows}


def migrate(client: Client, database: str) -> list[int]:
    """Create the database and run every migration not yet recorded; returns those run."""
    db = quote_identifier(database)
    client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    client.command(_MIGRATIONS_TABLE.format(db=db))
    done = applied_versions(client, database)
    ran: list[int] = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        for statement in migration.statements:
            client.command(statement.format(db=db))
        record: list[list[Any]] = [[migration.version, migration.name]]
        client.insert("schema_migrations", record, column_names=["version", "name"],
                      database=database)
        ran.append(migration.version)
    return ran
