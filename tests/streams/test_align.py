"""Event-time alignment across the input topics of a partition (streams/align.py, S1)."""

from __future__ import annotations

from streams.align import EventTimeAligner
from streams.processor import Incoming

TOPICS = ("quota.plans", "usage.tokens", "usage.commands")


def rec(topic: str, time: int, partition: int = 0, offset: int = 0) -> Incoming:
    return Incoming(topic, partition, offset, b"w", time)


def never_lagging(topic: str, partition: int) -> bool:
    return False


def aligner(**kwargs: float) -> EventTimeAligner:
    a = EventTimeAligner(TOPICS, **kwargs)  # type: ignore[arg-type]
    a.assign([0, 1])
    return a


def at_end(a: EventTimeAligner, partition: int = 0) -> None:
    for topic in TOPICS:
        a.mark_end(topic, partition)


def test_records_are_taken_in_event_time_order_across_topics_offset_order_within() -> None:
    a = aligner()
    for r in (rec("usage.tokens", 30, offset=0), rec("usage.tokens", 10, offset=1),
              rec("usage.commands", 20), rec("quota.plans", 5)):
        a.add(r)
    at_end(a)
    taken = a.take(100, now=0.0, lagging=never_lagging)
    # tokens keep their offset order (30 before 10); heads merge by time
    assert [(r.topic, r.time) for r in taken] == [
        ("quota.plans", 5), ("usage.commands", 20), ("usage.tokens", 30), ("usage.tokens", 10)]


def test_equal_times_take_the_earlier_topic_first_control_before_usage() -> None:
    a = aligner()
    a.add(rec("usage.tokens", 7))
    a.add(rec("quota.plans", 7))
    at_end(a)
    assert [r.topic for r in a.take(10, 0.0, never_lagging)] == ["quota.plans", "usage.tokens"]


def test_a_partition_waits_for_a_topic_not_at_its_end_then_goes_on_after_the_bound() -> None:
    a = aligner(idle_wait_s=0.1, lag_wait_s=2.0)
    a.add(rec("usage.tokens", 50))
    a.mark_end("quota.plans", 0)  # usage.commands: no news yet (its fetch may bring time 10)
    assert a.take(10, now=0.0, lagging=never_lagging) == []
    assert a.waiting()
    assert a.take(10, now=0.05, lagging=never_lagging) == []
    assert [r.time for r in a.take(10, now=0.11, lagging=never_lagging)] == [50]
    assert a.timeouts == 1
    # still no news from usage.commands: its wait is over, records go on at once
    a.add(rec("usage.tokens", 60))
    assert [r.time for r in a.take(10, now=0.12, lagging=never_lagging)] == [60]
    assert a.timeouts == 1


def test_a_topic_known_to_lag_is_waited_for_longer() -> None:
    a = aligner(idle_wait_s=0.1, lag_wait_s=2.0)
    a.add(rec("usage.tokens", 50))
    a.mark_end("quota.plans", 0)

    def commands_lag(topic: str, partition: int) -> bool:
        return topic == "usage.commands"

    assert a.take(10, now=0.0, lagging=commands_lag) == []
    assert a.take(10, now=1.0, lagging=commands_lag) == []
    a.add(rec("usage.commands", 10))  # the fetch arrives: the earlier record goes first
    assert [r.time for r in a.take(10, now=1.1, lagging=commands_lag)] == [10]
    # commands is empty again and not at its end: tokens waits for it anew
    assert a.take(10, now=1.2, lagging=commands_lag) == []
    a.mark_end("usage.commands", 0)
    assert [r.time for r in a.take(10, now=1.3, lagging=commands_lag)] == [50]
    assert a.timeouts == 0


def test_the_end_of_a_topic_lets_others_go_on_without_waiting() -> None:
    a = aligner()
    a.add(rec("usage.tokens", 50))
    a.add(rec("usage.tokens", 60))
    at_end(a)
    a.add(rec("usage.tokens", 70))  # a record after the end: that topic is not at its end
    taken = a.take(10, now=0.0, lagging=never_lagging)
    # the last tokens record drained its queue; plans and commands are at their end
    assert [r.time for r in taken] == [50, 60, 70]
    assert not a.waiting()


def test_limit_spreads_over_partitions_and_partitions_wait_independently() -> None:
    a = aligner()
    for t in range(5):
        a.add(rec("usage.tokens", t, partition=0, offset=t))
        a.add(rec("usage.tokens", t, partition=1, offset=t))
    at_end(a, 0)  # partition 1 has not seen the end of its other topics
    first = a.take(3, now=0.0, lagging=never_lagging)
    assert len(first) == 3 and {r.partition for r in first} == {0}
    rest = a.take(10, now=0.0, lagging=never_lagging)
    assert [r.partition for r in rest] == [0, 0]  # partition 1 waits


def test_queues_over_the_limit_pause_and_drain_below_half() -> None:
    a = EventTimeAligner(TOPICS, max_queued=4)
    a.assign([0])
    for t in range(4):
        a.add(rec("usage.tokens", t, offset=t))
    assert a.over_limit("usage.tokens", 0) and not a.drained("usage.tokens", 0)
    at_end(a)
    a.take(3, 0.0, never_lagging)
    assert a.drained("usage.tokens", 0) and a.total_queued() == 1


def test_revoked_partitions_drop_their_records_and_refuse_new_ones() -> None:
    a = aligner()
    a.add(rec("usage.tokens", 1, partition=1))
    a.revoke([1])
    assert not a.add(rec("usage.tokens", 2, partition=1))
    assert a.total_queued() == 0
    a.add(rec("usage.tokens", 3))
    a.clear()
    assert a.total_queued() == 0
