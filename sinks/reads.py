"""History reads for the CLI and the dashboard, wherever the store is.

- A running sink serves them over its local HTTP read API (it owns the chDB store:
  chDB allows one process per data path).
- With a ClickHouse server (``METER_CLICKHOUSE_URL``), or an embedded store that no
  sink holds, the reader opens the store itself.

Both return the same JSON: each cycle is the usage.json cycle object plus
``cycle_start`` and ``status`` (provisional | final); CSV as documented in
``sinks.csv_export``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import httpx

from groundwork.settings import Settings
from sinks.csv_export import to_csv
from sinks.history import DEFAULT_CYCLES, CycleNotFound, HistoryReader
from sinks.store import StoreHandle


class Reads(Protocol):
    def history(self, workspace_id: str, cycles: int = DEFAULT_CYCLES) -> list[dict[str, Any]]:
        ...

    def cycle(self, workspace_id: str, cycle_start: int) -> dict[str, Any]: ...

    def csv(self, workspace_id: str, *, cycles: int = DEFAULT_CYCLES,
            cycle_start: int | None = None) -> str: ...


class LocalReads:
    """Reads straight from the store through a ``HistoryReader``."""

    def __init__(self, reader: HistoryReader) -> None:
        self.reader = reader

    def history(self, workspace_id: str, cycles: int = DEFAULT_CYCLES) -> list[dict[str, Any]]:
        return [c.to_json() for c in self.reader.history(workspace_id, cycles)]

    def cycle(self, workspace_id: str, cycle_start: int) -> dict[str, Any]:
        return self.reader.cycle(workspace_id, cycle_start).to_json()

    def csv(self, workspace_id: str, *, cycles: int = DEFAULT_CYCLES,
            cycle_start: int | None = None) -> str:
        if cycle_start is not None:
            return to_csv([self.reader.cycle(workspace_id, cycle_start)])
        # exports read the detail rows (finance reconciles against them), not the rollup
        return to_csv(self.reader.history_from_detail(workspace_id, cycles))


class RemoteReads:
    """Reads through a running sink's HTTP read API."""

    def __init__(self, base_url: str, timeout_s: float = 30.0) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout_s)

    def _get(self, path: str, params: dict[str, Any]) -> httpx.Response:
        response = self.http.get(path, params=params)
        if response.status_code == 404:
            raise CycleNotFound(response.json().get("error", "not found"))
        response.raise_for_status()
        return response

    def history(self, workspace_id: str, cycles: int = DEFAULT_CYCLES) -> list[dict[str, Any]]:
        body = self._get("/v1/history", {"workspace": workspace_id, "cycles": cycles}).json()
        result: list[dict[str, Any]] = body["cycles"]
        return result

    def cycle(self, workspace_id: str, cycle_start: int) -> dict[str, Any]:
        body = self._get("/v1/cycle", {"workspace": workspace_id, "cycle": cycle_start}).json()
        result: dict[str, Any] = body["cycle"]
        return result

    def csv(self, workspace_id: str, *, cycles: int = DEFAULT_CYCLES,
            cycle_start: int | None = None) -> str:
        params: dict[str, Any] = {"workspace": workspace_id, "cycles": cycles}
        if cycle_start is not None:
            params["cycle"] = cycle_start
        return self._get("/v1/history.csv", params).content.decode("utf-8")

    def close(self) -> None:
        self.http.close()


def sink_url(settings: Settings) -> str:
    return f"http://{settings.sink_host}:{settings.sink_port}"


def sink_is_serving(settings: Settings, timeout_s: float = 1.0) -> bool:
    try:
        return httpx.get(sink_url(settings) + "/healthz", timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def open_reads(settings: Settings) -> Iterator[Reads]:
    """The running sink's read API if it answers (embedded store), else the store itself.

    Raises ``StoreUnavailable`` when the store cannot be opened (e.g. a chDB path held by
    another process that serves no reads).
    """
    if not settings.clickhouse_url and sink_is_serving(settings):
        remote = RemoteReads(sink_url(settings))
        try:
            yield remote
        finally:
            remote.close()
        return
    store = StoreHandle(settings)
    try:
        yield LocalReads(HistoryReader(store.client(), store.database))
    finally:
        store.close()
