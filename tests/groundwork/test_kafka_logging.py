"""librdkafka's own log lines reach the service's log, repeats held back
(``groundwork.kafka.RepeatsHeldBack``): a broker away is one line a minute, not twenty a
second."""

from __future__ import annotations

import logging

from groundwork.kafka import RepeatsHeldBack, client_logger, consumer_config, producer_config
from groundwork.settings import load_settings

REFUSED = ("127.0.0.1:19092/bootstrap: Connect to ipv4#127.0.0.1:19092 failed: "
           "Connection refused (after {ms}ms in state CONNECT)")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("meter.kafka.client", logging.ERROR, __file__, 0, message, (),
                             None)


def test_the_first_of_a_kind_passes_then_one_a_minute_with_the_count_held_back() -> None:
    clock = Clock()
    held = RepeatsHeldBack(every_s=60, clock=clock)
    passed = []
    for second in range(0, 150):
        for ms in (0, 1):  # numbers differ, the kind is the same
            clock.now = second + ms / 2
            record = _record(REFUSED.format(ms=ms))
            if held.filter(record):
                passed.append((clock.now, record.getMessage()))
    assert [t for t, _ in passed] == [0, 60, 120]
    assert not passed[0][1].endswith("held back)")
    assert passed[1][1].endswith("(119 more like it held back)")
    assert passed[2][1].endswith("(119 more like it held back)")


def test_other_kinds_are_not_held_back_by_a_repeat() -> None:
    held = RepeatsHeldBack(every_s=60, clock=Clock())
    assert held.filter(_record(REFUSED.format(ms=0)))
    assert held.filter(_record("Transaction coordinator changed"))
    assert not held.filter(_record(REFUSED.format(ms=3)))


def test_every_client_built_here_logs_through_the_held_back_logger() -> None:
    settings = load_settings()
    logger = client_logger()
    assert producer_config(settings)["logger"] is logger
    assert consumer_config(settings, "g")["logger"] is logger
    assert [type(f) for f in logger.filters] == [RepeatsHeldBack]
    client_logger()  # asked again: still one filter
    assert len(logger.filters) == 1
