"""``read_all`` and ``unread_partitions`` on transactional topics (the worker's outputs):
only committed records, and an end that trailing markers and open transactions do not
move out of reach."""

from __future__ import annotations

import time

import pytest

from groundwork.kafka import unread_partitions
from groundwork.settings import Settings
from schemas.reading import read_all
from tests.meter.transactions import TransactionalWriter, state_item

pytestmark = pytest.mark.kafka

TOPIC = "quota.state"  # two partitions under ``meter_settings``


def _versions(settings: Settings, timeout_s: float = 15.0) -> list[tuple[str, int]]:
    started = time.monotonic()
    records = read_all(settings, TOPIC, timeout_s=timeout_s)
    assert time.monotonic() - started < timeout_s
    return sorted((r["workspace_id"], r["version"]) for _, r in records)


def test_read_all_returns_the_committed_records_and_stops_at_trailing_markers(
    meter_settings: Settings,
) -> None:
    writer = TransactionalWriter(meter_settings, TOPIC)
    writer.commit([state_item(0, "wa", 1), state_item(0, "wa", 2), state_item(1, "wb", 1)])
    writer.abort([state_item(0, "wa", 99), state_item(1, "wb", 99)])
    writer.commit([state_item(0, "wa", 3)])  # partition 0 ends with a commit marker
    writer.abort([state_item(1, "wb", 98)])  # partition 1: an aborted record, its marker
    assert _versions(meter_settings) == [("wa", 1), ("wa", 2), ("wa", 3), ("wb", 1)]


def test_read_all_reads_up_to_an_open_transaction(meter_settings: Settings) -> None:
    writer = TransactionalWriter(meter_settings, TOPIC)
    writer.commit([state_item(0, "wa", 1), state_item(1, "wb", 1)])
    with writer.open([state_item(0, "wa", 2), state_item(1, "wb", 2)]):
        # the end under read_committed is the last stable offset, before the open records
        assert _versions(meter_settings) == [("wa", 1), ("wb", 1)]
    assert _versions(meter_settings) == [("wa", 1), ("wa", 2), ("wb", 1), ("wb", 2)]


def test_read_all_of_an_empty_topic_returns_nothing_at_once(meter_settings: Settings) -> None:
    assert _versions(meter_settings, timeout_s=10) == []


def test_unread_partitions_ignores_what_only_markers_and_aborted_records_follow(
    meter_settings: Settings,
) -> None:
    writer = TransactionalWriter(meter_settings, TOPIC)
    writer.commit([state_item(0, "wa", 1), state_item(1, "wb", 1)])
    writer.abort([state_item(1, "wb", 99)])
    topic = meter_settings.topic(TOPIC)
    # Offset 1 is the commit marker on both: a consumer that processed the record at 0
    # commits 1 and never gets further, yet has nothing left to read.
    assert unread_partitions(meter_settings, {(topic, 0): 1, (topic, 1): 1}) == set()
    assert unread_partitions(meter_settings, {(topic, 0): 0, (topic, 1): 1}) == {(topic, 0)}
