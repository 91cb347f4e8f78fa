"""The sections of a workspace page (pure: view model in, HTML out)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dashboard import format as fmt
from dashboard import svg
from dashboard.alerts import status_counts
from dashboard.breakdowns import Row, Table, chart_items
from dashboard.hints import Hint
from dashboard.html import esc, link, num, url
from dashboard.quotas import Decisions, QuotaBar
from dashboard.views import COST, HISTORY_METRICS, AlertsView, Cycle, WorkspaceView
from sinks.shape import parse_time
from streams.core.forecast import COUNTER_QUOTAS, INSUFFICIENT, forecast
from streams.core.pricing import dollars

WORKSPACE_PATH = "/workspace"
EXPORT_PATH = "/export.csv"


def workspace_url(view: WorkspaceView, anchor: str = "", **changes: str | None) -> str:
    """The page's own URL with some parameters changed (cycle, sort_*, metric)."""
    params: dict[str, str | int | None] = {"id": view.workspace_id}
    if not view.is_current:
        params["cycle"] = str(view.cycle["cycle_start"])
    for table, sort in view.sorts.items():
        params[f"sort_{table}"] = sort
    if view.metric != "ai_tokens":
        params["metric"] = view.metric
    params.update(changes)
    return url(WORKSPACE_PATH, params, anchor)


def section(anchor: str, title: str, body: str, aside: str = "", lead: str = "") -> str:
    lead_html = f'<p class="lead">{lead}</p>' if lead else ""
    return (f'<section id="{esc(anchor)}" class="section"><div class="section-head">'
            f"<h2>{esc(title)}</h2><div class=\"section-aside\">{aside}</div></div>"
            f"{lead_html}{body}</section>")


def pill(text: str, kind: str, title: str = "") -> str:
    tip = f' title="{esc(title)}"' if title else ""
    return f'<span class="pill pill-{esc(kind)}"{tip}>{esc(text)}</span>'


# ----------------------------------------------------------------------------- header

def header(view: WorkspaceView) -> str:
    cycle = view.cycle
    start, ends = view.cycle_start, view.cycle_ends_at
    plan = cycle.get("plan")
    plan_html = pill(f"plan {plan}", "plan") if plan else pill("no plan", "muted",
                                                                "metered without quotas")
    status = str(cycle.get("status", ""))
    status_html = pill("current cycle", "current") if view.is_current else pill(
        status, "muted", "final: closed for late events (S4); provisional: may still change")
    when = fmt.ends_in(ends, view.now_ms) if view.is_current else f"ended {fmt.day(ends)}"
    json_href = url("/api/v1/cycle", {"workspace": view.workspace_id,
                                      "cycle": str(cycle["cycle_start"])})
    downloads = (
        link(url(EXPORT_PATH, {"workspace": view.workspace_id,
                               "cycle": str(cycle["cycle_start"])}),
             "CSV of this cycle", "button")
        + link(url(EXPORT_PATH, {"workspace": view.workspace_id, "cycles": 12}),
               "CSV of 12 cycles", "button")
        + link(json_href, "JSON", "button ghost")
    )
    return (
        '<div class="page-head"><div>'
        f'<h1>{esc(view.workspace_id)}</h1><div class="meta">{plan_html}{status_html}'
        f'<span class="range">{esc(fmt.day(start))} – {esc(fmt.day(ends))}</span>'
        f'<span class="ends" title="{esc(fmt.utc(ends))}">{esc(when)}</span></div></div>'
        f'<div class="actions">{downloads}</div></div>'
        + cycle_picker(view)
    )


def cycle_picker(view: WorkspaceView) -> str:
    if len(view.history) <= 1:
        return ""
    items = []
    for c in view.history:
        start = parse_time(str(c["cycle_start"]))
        selected = c["cycle_start"] == view.cycle["cycle_start"]
        is_last = c is view.history[-1]
        href = workspace_url(view, cycle=None if is_last else str(c["cycle_start"]))
        text = fmt.month_label(start) + (" · now" if is_last else "")
        cls = "cycle-tab" + (" active" if selected else "")
        items.append(link(href, esc(text), cls, f"cycle starting {fmt.utc(start)}"))
    return f'<nav class="cycle-tabs" aria-label="cycles">{"".join(items)}</nav>'


# ----------------------------------------------------------------------------- quotas

def decision_note(view: WorkspaceView) -> str:
    d = view.decisions
    if not view.is_current:
        return ('<p class="note">Decisions are shown for the current cycle only; this is an '
                "earlier cycle.</p>")
    if not d.available:
        return f'<p class="note warn">Decisions unavailable: {esc(d.note)}.</p>'
    parts = [f"Decisions from the check API as of {esc(fmt.utc(d.as_of or 0))}."]
    if d.stale:
        parts.append("<strong>The check API's view is stale</strong>: decisions may lag.")
    if d.cycle_start is not None and d.cycle_start != view.cycle_start:
        parts.append(f"The check API is already in the cycle starting "
                     f"{esc(fmt.utc(d.cycle_start))}, for which no usage is recorded yet.")
    return f'<p class="note{" warn" if d.stale else ""}">{" ".join(parts)}</p>'


def quota_caption(bar: QuotaBar, current: bool) -> str:
    """One line under a quota bar: what the decision means, or what is left."""
    if bar.limit is None:
        return "unlimited on this plan"
    decision = bar.decision if current else None
    if decision is not None and decision.decision != "allow":
        until = fmt.moment(decision.resets_at)
        return {
            "queue": f"new runs queue until {until}",
            "throttle": f"slow down until {until} (advisory)",
            "prune": "old transcripts are pruned to free space",
            "reject": ("new machines are rejected" if bar.quota == "machines"
                       else f"rejected until {until}"),
        }.get(decision.decision, decision.reason)
    if bar.used <= bar.limit:
        return f"{fmt.amount(bar.quota, bar.limit - bar.used)} left"
    return f"{fmt.amount(bar.quota, bar.used - bar.limit)} over the limit"


def forecast_note(bar: QuotaBar, view: WorkspaceView) -> tuple[str, float | None]:
    """A counter quota's forecast on the current cycle (streams/core/forecast.py): the
    caption, and where the projected cycle-end usage sits on the bar (0..1, or None)."""
    if not view.is_current or bar.quota not in COUNTER_QUOTAS:
        return "", None
    f = forecast(bar.used, bar.limit, view.cycle_start, view.cycle_ends_at, view.now_ms)
    if f.status == INSUFFICIENT:
        return "forecast after the cycle's first 24 h", None
    if f.projected is None:
        return "", None
    point = min(f.projected / bar.scale, 1.0) if bar.scale else None
    if f.exhausted_at is not None:
        return f"reaches 100 % on {fmt.day(f.exhausted_at)} at this pace", point
    return f"{fmt.short(bar.quota, f.projected)} at cycle end at this pace", point


def quota_card(bar: QuotaBar, decisions: Decisions, current: bool,
               view: WorkspaceView | None = None) -> str:
    if bar.limit is None:
        used = num(fmt.short(bar.quota, bar.used), f"{bar.used:,}")
        limit_html = f'<span class="of">{esc(fmt.unit_word(bar.quota))}</span>'
        percent = ""
    else:
        used_text, limit_text = fmt.pair(bar.quota, bar.used, bar.limit)
        used = num(used_text, f"{bar.used:,}")
        unit = fmt.unit_word(bar.quota)
        limit_html = (f'<span class="of">of</span> '
                      f'{num(f"{limit_text} {unit}".rstrip(), f"{bar.limit:,}")}')
        percent = f'<span class="pct lvl-{bar.level}">{bar.percent} %</span>'
    if not current:
        decision = ""
    elif bar.decision is not None:
        decision = pill(bar.decision.decision, bar.decision.decision, bar.decision.reason)
    else:
        decision = pill("unavailable", "muted", decisions.note)
    marks = ""
    if bar.limit is not None:
        crowded = bar.used > 2 * bar.limit  # 80 and 95 sit too close to label
        for t in (80, 95, 100):
            if crowded and t != 100:
                continue
            left = bar.mark(t) * 100
            # 95 ends at its mark and 100 starts at its mark: labels never overlap.
            align = {80: "c", 95: "r", 100: "l"}[t]
            met = " met" if t in bar.met else ""
            marks += (f'<span class="mark {align}{met}" style="left:{left:.2f}%">{t}</span>')
    tip = bar.decision.reason if current and bar.decision is not None else ""
    caption = quota_caption(bar, current)
    reason = f'<div class="qreason" title="{esc(tip)}">{esc(caption)}</div>'
    note, point = forecast_note(bar, view) if view is not None else ("", None)
    if point is not None:
        marks += (f'<span class="mark forecast" title="{esc(note)}" '
                  f'style="left:{point * 100:.2f}%">&#9670;</span>')
    if note:
        reason += f'<div class="qforecast">{esc(note)}</div>'
    return (
        f'<article class="qcard lvl-{bar.level}" data-quota="{esc(bar.quota)}" '
        f'data-used="{bar.used}" data-limit="{"" if bar.limit is None else bar.limit}">'
        f'<div class="qtop"><h3>{esc(fmt.label(bar.quota))}</h3>{decision}</div>'
        f'<div class="qnums"><span class="used">{used}</span> {limit_html} {percent}</div>'
        f'{svg.quota_bar(bar)}<div class="marks">{marks}</div>{reason}</article>'
    )


def quotas_section(view: WorkspaceView, bars: Sequence[QuotaBar]) -> str:
    cards = "".join(quota_card(b, view.decisions, view.is_current, view) for b in bars)
    totals = view.cycle.get("totals", {})
    tiles = ""
    for name in ("commands", "skill_invocations"):
        value = int(totals.get(name, 0))
        tiles += (f'<div class="tile"><div class="tile-label">{esc(fmt.label(name))}</div>'
                  f'<div class="tile-value">{num(fmt.count(value), f"{value:,}")}</div></div>')
    cost = view.cycle.get("cost") or {}
    micros = int(cost.get("total", 0))
    unpriced = int(cost.get("unpriced_tokens", 0))
    extra = (f'<div class="tile-note">+ {fmt.count(unpriced)} unpriced tokens</div>'
             if unpriced else "")
    tiles += (f'<div class="tile" data-tile="cost"><div class="tile-label">AI cost (USD)</div>'
              f'<div class="tile-value">{num(fmt.usd(micros), dollars(micros))}</div>'
              f"{extra}</div>")
    return section("quotas", "Quotas", decision_note(view)
                   + f'<div class="qgrid">{cards}</div><div class="tiles">{tiles}</div>',
                   aside='<span class="legend-marks">marks at 80, 95 and 100 %</span>')


# ----------------------------------------------------------------------------- hints

def hints_section(items: Sequence[Hint]) -> str:
    cards = []
    for index, hint in enumerate(items, start=1):
        table = ""
        if hint.rows:
            head = "".join(f"<th>{esc(h)}</th>" for h in hint.header)
            body = "".join("<tr>" + "".join(
                (f'<td class="n">{esc(cell)}</td>' if i else f"<td>{esc(cell)}</td>")
                for i, cell in enumerate(r)) + "</tr>" for r in hint.rows)
            table = (f'<table class="mini"><thead><tr>{head}</tr></thead>'
                     f"<tbody>{body}</tbody></table>")
        needs = (f'<p class="needs"><strong>Would need:</strong> {esc(hint.needs)}</p>'
                 if hint.needs else "")
        status = {"act": "worth a look", "ok": "looks fine", "info": "for your information",
                  "none": "no usage"}[hint.status]
        cards.append(
            f'<article class="hint hint-{esc(hint.status)}" data-hint="{esc(hint.key)}">'
            f'<div class="hint-top"><span class="rank">{index}</span><h3>{esc(hint.title)}</h3>'
            f"{pill(status, 'hint-' + hint.status)}</div>"
            f'<p class="headline">{esc(hint.headline)}</p>'
            f'<p class="detail">{esc(hint.detail)}</p>{table}{needs}</article>')
    return section("hints", "Reducing usage", f'<div class="hints">{"".join(cards)}</div>',
                   lead="In order of expected impact, from this cycle's numbers.")


# ----------------------------------------------------------------------------- tables

def _sort_link(view: WorkspaceView, table: Table, key: str, title: str, numeric: bool) -> str:
    active = table.sort_key == key
    # A first click sorts numbers largest first and names A to Z.
    flip = "asc" if table.descending else "desc"
    direction = flip if active else ("desc" if numeric else "asc")
    arrow = ("▼" if table.descending else "▲") if active else ""
    href = workspace_url(view, table.name, **{f"sort_{table.name}": f"{key}.{direction}"})
    aria = (' aria-sort="descending"' if table.descending else ' aria-sort="ascending"'
            ) if active else ""
    cls = "n" if numeric else ""
    text = f'{esc(title)} <span class="arrow">{arrow}</span>'
    return f'<th class="{cls}"{aria}>{link(href, text, "sort")}</th>'


def _cells(table: Table, row: Row) -> str:
    cells = []
    for column in table.columns:
        value = row.values.get(column.key)
        cells.append(f'<td class="n" data-col="{esc(column.key)}" '
                     f'data-value="{"" if value is None else value}">'
                     f"{num(column.show(value), column.exact(value))}</td>")
    return "".join(cells)


def table_html(view: WorkspaceView, table: Table) -> str:
    if not table.rows:
        return f'<p class="empty">No {esc(table.name)} recorded in this cycle.</p>'
    head = _sort_link(view, table, "key", table.key_title, numeric=False) + "".join(
        _sort_link(view, table, c.key, c.title, numeric=True) for c in table.columns)
    body = []
    for row in table.rows:
        badges = "".join(pill(b, b) for b in row.badges)
        body.append(f'<tr data-key="{esc(row.key)}"><th scope="row">{esc(row.key)}{badges}</th>'
                    f"{_cells(table, row)}</tr>")
        for child in row.children:
            badges = "".join(pill(b, b) for b in child.badges)
            body.append(f'<tr class="child" data-key="{esc(row.key)}/{esc(child.key)}">'
                        f'<th scope="row"><span class="indent">{esc(child.key)}</span>{badges}'
                        f"</th>{_cells(table, child)}</tr>")
    foot = ""
    if table.total is not None and len(table.rows) > 1:
        foot = f'<tfoot><tr><th scope="row">Total</th>{_cells(table, table.total)}</tr></tfoot>'
    return (f'<div class="table-wrap"><table class="data" data-table="{esc(table.name)}">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>{foot}</table></div>")


_CHART_OF = {
    "machines": ("ai_tokens", "AI tokens by machine"),
    "members": ("ai_tokens", "AI tokens by member"),
    "skills": ("ai_tokens", "Tokens by skill"),
}


def breakdown_chart(table: Table, cycle: Cycle) -> str:
    if table.name == "providers":
        items = []
        for provider, entry in sorted(cycle.get("providers", {}).items()):
            for model, m in entry.get("models", {}).items():
                items.append((f"{provider}/{model}", [
                    svg.Segment("input", int(m.get("input_tokens", 0))),
                    svg.Segment("output", int(m.get("output_tokens", 0)))]))
        items.sort(key=lambda it: (-sum(s.value for s in it[1]), it[0]))
        if len(items) > 8:
            rest = items[7:]
            items = [*items[:7], (f"{len(rest)} others", [
                svg.Segment("input", sum(s[1][0].value for s in rest)),
                svg.Segment("output", sum(s[1][1].value for s in rest))])]
        if not any(s.value for _, segs in items for s in segs):
            return ""
        return svg.hbar_chart(items, fmt.count, title="Tokens by model",
                              display=lambda name: name.partition("/")[2] or name,
                              legend=(("input", "input"), ("output", "output")))
    column, title = _CHART_OF[table.name]
    ranked = chart_items(table, column)
    if not ranked:
        return ""
    return svg.hbar_chart([(k, [svg.Segment("main", v)]) for k, v in ranked], fmt.count,
                          title=title)


def breakdowns_section(view: WorkspaceView, tables: Sequence[Table]) -> str:
    blocks = []
    for table in tables:
        chart = breakdown_chart(table, view.cycle)
        chart_html = f'<div class="chart-box">{chart}</div>' if chart else ""
        blocks.append(
            f'<div class="card breakdown" id="{esc(table.name)}"><div class="card-head">'
            f'<h3>{esc(table.title)}</h3><span class="hint-text">{esc(table.note)}</span></div>'
            f'<div class="breakdown-body{" no-chart" if not chart else ""}">{chart_html}'
            f"{table_html(view, table)}</div></div>")
    return section("breakdowns", "This cycle's breakdowns", "".join(blocks))


# ----------------------------------------------------------------------------- alerts

_STATUS_TEXT = {"delivered": "delivered", "failed": "failed", "muted": "muted",
                "superseded": "superseded", "sending": "sending", "retrying": "retrying"}


def alerts_section(view: WorkspaceView) -> str:
    alerts: AlertsView = view.alerts
    if not alerts.available:
        return section("alerts", "Alert timeline",
                       f'<p class="note warn">Alerts unavailable: {esc(alerts.note)}.</p>')
    if not alerts.entries:
        return section("alerts", "Alert timeline",
                       '<p class="empty">No threshold crossed in this cycle.</p>')
    items = []
    for e in alerts.entries:
        chips = "".join(
            f'<span class="chip st-{esc(o.status)}" data-channel="{esc(o.channel)}" '
            f'data-status="{esc(o.status)}" '
            f'title="{esc(_chip_title(o.detail, o.target, o.attempts))}">'
            f'<b>{esc(o.channel)}</b> {esc(_STATUS_TEXT.get(o.status, o.status))}</span>'
            for o in e.channels) or '<span class="chip st-none">no delivery recorded</span>'
        arm = f" · re-armed #{e.arm}" if e.arm > 1 else ""
        current, limit = fmt.pair(e.quota, e.current, e.limit)
        limit = f"{limit} {fmt.unit_word(e.quota)}".rstrip()
        if e.kind == "forecast":
            css, mark = "forecast", "forecast"
            reach = ("" if e.forecast_at is None
                     else f" · 100 % at this pace on {fmt.utc(e.forecast_at)}")
            enforcement = esc(reach)
        else:
            css, mark = str(e.threshold), f"{e.threshold} %"
            enforcement = (" " + pill(e.enforcement, e.enforcement, "the decision from here on")
                           if e.threshold == 100 else "")
        items.append(
            f'<li class="tl-item th-{css}" data-alert="{esc(e.alert_id)}">'
            f'<div class="tl-dot"></div><div class="tl-time" title="{esc(fmt.utc(e.crossed_at))}">'
            f"{esc(fmt.utc(e.crossed_at))}</div><div class=\"tl-body\">"
            f'<div class="tl-title"><span class="thr">{esc(mark)}</span> '
            f"{esc(fmt.label(e.quota))}{esc(arm)}{enforcement}</div>"
            f'<div class="tl-sub" title="{e.current:,} of {e.limit:,}">{esc(current)} of '
            f"{esc(limit)}</div>"
            f'<div class="chips">{chips}</div></div></li>')
    counts = status_counts(alerts.entries)
    summary = " · ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return section("alerts", "Alert timeline", f'<ol class="timeline">{"".join(items)}</ol>',
                   aside=f'<span class="muted">{len(alerts.entries)} crossings'
                         f'{" · " + esc(summary) if summary else ""}</span>')


def _chip_title(detail: str, target: str, attempts: int) -> str:
    parts = [p for p in (detail, f"to {target}" if target else "",
                         f"{attempts} attempt{'s' if attempts != 1 else ''}" if attempts else "")
             if p]
    return " · ".join(parts)


# ----------------------------------------------------------------------------- history

def _value_formatter(metric: str) -> Callable[[int], str]:
    if metric == COST:
        return fmt.usd
    return fmt.byte_size if metric == "storage_bytes" else fmt.count


def _history_value(c: Cycle, metric: str) -> int:
    """A cycle's total of ``metric``; cost from its ``cost`` object (micro-dollars)."""
    if metric == COST:
        return int((c.get("cost") or {}).get("total", 0))
    return int(c.get("totals", {}).get(metric, 0))


def history_section(view: WorkspaceView) -> str:
    metric = view.metric if view.metric in HISTORY_METRICS else "ai_tokens"
    tabs = "".join(
        link(workspace_url(view, "history", metric=None if m == "ai_tokens" else m),
             esc(fmt.label(m)), "tab" + (" active" if m == metric else ""))
        for m in HISTORY_METRICS)
    columns = []
    last = len(view.history) - 1
    for i, c in enumerate(view.history):
        start = parse_time(str(c["cycle_start"]))
        value = _history_value(c, metric)
        limit = c.get("limits", {}).get(metric)
        shown = dollars(value) if metric == COST else f"{value:,}"
        tip = f"{fmt.utc(start)}: {shown}" + (f" of {limit:,}" if limit is not None else "")
        columns.append(svg.ColumnDatum(
            fmt.month_label(start), value, tip, limit,
            workspace_url(view, "history", cycle=None if i == last else str(c["cycle_start"])),
            current=i == last, selected=c["cycle_start"] == view.cycle["cycle_start"]))
    chart = svg.column_chart(columns, _value_formatter(metric),
                             title=f"{fmt.label(metric)} over the last {len(columns)} cycles")
    rows = []
    for i, c in reversed(list(enumerate(view.history))):
        name_of = str(c["cycle_start"])
        totals: Mapping[str, Any] = c.get("totals", {})
        csv_href = url(EXPORT_PATH, {"workspace": view.workspace_id, "cycle": name_of})
        cells = "".join(
            f'<td class="n" data-col="{m}" data-value="{int(totals.get(m, 0))}">'
            f"{num(fmt.short(m, int(totals.get(m, 0))), f'{int(totals.get(m, 0)):,}')}</td>"
            for m in ("ai_tokens", "schedule_runs", "api_requests_per_cycle", "storage_bytes"))
        micros = _history_value(c, COST)
        cells += (f'<td class="n" data-col="cost" data-value="{micros}">'
                  f"{num(fmt.usd(micros), dollars(micros))}</td>")
        name = fmt.month_label(parse_time(name_of)) + (" (current)" if i == last else "")
        selected = ' class="selected"' if c["cycle_start"] == view.cycle["cycle_start"] else ""
        rows.append(
            f'<tr data-cycle="{esc(name_of)}"{selected}><th scope="row">'
            f'{link(workspace_url(view, cycle=None if i == last else name_of), esc(name))}</th>'
            f"<td>{esc(c.get('status', ''))}</td><td>{esc(c.get('plan') or '–')}</td>{cells}"
            f'<td class="n">{link(csv_href, "CSV", "small-button")}</td></tr>')
    table = ('<div class="table-wrap"><table class="data"><thead><tr><th>Cycle</th>'
             "<th>Status</th><th>Plan</th><th class=n>AI tokens</th><th class=n>Schedule runs</th>"
             "<th class=n>API requests</th><th class=n>Storage</th><th class=n>Cost (USD)</th>"
             "<th class=n>Export</th></tr>"
             f"</thead><tbody>{''.join(rows)}</tbody></table></div>")
    legend = ('<span class="legend-limit"><i></i>limit</span>'
              if any(c.limit is not None for c in columns) else "")
    all_csv = link(url(EXPORT_PATH, {"workspace": view.workspace_id, "cycles": 12}),
                   "Download all (CSV)", "button")
    return section("history", f"Last {len(view.history)} cycles",
                   f'<div class="card"><div class="tabs-row"><nav class="tabs">{tabs}</nav>'
                   f"{legend}</div>"
                   f'<div class="chart-box wide">{chart}</div></div>{table}', aside=all_csv)
