"""SVG charts: well-formed, exact values in titles, marks where the thresholds are."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from dashboard import format as fmt
from dashboard import svg
from dashboard.quotas import HEADROOM, quota_bar

NS = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    return ET.fromstring(markup.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1))


@pytest.mark.parametrize(("value", "top"), [
    (0, 1), (1, 1), (7, 10), (12, 20), (180, 200), (220, 250), (1_234_567, 2_000_000),
    (3_400_000_000, 5_000_000_000),
])
def test_axis_maximum_is_a_nice_number(value: int, top: int) -> None:
    assert svg.nice_ceiling(value) == top


def test_ticks_are_evenly_spaced_from_zero() -> None:
    assert svg.ticks(1_234_567) == [0, 500_000, 1_000_000, 1_500_000, 2_000_000]
    assert svg.ticks(2) == [0, 1, 2]


def test_quota_bar_marks_sit_at_80_95_and_100_percent_of_the_limit() -> None:
    root = parse(svg.quota_bar(quota_bar("ai_tokens", 500, 1_000)))
    marks = {line.get("class"): float(line.get("x1") or 0) for line in root.iter(NS + "line")}
    assert marks == {
        "qbar-mark mark-80": pytest.approx(800 / HEADROOM, abs=0.01),
        "qbar-mark mark-95": pytest.approx(950 / HEADROOM, abs=0.01),
        "qbar-mark mark-100": pytest.approx(1000 / HEADROOM, abs=0.01),
    }
    fill = next(r for r in root.iter(NS + "rect") if "qbar-fill" in (r.get("class") or ""))
    assert float(fill.get("width") or 0) == pytest.approx(500 / HEADROOM, abs=0.01)
    assert "lvl-ok" in (fill.get("class") or "")
    assert root.findtext(NS + "title") == "ai_tokens: 500 of 1,000"


def test_an_unlimited_quota_bar_has_no_marks() -> None:
    root = parse(svg.quota_bar(quota_bar("api_requests_per_cycle", 5, None)))
    assert list(root.iter(NS + "line")) == []


def test_bar_chart_rows_carry_exact_values_and_escape_labels() -> None:
    markup = svg.hbar_chart(
        [("<b>&co", [svg.Segment("main", 1_234_567)]), ("b", [svg.Segment("main", 10)])],
        fmt.count, title="Tokens")
    root = parse(markup)
    titles = [t.text for t in root.iter(NS + "title")]
    assert "<b>&co: 1,234,567" in titles
    assert "<b>" not in markup
    values = [t.text for t in root.iter(NS + "text") if t.get("class") == "value"]
    assert values == ["1.2 M", "10"]
    assert svg.hbar_chart([], fmt.count, title="x") == ""


def test_stacked_segments_add_up_and_long_labels_are_cut() -> None:
    markup = svg.hbar_chart(
        [("provider/a-very-long-model-name-indeed", [svg.Segment("input", 30),
                                                     svg.Segment("output", 10)])],
        fmt.count, title="Tokens", legend=(("input", "input"), ("output", "output")),
        display=lambda n: n.partition("/")[2])
    root = parse(markup)
    widths = [float(r.get("width") or 0) for r in root.iter(NS + "rect")
              if r.get("class") in ("seg-input", "seg-output") and r.get("y") != "5"]
    assert widths[0] == pytest.approx(3 * widths[1])
    labels = [t.text or "" for t in root.iter(NS + "text") if t.get("class") == "label"]
    assert labels == ["a-very-long-model-na…"]


def test_column_chart_links_columns_and_draws_limits() -> None:
    columns = [svg.ColumnDatum("Jan 26", 100, "Jan: 100", limit=150, href="/w?c=1"),
               svg.ColumnDatum("Feb 26", 200, "Feb: 200", current=True, selected=True)]
    markup = svg.column_chart(columns, fmt.count, title="AI tokens")
    root = parse(markup)
    assert [a.get("href") for a in root.iter(NS + "a")] == ["/w?c=1"]
    assert len([line for line in root.iter(NS + "line") if line.get("class") == "limit"]) == 1
    assert [t.text for t in root.iter(NS + "text") if t.get("class") == "col-value"] == [
        "100", "200"]
    assert re.search(r'class="col col-current col-selected"', markup)
