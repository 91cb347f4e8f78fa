"""What was delivered (rebuilt from records) and which offsets may be committed."""

from __future__ import annotations

from alerting.ledger import Ledger
from alerting.offsets import OffsetTracker
from alerting.records import delivery_record, redact_url, target_of
from tests.alerting.factories import crossing


def _rec(status: str, attempt: int, channel: str = "webhook") -> dict[str, object]:
    return delivery_record(crossing(80), channel, status, attempt, None, None, 0)  # type: ignore[arg-type]


def test_a_delivered_key_is_done_and_replaying_records_changes_nothing() -> None:
    ledger = Ledger()
    records = [_rec("attempted", 1), _rec("retrying", 1), _rec("attempted", 2),
               _rec("delivered", 2)]
    for r in records + records:
        ledger.apply(r)
    state = ledger.state(crossing(80).alert_id, "webhook")
    assert state.done and state.final == "delivered" and state.attempts == 2
    assert not ledger.state(crossing(80).alert_id, "email").done


def test_an_attempt_without_outcome_is_open_so_it_is_sent_again() -> None:
    ledger = Ledger()
    for r in (_rec("attempted", 1), _rec("retrying", 1), _rec("attempted", 2)):
        ledger.apply(r)
    state = ledger.state(crossing(80).alert_id, "webhook")
    assert not state.done and state.open_attempt == 2 and state.attempts == 2


def test_muted_and_superseded_are_final_without_an_attempt() -> None:
    ledger = Ledger()
    ledger.apply(_rec("muted", 0, "email"))
    assert ledger.state(crossing(80).alert_id, "email").final == "muted"


def test_commit_never_passes_a_crossing_without_an_outcome() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.start(0, offset)
    tracker.finish(0, 11)
    tracker.finish(0, 12)
    assert tracker.to_commit() == {}
    tracker.finish(0, 10)
    assert tracker.to_commit() == {0: 13}
    tracker.committed({0: 13})
    assert tracker.to_commit() == {}
    assert tracker.pending() == 0


def test_partitions_are_independent() -> None:
    tracker = OffsetTracker()
    tracker.start(0, 5)
    tracker.start(1, 7)
    tracker.finish(1, 7)
    assert tracker.to_commit() == {1: 8}
    tracker.drop(0)
    assert tracker.pending() == 0


def test_targets_never_carry_secrets() -> None:
    assert redact_url("https://user:pw@hooks.example.com:8443/a/b?token=s#f", keep_path=True) \
        == "https://hooks.example.com:8443/a/b"
    assert target_of("slack", url="https://hooks.slack.com/services/T0/B0/XYZ") \
        == "https://hooks.slack.com/…"
    assert target_of("email", owners=("a@x", "b@y")) == "a@x, b@y"
