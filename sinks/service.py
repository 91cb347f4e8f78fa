"""``meter sink``: the consumer, the batching writer and the HTTP read API in one process.

The process owns the store (with chDB, the data path); CLI and dashboard reads go
through its HTTP read API. Stop it with SIGINT/SIGTERM (``stop`` event): the pending
batch is written once more and committed, or left to be re-read after a restart.
"""

from __future__ import annotations

import logging
import threading

from groundwork.settings import Settings
from sinks.consumer import DEFAULT_GROUP, SinkConsumer
from sinks.http_api import ReadService, make_server, serve_in_thread
from sinks.metrics import SinkMetrics
from sinks.store import StoreHandle, StoreUnavailable, describe
from sinks.writer import DEFAULT_BACKOFF, Backoff, BatchWriter

log = logging.getLogger(__name__)


def wait_for_store(store: StoreHandle, stop: threading.Event, metrics: SinkMetrics,
                   backoff: Backoff = DEFAULT_BACKOFF) -> bool:
    """Open the store and apply migrations, retrying with backoff; False if stopped first."""
    for delay in backoff.delays():
        try:
            store.client()
            metrics.store_ready = True
            return True
        except StoreUnavailable as exc:
            metrics.retried()
            log.warning("%s; retrying in %.1fs", exc, delay)
            if stop.wait(delay):
                return False
    return False  # pragma: no cover - delays() never ends


def run_sink(settings: Settings, *, stop: threading.Event, group_id: str = DEFAULT_GROUP,
             max_rows: int = 20_000, max_delay_s: float = 1.0,
             ready: threading.Event | None = None) -> None:
    """Run until ``stop`` is set. ``ready`` is set once the read API is listening."""
    metrics = SinkMetrics()
    write_store, read_store = StoreHandle(settings), StoreHandle(settings)
    server = make_server(settings.sink_host, settings.sink_port, ReadService(read_store, metrics))
    serve_in_thread(server)
    log.info("sink: %s, read API and metrics on http://%s:%d", describe(settings),
             settings.sink_host, server.server_address[1])
    if ready is not None:
        ready.set()
    try:
        if not wait_for_store(write_store, stop, metrics):
            return
        writer = BatchWriter(write_store, max_rows=max_rows, max_delay_s=max_delay_s,
                             metrics=metrics, stop=stop)
        SinkConsumer(settings, writer, group_id=group_id, stop=stop).run()
    finally:
        server.shutdown()
        server.server_close()
        write_store.close()
        read_store.close()
