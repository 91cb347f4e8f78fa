"""Server-rendered SVG charts (pure strings; no script). Colors come from the page's
CSS through classes, so charts follow the stylesheet.

Charts scale uniformly to their container (``width: 100%`` of a viewBox sized for a
laptop-width card), except the quota bar, which stretches (it holds no text).
Every mark has a ``<title>`` with the exact value for tooltips and screen readers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from dashboard.quotas import QuotaBar

Formatter = Callable[[int], str]


@dataclass(frozen=True, slots=True)
class Segment:
    """One stacked part of an ``hbar_chart`` bar."""

    name: str  # a CSS class suffix: seg-<name>
    value: int


@dataclass(frozen=True, slots=True)
class ColumnDatum:
    """One ``column_chart`` column."""

    label: str
    value: int
    tooltip: str
    limit: int | None = None
    href: str | None = None
    current: bool = False
    selected: bool = False


def _num(value: float) -> str:
    """Coordinates with at most 2 decimals, no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above ``value`` (axis maximum)."""
    if value <= 0:
        return 1
    power = 10 ** max(0, math.floor(math.log10(value)))
    for step in (1, 2, 2.5, 5, 10):
        candidate = math.ceil(step * power)
        if candidate >= value:
            return int(candidate)
    return int(10 * power)  # pragma: no cover


def ticks(maximum: int, count: int = 4) -> list[int]:
    """``count`` + 1 evenly spaced ticks from 0 to ``nice_ceiling(maximum)``."""
    top = nice_ceiling(maximum)
    if top < count:
        return list(range(0, top + 1))
    return [round(top * i / count) for i in range(count + 1)]


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _chart_start(kind: str, width: int, height: int, title: str) -> str:
    """A chart's opening ``<svg>``, scaling to its container up to ``width`` px, titled."""
    return (f'<svg class="chart {kind}" viewBox="0 0 {width} {height}" '
            f'style="max-width:{width}px" role="img" '
            f'aria-label="{escape(title)}"><title>{escape(title)}</title>')


def quota_bar(bar: QuotaBar) -> str:
    """A stretched bar: track, fill up to the usage, marks at 80, 95 and 100 %."""
    label = escape(f"{bar.quota}: {bar.used:,} of "
                   f"{'unlimited' if bar.limit is None else f'{bar.limit:,}'}")
    parts = [
        f'<svg class="qbar" viewBox="0 0 1000 20" preserveAspectRatio="none" role="img" '
        f'aria-label="{label}">',
        f"<title>{label}</title>",
        '<rect class="qbar-track" x="0" y="4" width="1000" height="12" rx="6"/>',
    ]
    if bar.limit is None:
        parts.append('<rect class="qbar-unlimited" x="0" y="4" width="1000" height="12" '
                     'rx="6"/>')
    else:
        over_from = bar.mark(100) * 1000
        parts.append(f'<rect class="qbar-over-zone" x="{_num(over_from)}" y="4" '
                     f'width="{_num(1000 - over_from)}" height="12"/>')
        width = bar.fill * 1000
        if width > 0:
            parts.append(f'<rect class="qbar-fill lvl-{bar.level}" x="0" y="4" '
                         f'width="{_num(max(width, 6))}" height="12" rx="6"/>')
        for threshold in (80, 95, 100):
            x = bar.mark(threshold) * 1000
            parts.append(f'<line class="qbar-mark mark-{threshold}" x1="{_num(x)}" y1="0" '
                         f'x2="{_num(x)}" y2="20" vector-effect="non-scaling-stroke"/>')
    parts.append("</svg>")
    return "".join(parts)


def hbar_chart(items: Sequence[tuple[str, Sequence[Segment]]], value_text: Formatter, *,
               title: str, width: int = 560, label_width: int = 150, row: int = 26,
               legend: Sequence[tuple[str, str]] = (),
               display: Callable[[str], str] = str) -> str:
    """Horizontal bars, one row per item, each bar one or more stacked segments.

    ``legend``: (segment name, text) pairs drawn above the bars when given; ``display``
    shortens a label for its row (the tooltip keeps the whole label).
    """
    if not items:
        return ""
    value_width = 72
    top = 22 if legend else 4
    height = top + row * len(items) + 4
    plot = width - label_width - value_width - 8
    largest = max(sum(s.value for s in segs) for _, segs in items) or 1
    out = [_chart_start("hbar", width, height, title)]
    x_legend = label_width
    for name, text in legend:
        out.append(f'<rect class="seg-{escape(name)}" x="{x_legend}" y="5" width="10" '
                   f'height="10" rx="2"/><text class="legend" x="{x_legend + 14}" y="14">'
                   f"{escape(text)}</text>")
        x_legend += 14 + 8 * len(text) + 16
    for index, (label, segments) in enumerate(items):
        y = top + index * row
        total = sum(s.value for s in segments)
        out.append(f'<g class="hbar-row"><title>{escape(label)}: {total:,}</title>')
        out.append(f'<text class="label" x="{label_width - 8}" y="{y + row / 2 + 4:.0f}" '
                   f'text-anchor="end">{escape(truncate(display(label), label_width // 7))}</text>')
        x = float(label_width)
        for segment in segments:
            w = segment.value / largest * plot
            if w <= 0:
                continue
            out.append(f'<rect class="seg-{escape(segment.name)}" x="{_num(x)}" y="{y + 5}" '
                       f'width="{_num(max(w, 1.5))}" height="{row - 10}" rx="3">'
                       f"<title>{escape(label)} {escape(segment.name)}: "
                       f"{segment.value:,}</title></rect>")
            x += w
        out.append(f'<text class="value" x="{_num(x + 6)}" y="{y + row / 2 + 4:.0f}">'
                   f"{escape(value_text(total))}</text></g>")
    out.append("</svg>")
    return "".join(out)


def column_chart(columns: Sequence[ColumnDatum], value_text: Formatter, *, title: str,
                 width: int = 960, height: int = 260) -> str:
    """Vertical columns (one per cycle) on a 0-based axis, with limit ticks where a
    limit is set; a column with ``href`` is a link."""
    if not columns:
        return ""
    left, right, top, bottom = 64, 8, 20, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    largest = max([c.value for c in columns] + [c.limit or 0 for c in columns])
    axis = ticks(largest)
    ymax = axis[-1] or 1
    out = [_chart_start("columns", width, height, title)]
    for tick in axis:
        y = top + plot_h - tick / ymax * plot_h
        out.append(f'<line class="grid" x1="{left}" y1="{_num(y)}" x2="{width - right}" '
                   f'y2="{_num(y)}"/><text class="axis" x="{left - 8}" y="{_num(y + 4)}" '
                   f'text-anchor="end">{escape(value_text(tick))}</text>')
    slot = plot_w / len(columns)
    bar_w = min(44.0, slot * 0.62)
    for index, col in enumerate(columns):
        cx = left + slot * index + slot / 2
        h = col.value / ymax * plot_h
        y = top + plot_h - h
        classes = "col" + (" col-current" if col.current else "") + (
            " col-selected" if col.selected else "")
        body = (f'<rect class="{classes}" x="{_num(cx - bar_w / 2)}" y="{_num(y)}" '
                f'width="{_num(bar_w)}" height="{_num(max(h, 0))}" rx="3"/>'
                f'<rect class="col-hit" x="{_num(cx - slot / 2)}" y="{top}" '
                f'width="{_num(slot)}" height="{plot_h}"/>')
        if col.limit is not None:
            ly = top + plot_h - col.limit / ymax * plot_h
            body += (f'<line class="limit" x1="{_num(cx - slot * 0.42)}" y1="{_num(ly)}" '
                     f'x2="{_num(cx + slot * 0.42)}" y2="{_num(ly)}"/>')
        body += (f'<text class="col-value" x="{_num(cx)}" y="{_num(y - 5)}" '
                 f'text-anchor="middle">{escape(value_text(col.value))}</text>')
        label_class = "axis x" + (" strong" if col.selected else "")
        body += (f'<text class="{label_class}" x="{_num(cx)}" y="{height - 9}" '
                 f'text-anchor="middle">{escape(col.label)}</text>')
        tip = f"<title>{escape(col.tooltip)}</title>"
        if col.href:
            out.append(f'<a href="{escape(col.href)}" class="col-link">{tip}{body}</a>')
        else:
            out.append(f"<g>{tip}{body}</g>")
    out.append(f'<line class="baseline" x1="{left}" y1="{top + plot_h}" x2="{width - right}" '
               f'y2="{top + plot_h}"/></svg>')
    return "".join(out)
