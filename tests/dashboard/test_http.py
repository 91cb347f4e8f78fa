"""The dashboard over real HTTP on a real chDB store, with a real check API.

Data go in through the sink's writer (tests.dashboard.data); every number the page
shows is checked against those records, and the JSON API and CSV against the
sink's own reads.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from dashboard.sources import StoreSource
from groundwork.settings import Settings
from schemas.events import QUOTAS
from sinks.csv_export import to_csv
from sinks.history import HistoryReader
from sinks.shape import parse_time
from sinks.store import StoreHandle
from tests.dashboard import data
from tests.dashboard.page import Element, parse


def get(base: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(base + path, params=params, timeout=60)


@pytest.fixture(scope="module")
def acme_page(dashboard_url: str) -> Element:
    response = get(dashboard_url, "/workspace", id="acme")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    return parse(response.text)


def _table(page: Element, name: str) -> dict[str, dict[str, int]]:
    table = page.find_all("table", data_table=name)[0]
    out: dict[str, dict[str, int]] = {}
    for row in table.find_all("tr"):
        if "data-key" not in row.attrs:
            continue
        out[row.attrs["data-key"]] = {
            cell.attrs["data-col"]: int(float(cell.attrs["data-value"]))
            for cell in row.find_all("td") if cell.attrs.get("data-value")
        }
    return out


def test_quota_cards_show_the_stored_usage_limits_and_the_check_apis_decisions(
        acme_page: Element) -> None:
    cards = {c.attrs["data-quota"]: c for c in acme_page.find_all("article")
             if "data-quota" in c.attrs}
    assert list(cards) == list(QUOTAS)
    for quota, card in cards.items():
        limit = data.LIMITS[quota]
        assert int(card.attrs["data-used"]) == data.CURRENT["totals"][quota]
        assert card.attrs["data-limit"] == ("" if limit is None else str(limit))
    pills = {q: [s.attrs["class"] for s in c.find_all("span")
                 if s.attrs.get("class", "").startswith("pill pill-")] for q, c in cards.items()}
    assert pills == {
        "machines": ["pill pill-allow"], "ai_tokens": ["pill pill-allow"],
        "storage_bytes": ["pill pill-prune"], "schedule_runs": ["pill pill-queue"],
        "api_requests_per_minute": ["pill pill-allow"],
        "api_requests_per_cycle": ["pill pill-allow"],
    }
    assert "113 %" in cards["storage_bytes"].all_text
    assert "1.23 M" in cards["ai_tokens"].all_text and "1.25 M" in cards["ai_tokens"].all_text
    text = acme_page.all_text
    assert "Decisions from the check API as of 2026-04-10 11:59 UTC" in text
    assert "ends in 20 d 12 h" in text


def test_breakdown_tables_equal_the_stored_breakdowns(acme_page: Element) -> None:
    cost = data.CURRENT["cost"]
    assert _table(acme_page, "machines") == {
        k: {**v, "cost_micros": cost["machines"].get(k, 0)}
        for k, v in data.CURRENT["machines"].items()}
    assert _table(acme_page, "members") == {
        k: {**v, "cost_micros": cost["members"].get(k, 0)}
        for k, v in data.CURRENT["members"].items()}
    skills = _table(acme_page, "skills")
    assert {k: {m: v[m] for m in ("invocations", "cache_hits", "ai_tokens")}
            for k, v in skills.items()} == data.CURRENT["skills"]
    providers = _table(acme_page, "providers")
    for provider, entry in data.CURRENT["providers"].items():
        assert providers[provider]["input_tokens"] == entry["input_tokens"]
        assert providers[provider]["output_tokens"] == entry["output_tokens"]
        for model, metrics in entry["models"].items():
            row = providers[f"{provider}/{model}"]
            assert (row["input_tokens"], row["output_tokens"]) == (
                metrics["input_tokens"], metrics["output_tokens"])


def test_the_alert_timeline_shows_each_crossing_and_channel_outcome(acme_page: Element) -> None:
    items = [e for e in acme_page.find_all("li") if "data-alert" in e.attrs]
    assert [i.attrs["data-alert"] for i in items] == [c["alert_id"] for c in data.CROSSINGS]
    shown = {i.attrs["data-alert"]: {c.attrs["data-channel"]: c.attrs["data-status"]
                                     for c in i.find_all("span") if "data-channel" in c.attrs}
             for i in items}
    assert shown == data.EXPECTED_CHANNELS


def test_hints_come_from_the_data(acme_page: Element) -> None:
    hints = [e for e in acme_page.find_all("article") if "data-hint" in e.attrs]
    assert [h.attrs["data-hint"] for h in hints] == [
        "skill_cache", "model_choice", "schedule_frequency", "agent_context"]
    assert "save about 120 k tokens" in hints[0].all_text
    assert "55 % of model tokens (680 k) went to large models" in hints[1].all_text


def test_history_lists_every_cycle_with_csv_links(acme_page: Element) -> None:
    rows = [r for r in acme_page.find_all("tr") if "data-cycle" in r.attrs]
    assert [r.attrs["data-cycle"] for r in rows] == [data.APR, data.MAR, data.FEB, data.JAN]
    for row in rows:
        cells = {c.attrs["data-col"]: int(c.attrs["data-value"]) for c in row.find_all("td")
                 if "data-col" in c.attrs}
        cycle = data.ACME[row.attrs["data-cycle"]]
        cost = cycle.get("cost", {}).get("total", 0)  # micro-dollars, exact in data-value
        assert cells == {m: cycle["totals"][m] if m != "cost" else cost for m in cells}
        assert "cost" in cells
    links = [a.attrs["href"] for a in acme_page.find_all("a")]
    assert any(h.startswith("/export.csv?workspace=acme&cycle=2026-01-01") for h in links)


def test_every_linked_resource_of_the_page_loads(dashboard_url: str,
                                                 acme_page: Element) -> None:
    refs = {e.attrs["href"] for e in acme_page.find_all("link")}
    refs |= {a.attrs["href"] for a in acme_page.find_all("a") if a.attrs["href"][0] == "/"}
    assert "/static/dashboard.css" in refs
    for ref in sorted(refs):
        url = urlsplit(ref)
        target = url.path + (f"?{url.query}" if url.query else "")
        assert httpx.get(dashboard_url + target, timeout=60).status_code == 200, ref


def test_the_json_api_returns_the_usage_json_cycle(dashboard_url: str) -> None:
    current = get(dashboard_url, "/api/v1/cycle", workspace="acme").json()
    expected = {**data.CURRENT, "cycle_start": data.APR, "status": "provisional"}
    assert current == json.loads(json.dumps(expected))
    jan = get(dashboard_url, "/api/v1/cycle", workspace="acme", cycle=data.JAN).json()
    assert jan == {**data.ACME[data.JAN], "cycle_start": data.JAN, "status": "final"}
    document = get(dashboard_url, "/api/v1/usage.json", workspace="acme").json()
    assert document == {"workspaces": {"acme": {"cycles": data.ACME}}}
    history = get(dashboard_url, "/api/v1/history", workspace="acme", cycles=2).json()
    assert [c["cycle_start"] for c in history["cycles"]] == [data.MAR, data.APR]
    listed = get(dashboard_url, "/api/v1/workspaces").json()
    assert listed["workspaces"] == [{"workspace_id": "acme", "cycle_start": data.APR},
                                    {"workspace_id": "beta", "cycle_start": data.APR}]


def test_csv_downloads_equal_the_sinks_export(dashboard_url: str,
                                              store_source: StoreSource,
                                              store_settings: Settings) -> None:
    handle = StoreHandle(store_settings)
    try:
        reader = HistoryReader(handle.client(), handle.database)
        expected_all = to_csv(reader.history("acme", 12)).encode()
        expected_feb = to_csv([reader.cycle("acme", parse_time(data.FEB))]).encode()
    finally:
        handle.close()
    response = get(dashboard_url, "/export.csv", workspace="acme", cycles=12)
    assert response.content == expected_all
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="acme-last-12-cycles.csv"' in response.headers["content-disposition"]
    assert get(dashboard_url, "/export.csv", workspace="acme",
               cycle=data.FEB).content == expected_feb


def test_the_index_lists_workspaces(dashboard_url: str) -> None:
    page = parse(get(dashboard_url, "/").text)
    rows = {r.attrs["data-workspace"]: r.all_text for r in page.find_all("tr")
            if "data-workspace" in r.attrs}
    assert list(rows) == ["acme", "beta"]
    assert "113 %" in rows["acme"] and "1.2 M" in rows["acme"]
    assert "no plan" in rows["beta"] and "5.0 k" in rows["beta"]


def test_an_earlier_cycle_and_errors(dashboard_url: str) -> None:
    feb = parse(get(dashboard_url, "/workspace", id="acme", cycle=data.FEB).text)
    assert "Decisions are shown for the current cycle only" in feb.all_text
    assert "No threshold crossed in this cycle." in feb.all_text
    unknown = get(dashboard_url, "/workspace", id="nobody")
    assert unknown.status_code == 404 and "No usage is recorded" in unknown.text
    assert get(dashboard_url, "/workspace", id="acme", cycle="soon").status_code == 400
    assert get(dashboard_url, "/workspace", id="acme",
               cycle="2020-01-01T00:00:00Z").status_code == 404
    bad = get(dashboard_url, "/api/v1/cycle", workspace="acme", cycle="x")
    assert (bad.status_code, bad.json()["error"]) == (400, "bad request")
    assert get(dashboard_url, "/api/v1/cycle", workspace="nobody").status_code == 404
    assert get(dashboard_url, "/export.csv", workspace="acme", cycles=0).status_code == 400


def test_the_page_renders_without_a_check_api(dashboard_without_api: str) -> None:
    response = get(dashboard_without_api, "/workspace", id="acme")
    assert response.status_code == 200
    page = parse(response.text)
    assert "Decisions unavailable: the check API is not reachable" in page.all_text
    assert response.text.count(">unavailable</span>") == len(QUOTAS)
    cards = [c for c in page.find_all("article") if "data-quota" in c.attrs]
    assert [int(c.attrs["data-used"]) for c in cards] == [
        data.CURRENT["totals"][q] for q in QUOTAS]


def test_the_quota_cards_show_the_forecast_and_the_tiles_the_cost(acme_page: Element) -> None:
    """At NOW (9.5 days into April) acme used 1,234,567 of 1,250,000 AI tokens: at 129,954
    a day the last 15,433 last about 2.9 hours, so 100 % comes on 10 April; API requests
    (45,000, unlimited) are projected to 45,000 x 30 / 9.5 = 142,105 at cycle end."""
    cards = {c.attrs["data-quota"]: c for c in acme_page.find_all("article")
             if "data-quota" in c.attrs}
    assert "reaches 100 % on 10 Apr 2026 at this pace" in cards["ai_tokens"].all_text
    assert "at cycle end at this pace" in cards["api_requests_per_cycle"].all_text
    assert "at this pace" not in cards["machines"].all_text  # a gauge: no forecast
    marks = [m for m in cards["ai_tokens"].find_all("span")
             if "forecast" in m.attrs.get("class", "")]
    assert len(marks) == 1
    (tile,) = [t for t in acme_page.find_all("div") if t.attrs.get("data-tile") == "cost"]
    assert "$15.15" in tile.all_text  # 15,154,740 micro-dollars
