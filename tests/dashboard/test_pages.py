"""Pages rendered from view models (no I/O): structure, escaping, links, states."""

from __future__ import annotations

from typing import Any

from dashboard.alerts import timeline
from dashboard.pages import index_page, message_page, workspace_page
from dashboard.quotas import Decisions, QuotaDecision
from dashboard.views import AlertsView, IndexView, WorkspaceRow, WorkspaceView
from tests.dashboard import data
from tests.dashboard.page import parse


def _cycles() -> list[dict[str, Any]]:
    return [{**c, "cycle_start": start, "status": "final" if i < 2 else "provisional"}
            for i, (start, c) in enumerate(data.ACME.items())]


def _view(**changes: Any) -> WorkspaceView:
    history = _cycles()
    fields: dict[str, Any] = {
        "workspace_id": "acme", "cycle": history[-1], "history": history,
        "decisions": Decisions.unavailable("the check API is not reachable"),
        "alerts": AlertsView(True, "", timeline(data.CROSSINGS, data.DELIVERIES)),
        "now_ms": data.NOW, "source": "test"}
    fields.update(changes)
    return WorkspaceView(**fields)


def test_the_workspace_page_is_balanced_html_with_every_section() -> None:
    root = parse(workspace_page(_view()))
    ids = {e.attrs["id"] for e in root.having("id")}
    assert {"quotas", "hints", "breakdowns", "alerts", "history", "machines", "members",
            "skills", "providers"} <= ids
    cards = root.find_all("article", class_="qcard lvl-over")
    assert {c.attrs["data-quota"] for c in cards} == {"storage_bytes", "schedule_runs"}


def test_unavailable_decisions_are_said_and_shown_per_quota() -> None:
    html = workspace_page(_view())
    assert "Decisions unavailable: the check API is not reachable" in html
    assert html.count(">unavailable</span>") == 6


def test_decisions_show_as_pills_with_captions() -> None:
    decisions = Decisions(True, "ok", data.NOW, False, data.NOW - 10, data.NOW + 10, {
        "schedule_runs": QuotaDecision("queue", 2_000, 2_000, 1_777_593_600_000, "full")})
    root = parse(workspace_page(_view(decisions=decisions)))
    card = root.find_all("article", data_quota="schedule_runs")[0]
    assert "queue" in card.all_text
    assert "queue until 1 May 00:00 UTC" in card.all_text


def test_an_earlier_cycle_shows_no_decisions_and_links_back() -> None:
    history = _cycles()
    html = workspace_page(_view(cycle=history[0]))
    assert "Decisions are shown for the current cycle only" in html
    assert "ended 1 Feb 2026" in html
    assert 'href="/workspace?id=acme&amp;cycle=2026-01-01T00%3A00%3A00Z&amp;' in html


def test_sort_links_keep_the_other_tables_sorts() -> None:
    html = workspace_page(_view(sorts={"members": "commands.asc"}))
    assert ("/workspace?id=acme&amp;sort_members=commands.asc&amp;"
            "sort_machines=commands.desc#machines") in html
    root = parse(html)
    members = root.find_all("table", data_table="members")[0]
    assert [r.attrs["data-key"] for r in members.find_all("tr") if "data-key" in r.attrs] == [
        "lee", "kim"]


def test_workspace_ids_and_names_are_escaped() -> None:
    evil = '<script>alert("x")</script>'
    history = [{**c, "machines": {evil: {"commands": 1, "ai_tokens": 1}}} for c in _cycles()]
    html = workspace_page(_view(workspace_id=evil, history=history, cycle=history[-1]))
    assert "<script>" not in html
    parse(html)


def test_alerts_unavailable_and_empty() -> None:
    html = workspace_page(_view(alerts=AlertsView(False, "the sink does not serve alerts")))
    assert "Alerts unavailable: the sink does not serve alerts" in html
    assert "No threshold crossed" in workspace_page(_view(alerts=AlertsView(True, "")))


def test_the_index_lists_workspaces_with_their_closest_quota() -> None:
    rows = [WorkspaceRow("acme", {**data.CURRENT, "cycle_start": data.APR}),
            WorkspaceRow("beta", {**data.BETA_CYCLE, "cycle_start": data.APR}),
            WorkspaceRow("gone", None, "no usage yet")]
    root = parse(index_page(IndexView(rows, data.NOW, "test", page=2, more=True)))
    by_ws = {r.attrs["data-workspace"]: r.all_text for r in root.find_all("tr")
             if "data-workspace" in r.attrs}
    assert "113 %" in by_ws["acme"] and "Storage" in by_ws["acme"]
    assert "no limits" in by_ws["beta"] and "no plan" in by_ws["beta"]
    assert "no usage yet" in by_ws["gone"]
    assert "page 2" in root.all_text


def test_message_pages() -> None:
    root = parse(message_page("Not found", "no <such> cycle", source="s", now_ms=0))
    assert "no <such> cycle" in root.all_text
