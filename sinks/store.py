"""Opening the ClickHouse store: a server by URL, else embedded chDB at the data path.

Both go through clickhouse-connect (``get_client(dsn="chdb:///path")`` for chDB,
supported since clickhouse-connect 1.x; pinned and tested at 1.12), with the same
DDL and SQL. chDB lets one process own a data path: opening a path that another
process holds fails, which ``StoreUnavailable`` reports like an unreachable server.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Final

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError

from groundwork.settings import Settings
from sinks.ddl import migrate

log = logging.getLogger(__name__)

# chDB hosts one engine (one path) per process; clients on that path share it.
_CHDB_LOCK: Final = threading.Lock()


class StoreUnavailable(Exception):
    """The store cannot be reached now (server down, chDB path held by another process)."""


def describe(settings: Settings) -> str:
    """Where the store is, without credentials (for logs and errors)."""
    if settings.clickhouse_url:
        from urllib.parse import urlsplit

        parts = urlsplit(settings.clickhouse_url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        return f"ClickHouse server {parts.scheme}://{host}{port}"
    return f"chDB store {settings.chdb_data_path}"


def connect(settings: Settings) -> Client:
    """A new client on the configured store, database created and migrations applied.

    Raises ``StoreUnavailable`` when the store cannot be reached or is held elsewhere.
    """
    try:
        client = _open(settings)
    except (OperationalError, ClickHouseError, OSError) as exc:
        raise StoreUnavailable(f"{describe(settings)} unavailable: {_short(exc)}") from exc
    try:
        migrate(client, settings.clickhouse_database)
    except (OperationalError, ClickHouseError, OSError) as exc:
        client.close()
        raise StoreUnavailable(f"{describe(settings)} unavailable: {_short(exc)}") from exc
    return client


def _open(settings: Settings) -> Client:
    if settings.clickhouse_url:
        return clickhouse_connect.get_client(
            dsn=settings.clickhouse_url, connect_timeout=5, send_receive_timeout=60
        )
    path = Path(settings.chdb_data_path)
    path.mkdir(parents=True, exist_ok=True)
    with _CHDB_LOCK:
        return clickhouse_connect.get_client(dsn=f"chdb://{path.resolve()}")


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300]


class StoreHandle:
    """One lazily opened client; ``reset`` after a failure so the next call reconnects."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.database = settings.clickhouse_database
        self._client: Client | None = None

    def client(self) -> Client:
        if self._client is None:
            self._client = connect(self.settings)
        return self._client

    def reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                log.debug("closing a failed client raised", exc_info=True)

    close = reset
