"""Versioned DDL: applied once, recorded, idempotent; the writer's columns match the tables."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from sinks.ddl import MIGRATIONS, applied_versions, migrate
from sinks.rows import TABLE_OF_TOPIC


def test_migrations_run_once_and_are_recorded(client: Client) -> None:
    # the store fixture has migrated already
    assert applied_versions(client, "meter") == {m.version for m in MIGRATIONS}
    assert migrate(client, "meter") == []
    assert client.query(
        "SELECT count() FROM meter.schema_migrations FINAL").result_rows == [(len(MIGRATIONS),)]


def test_a_fresh_database_gets_every_migration_in_order(client: Client) -> None:
    assert migrate(client, "other`db") == [m.version for m in MIGRATIONS]
    assert migrate(client, "other`db") == []


def test_every_sink_table_has_exactly_the_writers_columns(client: Client) -> None:
    for spec in TABLE_OF_TOPIC.values():
        rows = client.query(
            "SELECT name, type FROM system.columns WHERE database = 'meter' AND table = {t:String}"
            " ORDER BY position", parameters={"t": spec.table}).result_rows
        assert tuple(rows) == tuple(zip(spec.columns, spec.types, strict=True)), spec.table


def test_analyst_views_exist(client: Client) -> None:
    views = {row[0] for row in client.query(
        "SELECT name FROM system.tables WHERE database = 'meter' AND engine = 'View'"
    ).result_rows}
    assert views == {"usage_latest", "current_cycle", "usage_by_provider", "usage_by_model",
                     "usage_by_member", "usage_by_machine", "usage_by_skill", "crossings",
                     "deliveries", "usage_cost"}
