"""Transactions that abort in the middle of a batch (an injected failure after part of
the batch's records were produced) lose and double nothing: the batch is forgotten in
memory, read again from the last committed offsets and committed once.

The worker runs in this process (``streams.worker.Worker`` in a thread) against the real
broker; only its ``_produce`` step is wrapped to fail every third transaction.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from groundwork.ports import free_port
from groundwork.settings import Settings
from streams.processor import Output
from streams.worker import Worker
from tests.faults.support import compare, expected_of, fixed_limit_keys, stream_output
from tests.streams.harness import publish_lines, wait_caught_up
from tests.streams.test_worker import _generated_lines

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


class FailingWorker(Worker):
    """Every third transaction fails halfway through producing its records."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.transactions = 0
        self.injected = 0
        self._produced = 0

    def _transact(self, outputs: list[Output], offsets: list[Any]) -> None:
        self.transactions += 1
        self._produced = 0
        self._fail_at = len(outputs) // 2 if self.transactions % 3 == 0 and offsets else -1
        super()._transact(outputs, offsets)

    def _produce(self, producer: Any, out: Output, on_delivery: Any) -> None:
        if self._produced == self._fail_at:
            self.injected += 1
            raise KafkaException(KafkaError(KafkaError._STATE, "injected failure",
                                            txn_requires_abort=True))
        self._produced += 1
        super()._produce(producer, out, on_delivery)


def test_aborted_transactions_mid_batch_lose_and_double_nothing(
    meter_settings: Settings, tmp_path: Path
) -> None:
    lines = _generated_lines(seed=19, workspaces=30, events=12_000)
    publish_lines(meter_settings, lines)
    settings = meter_settings.model_copy(update={"worker_batch_max": 700,
                                                 "worker_web_port": free_port()})
    worker = FailingWorker(settings)
    thread = threading.Thread(target=worker.run, name="worker", daemon=True)
    thread.start()
    try:
        wait_caught_up(settings, timeout_s=240)
    finally:
        worker.stop()
        thread.join(60)
    expected = expected_of(lines)
    report = compare("transactions aborted mid-batch", expected, stream_output(settings),
                     fixed_limit_keys(lines), events_in=len(lines),
                     duplicates_injected=len(lines) - len(set(lines)))
    report.notes.append(f"{worker.transactions} transactions, {worker.injected} failed halfway "
                        f"and aborted ({worker.metrics.transactions_aborted} counted), "
                        f"{worker.metrics.batches} batches committed")
    report.show()
    assert report.differed == []
    assert worker.injected >= 3 and worker.metrics.transactions_aborted == worker.injected
    assert report.crossings_expected_exact > 0, "no counter crossing: the test proves nothing"
