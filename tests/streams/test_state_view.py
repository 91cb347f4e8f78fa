"""The check API's view of ``quota.state`` on the real broker, written in transactions as
the worker writes it: ready once every partition is read to its end (past trailing
markers, up to an open transaction, or at once when empty), never an aborted record."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from groundwork.settings import Settings
from streams.state_view import QuotaStateView
from tests.meter.transactions import TransactionalWriter, state_item
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka


@pytest.fixture
def start_view(meter_settings: Settings) -> Iterator[Callable[[], QuotaStateView]]:
    views: list[QuotaStateView] = []

    def start() -> QuotaStateView:
        view = QuotaStateView(meter_settings)
        view.start()
        views.append(view)
        return view

    yield start
    for view in views:
        view.stop()


def _version(view: QuotaStateView, workspace: str) -> int | None:
    record = view.get(workspace)
    return None if record is None else int(record["version"])


def test_the_view_is_ready_with_committed_values_only(
    meter_settings: Settings, start_view: Callable[[], QuotaStateView],
) -> None:
    writer = TransactionalWriter(meter_settings, "quota.state")
    writer.commit([state_item(0, "wa", 1), state_item(1, "wb", 1)])
    # newer versions: the view would keep them if it saw them
    writer.abort([state_item(0, "wa", 99), state_item(1, "wc", 99)])
    writer.commit([state_item(0, "wa", 2)])  # partition 0 ends with a commit marker
    writer.abort([state_item(1, "wb", 98)])  # partition 1: an aborted record, its marker
    view = start_view()
    assert view.wait_ready(20)
    assert (_version(view, "wa"), _version(view, "wb"), view.get("wc")) == (2, 1, None)
    assert view.newest_seen_ms == 2  # as_of of the newest committed record, not 99
    assert len(view) == 2


def test_the_view_of_an_empty_topic_is_ready(
    meter_settings: Settings, start_view: Callable[[], QuotaStateView],
) -> None:
    assert start_view().wait_ready(20)


def test_an_open_transaction_does_not_hold_readiness_back(
    meter_settings: Settings, start_view: Callable[[], QuotaStateView],
) -> None:
    writer = TransactionalWriter(meter_settings, "quota.state")
    writer.commit([state_item(0, "wa", 1)])
    with writer.open([state_item(0, "wa", 2), state_item(1, "wb", 1)]):
        view = start_view()
        assert view.wait_ready(20)
        assert (_version(view, "wa"), view.get("wb")) == (1, None)
    wait_until(lambda: (_version(view, "wa"), _version(view, "wb")) == (2, 1),  # committed
               "the view to follow the commit", timeout_s=20)
