"""Whole pages (pure): the index of workspaces, a workspace, and error pages."""

from __future__ import annotations

from dashboard import format as fmt
from dashboard import svg
from dashboard.breakdowns import all_tables
from dashboard.hints import hints
from dashboard.html import esc, link, num, url
from dashboard.layout import page
from dashboard.quotas import quota_bar, quota_bars
from dashboard.sections import (
    WORKSPACE_PATH,
    alerts_section,
    breakdowns_section,
    header,
    hints_section,
    history_section,
    pill,
    quotas_section,
    section,
)
from dashboard.views import IndexView, WorkspaceView
from schemas.events import QUOTAS
from sinks.shape import parse_time


def _footer(source: str, now_ms: int) -> str:
    return (f"<span>Data: {esc(source)}</span><span>Rendered {esc(fmt.utc(now_ms))}</span>"
            '<span><a href="/api/v1/workspaces">JSON API</a></span>')


def workspace_page(view: WorkspaceView) -> str:
    bars = quota_bars(view.cycle, view.decisions if view.is_current else None)
    tables = all_tables(view.cycle, view.sorts)
    nav = ('<nav class="jump">' + "".join(
        f'<a href="#{a}">{t}</a>' for a, t in (
            ("quotas", "Quotas"), ("hints", "Reducing usage"), ("breakdowns", "Breakdowns"),
            ("alerts", "Alerts"), ("history", "History"))) + "</nav>")
    body = (
        header(view) + nav
        + quotas_section(view, bars)
        + hints_section(hints(view.cycle, view.now_ms))
        + breakdowns_section(view, tables)
        + alerts_section(view)
        + history_section(view)
    )
    return page(view.workspace_id, body, crumbs=[("Workspaces", "/"), (view.workspace_id, None)],
                footer=_footer(view.source, view.now_ms))


def index_page(view: IndexView) -> str:
    rows = []
    for row in view.rows:
        href = url(WORKSPACE_PATH, {"id": row.workspace_id})
        name = f'<th scope="row">{link(href, esc(row.workspace_id), "ws-link")}</th>'
        if row.cycle is None:
            reason = esc(row.error or "no usage yet")
            rows.append(f'<tr data-workspace="{esc(row.workspace_id)}">{name}'
                        f'<td colspan="5" class="muted">{reason}</td></tr>')
            continue
        c = row.cycle
        totals, limits = c.get("totals", {}), c.get("limits", {})
        bars = [quota_bar(q, int(totals.get(q, 0)), limits.get(q)) for q in QUOTAS]
        limited = [b for b in bars if b.limit is not None]
        if limited:
            top = max(limited, key=lambda b: (b.used * 10_000 // (b.limit or 1),
                                              -QUOTAS.index(b.quota)))
            worst = (f'<div class="mini-bar">{svg.quota_bar(top)}</div>'
                     f'<span class="pct lvl-{top.level}">{top.percent} %</span> '
                     f'<span class="muted">{esc(fmt.label(top.quota))}</span>')
        else:
            worst = '<span class="muted">no limits</span>'
        ends = parse_time(str(c["cycle_ends_at"]))
        ai = int(totals.get("ai_tokens", 0))
        storage = int(totals.get("storage_bytes", 0))
        plan = c.get("plan")
        rows.append(
            f'<tr data-workspace="{esc(row.workspace_id)}">{name}'
            f"<td>{pill(plan, 'plan') if plan else pill('no plan', 'muted')}</td>"
            f'<td><span title="{esc(fmt.utc(ends))}">{esc(fmt.ends_in(ends, view.now_ms))}</span>'
            f"</td><td class=n>{num(fmt.count(ai), f'{ai:,}')}</td>"
            f"<td class=n>{num(fmt.byte_size(storage), f'{storage:,}')}</td>"
            f'<td class="worst">{worst}</td></tr>')
    if rows:
        table = ('<div class="table-wrap"><table class="data index"><thead><tr>'
                 "<th>Workspace</th><th>Plan</th><th>Current cycle</th><th class=n>AI tokens</th>"
                 "<th class=n>Storage</th><th>Closest to a limit</th></tr></thead>"
                 f"<tbody>{''.join(rows)}</tbody></table></div>")
    else:
        table = '<p class="empty">No workspace has usage recorded yet.</p>'
    pager = ""
    if view.page > 1 or view.more:
        prev = link(url("/", {"page": view.page - 1}), "← previous", "button ghost") \
            if view.page > 1 else ""
        nxt = link(url("/", {"page": view.page + 1}), "next →", "button ghost") \
            if view.more else ""
        pager = f'<div class="pager">{prev}<span>page {view.page}</span>{nxt}</div>'
    note = f'<p class="note warn">{esc(view.note)}</p>' if view.note else ""
    form = ('<form class="goto" method="get" action="/workspace">'
            '<label for="goto-id">Open a workspace</label>'
            '<input id="goto-id" name="id" required placeholder="workspace id">'
            '<button type="submit">Open</button></form>')
    body = ('<div class="page-head"><div><h1>Workspaces</h1>'
            '<div class="meta"><span class="muted">Usage of the current billing cycle</span></div>'
            f"</div>{form}</div>{note}"
            + section("workspaces", "All workspaces", table + pager))
    return page("Workspaces", body, crumbs=[("Workspaces", None)],
                footer=_footer(view.source, view.now_ms))


def message_page(title: str, message: str, *, source: str, now_ms: int,
                 back: tuple[str, str] = ("/", "All workspaces")) -> str:
    body = (f'<div class="message"><h1>{esc(title)}</h1><p>{esc(message)}</p>'
            f"<p>{link(back[0], esc(back[1]), 'button')}</p></div>")
    return page(title, body, crumbs=[("Workspaces", "/")], footer=_footer(source, now_ms))
