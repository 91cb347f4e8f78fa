"""The dashboard app served in a thread for the tests, as `meter dashboard` serves it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from dashboard.app import create_app
from dashboard.checkapi import CheckApi
from dashboard.server import serve_in_thread
from dashboard.sources import UsageSource
from tests.dashboard import data


@contextlib.contextmanager
def serving_dashboard(source: UsageSource, check_api: CheckApi) -> Iterator[str]:
    """The dashboard on ``source`` at ``data.NOW``: its URL while it serves; then it stops
    and ``check_api`` is closed."""
    running = serve_in_thread(create_app(source, check_api, clock_ms=lambda: data.NOW))
    try:
        yield running.url
    finally:
        running.stop()
        check_api.close()
