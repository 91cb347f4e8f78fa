"""Readable numbers with units, times and durations."""

from __future__ import annotations

import pytest

from dashboard import format as fmt


@pytest.mark.parametrize(("value", "text"), [
    (0, "0"), (7, "7"), (999, "999"), (1000, "1.0 k"), (1234, "1.2 k"), (99_949, "99.9 k"),
    (99_960, "100 k"), (123_456, "123 k"), (999_960, "1.0 M"), (1_234_567, "1.2 M"),
    (12_345_678, "12.3 M"), (4_500_000_000, "4.5 B"), (-2_500, "-2.5 k"),
])
def test_counts_use_decimal_prefixes(value: int, text: str) -> None:
    assert fmt.count(value) == text


@pytest.mark.parametrize(("value", "text"), [
    (0, "0 B"), (512, "512 B"), (1_500, "1.5 kB"), (3_400_000_000, "3.4 GB"),
    (999_999, "1.0 MB"), (2_000_000_000_000, "2.0 TB"),
])
def test_bytes_use_decimal_units(value: int, text: str) -> None:
    assert fmt.byte_size(value) == text


def test_amounts_carry_their_unit_and_singular() -> None:
    assert fmt.amount("ai_tokens", 1_200_000) == "1.2 M tokens"
    assert fmt.amount("storage_bytes", 3_400_000_000) == "3.4 GB"
    assert fmt.amount("schedule_runs", 12) == "12 runs"
    assert fmt.amount("machines", 1) == "1 machine"
    assert fmt.amount("ai_tokens", None) == "unlimited"
    assert fmt.exact(1_234_567) == "1,234,567"


def test_a_pair_is_precise_enough_to_differ() -> None:
    assert fmt.pair("ai_tokens", 1_234_567, 1_250_000) == ("1.23 M", "1.25 M")
    assert fmt.pair("ai_tokens", 900, 1_000) == ("900", "1.0 k")
    assert fmt.pair("schedule_runs", 2_000, 2_000) == ("2.0 k", "2.0 k")
    assert fmt.pair("storage_bytes", 2_999_000_000, 3_000_000_000) == ("2.999 GB", "3.000 GB")
    assert fmt.pair("ai_tokens", 1_249_999, 1_250_000) == ("1,249,999", "1,250,000")


def test_percentages() -> None:
    assert fmt.percent(1, 3) == "33 %"
    assert fmt.percent(1, 400) == "0.2 %"
    assert fmt.percent(0, 10) == "0 %"
    assert fmt.percent(5, 0) == "–"


def test_times_and_durations() -> None:
    day = 86_400_000
    assert fmt.utc(1_775_822_400_000) == "2026-04-10 12:00 UTC"
    assert fmt.day(1_775_822_400_000) == "10 Apr 2026"
    assert fmt.month_label(1_775_822_400_000) == "Apr 26"
    assert fmt.duration(30_000) == "under a minute"
    assert fmt.duration(45 * 60_000) == "45 min"
    assert fmt.duration(3 * 3_600_000 + 20 * 60_000) == "3 h 20 min"
    assert fmt.duration(12 * day + 4 * 3_600_000) == "12 d 4 h"
    assert fmt.duration(2 * day) == "2 d"
    assert fmt.ends_in(5 * day, 0) == "ends in 5 d"
    assert fmt.ends_in(0, 3 * day) == "ended 3 d ago"


def test_a_moment_within_the_year() -> None:
    assert fmt.moment(1_777_593_600_000) == "1 May 00:00 UTC"
