"""Where the dashboard reads usage, history and alerts (I/O).

- ``StoreSource``: the store itself (a ClickHouse server by URL, or the embedded chDB
  path) through ``sinks.history`` and ``sinks.timeline``.
- ``SinkSource``: a running sink's HTTP read API (``sinks.http_api``). chDB lets one
  process own a data path, so while ``meter sink`` runs on the embedded store this is
  the only way in. History, cycles and CSV come from it; the workspace list
  (``GET /v1/workspaces``) and alerts (``GET /v1/alerts``) only if the sink serves
  them, else those parts of the page say so (``NotServed``).

``choose_source`` picks one at start-up (see its docstring).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Literal, Protocol, TypeVar

import httpx
from clickhouse_connect.driver.exceptions import ClickHouseError

from groundwork.settings import Settings
from sinks.history import DEFAULT_CYCLES, CycleNotFound, HistoryReader
from sinks.reads import LocalReads, RemoteReads, sink_is_serving, sink_url
from sinks.shape import parse_time
from sinks.store import StoreHandle, StoreUnavailable, describe
from sinks.timeline import Queries

log = logging.getLogger(__name__)
T = TypeVar("T")
SourceMode = Literal["auto", "sink", "store"]

__all__ = ["CycleNotFound", "NotServed", "SinkSource", "SourceUnavailable", "StoreSource",
           "UsageSource", "choose_source"]


class SourceUnavailable(Exception):
    """The store or the sink cannot be reached now; the message says what to do."""


class NotServed(Exception):
    """This source cannot answer this kind of read (the message says why)."""


class UsageSource(Protocol):
    description: str

    def workspaces(self, limit: int, offset: int = 0) -> list[tuple[str, int]]: ...

    def history(self, workspace_id: str, cycles: int = DEFAULT_CYCLES) -> list[dict[str, Any]]:
        ...

    def cycle(self, workspace_id: str, cycle_start: int) -> dict[str, Any]: ...

    def csv(self, workspace_id: str, *, cycles: int = DEFAULT_CYCLES,
            cycle_start: int | None = None) -> str: ...

    def alerts(self, workspace_id: str, cycle_start: int
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]: ...

    def close(self) -> None: ...


class StoreSource:
    """Reads from the store; one client, calls serialized (chDB is one engine)."""

    def __init__(self, settings: Settings) -> None:
        self.handle = StoreHandle(settings)
        self.description = describe(settings)
        self._lock = threading.Lock()

    def _run(self, call: Callable[[Any], T]) -> T:
        with self._lock:
            try:
                client = self.handle.client()
                return call(client)
            except StoreUnavailable as exc:
                self.handle.reset()
                raise SourceUnavailable(
                    f"{exc}. If `meter sink` holds the embedded store, restart the dashboard "
                    "with --source sink") from exc
            except (ClickHouseError, OSError) as exc:
                self.handle.reset()
                raise SourceUnavailable(f"{self.description} failed: {exc}") from exc

    def _reads(self, client: Any) -> LocalReads:
        return LocalReads(HistoryReader(client, self.handle.database))

    def workspaces(self, limit: int, offset: int = 0) -> list[tuple[str, int]]:
        return self._run(lambda c: Queries(c, self.handle.database).workspaces(limit, offset))

    def history(self, workspace_id: str, cycles: int = DEFAULT_CYCLES) -> list[dict[str, Any]]:
        return self._run(lambda c: self._reads(c).history(workspace_id, cycles))

    def cycle(self, workspace_id: str, cycle_start: int) -> dict[str, Any]:
        return self._run(lambda c: self._reads(c).cycle(workspace_id, cycle_start))

    def csv(self, workspace_id: str, *, cycles: int = DEFAULT_CYCLES,
            cycle_start: int | None = None) -> str:
        return self._run(lambda c: self._reads(c).csv(workspace_id, cycles=cycles,
                                                      cycle_start=cycle_start))

    def alerts(self, workspace_id: str, cycle_start: int
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return self._run(lambda c: Queries(c, self.handle.database).alerts(workspace_id,
                                                                            cycle_start))

    def close(self) -> None:
        with self._lock:
            self.handle.close()


class SinkSource:
    """Reads through a running sink's HTTP read API."""

    def __init__(self, base_url: str, timeout_s: float = 30.0) -> None:
        self.base_url = base_url
        self.description = f"the sink's read API at {base_url}"
        self.reads = RemoteReads(base_url, timeout_s)
        self.http = self.reads.http

    def _call(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except httpx.HTTPStatusError as exc:
            raise SourceUnavailable(
                f"the sink at {self.base_url} answered {exc.response.status_code}") from exc
        except httpx.HTTPError as exc:
            raise SourceUnavailable(
                f"the sink's read API at {self.base_url} is not reachable ({type(exc).__name__});"
                " is `meter sink` running?") from exc

    def _optional(self, path: str, params: dict[str, Any], what: str) -> dict[str, Any]:
        def get() -> dict[str, Any]:
            response = self.http.get(path, params=params)
            if response.status_code == 404 and "no such path" in response.text:
                raise NotServed(f"the sink's read API does not serve {what} ({path}); "
                                "see docs/dashboard.md")
            if response.status_code == 404:
                raise CycleNotFound(response.json().get("error", "not found"))
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body
        return self._call(get)

    def workspaces(self, limit: int, offset: int = 0) -> list[tuple[str, int]]:
        body = self._optional("/v1/workspaces", {"limit": limit, "offset": offset},
                              "the workspace list")
        return [(str(w["workspace_id"]), parse_time(str(w["cycle_start"])))
                for w in body["workspaces"]]

    def history(self, workspace_id: str, cycles: int = DEFAULT_CYCLES) -> list[dict[str, Any]]:
        return self._call(lambda: self.reads.history(workspace_id, cycles))

    def cycle(self, workspace_id: str, cycle_start: int) -> dict[str, Any]:
        return self._call(lambda: self.reads.cycle(workspace_id, cycle_start))

    def csv(self, workspace_id: str, *, cycles: int = DEFAULT_CYCLES,
            cycle_start: int | None = None) -> str:
        return self._call(lambda: self.reads.csv(workspace_id, cycles=cycles,
                                                 cycle_start=cycle_start))

    def alerts(self, workspace_id: str, cycle_start: int
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        body = self._optional("/v1/alerts", {"workspace": workspace_id, "cycle": cycle_start},
                              "alerts")
        return list(body["crossings"]), list(body["deliveries"])

    def close(self) -> None:
        self.reads.close()


def choose_source(settings: Settings, mode: SourceMode = "auto") -> UsageSource:
    """The source for this dashboard process, chosen once at start-up.

    ``auto``: a ClickHouse server (``METER_CLICKHOUSE_URL``) is read directly; with the
    embedded store, a running sink's read API if one answers, else the chDB path
    itself (the dashboard then holds it until it stops: start ``meter sink`` first).
    ``sink`` and ``store`` force one.
    """
    if mode == "sink" or (mode == "auto" and not settings.clickhouse_url
                          and sink_is_serving(settings)):
        return SinkSource(sink_url(settings))
    if not settings.clickhouse_url:
        log.warning("no sink answers at %s: the dashboard opens %s itself and holds it while "
                    "it runs", sink_url(settings), describe(settings))
    return StoreSource(settings)
