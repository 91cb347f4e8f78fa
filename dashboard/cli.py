"""``meter dashboard``: the usage dashboard. Wire it with ``dashboard.cli.register(app)``."""

from __future__ import annotations

from typing import Annotated, Final, Literal

import typer

from groundwork.errors import UserError
from groundwork.settings import get_settings

_MODES: Final[dict[str, Literal["auto", "sink", "store"]]] = {
    "auto": "auto", "sink": "sink", "store": "store"}


def dashboard(
    source: Annotated[str, typer.Option(
        help="where to read usage: auto (a running sink's read API, else the store), "
             "sink, or store")] = "auto",
    port: Annotated[int | None, typer.Option(
        help="port (default METER_DASHBOARD_PORT, 8080)", min=0, max=65535)] = None,
) -> None:
    """Serve the usage dashboard on METER_DASHBOARD_HOST:METER_DASHBOARD_PORT."""
    from dashboard.server import serve

    mode = _MODES.get(source)
    if mode is None:
        raise UserError(f"--source must be auto, sink or store, not {source!r}")
    settings = get_settings()
    if port is not None:
        settings = settings.model_copy(update={"dashboard_port": port})
    typer.echo(f"dashboard: http://{settings.dashboard_host}:{settings.dashboard_port} "
               "(Ctrl-C stops)", err=True)
    try:
        serve(settings, mode)
    except OSError as exc:
        raise UserError(f"cannot serve on {settings.dashboard_host}:{settings.dashboard_port}: "
                        f"{exc}; set METER_DASHBOARD_PORT or stop the other process") from exc


def register(app: typer.Typer) -> None:
    """Add ``meter dashboard`` to ``app``."""
    app.command("dashboard")(dashboard)
