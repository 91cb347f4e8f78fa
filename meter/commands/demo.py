"""`meter demo`: the whole product on this machine, with a realistic workload."""

from __future__ import annotations

from typing import Annotated

import typer

from groundwork.settings import get_settings


def demo(
    workspaces: Annotated[int, typer.Option(min=4, max=500, help="workspaces to simulate")] = 8,
    events: Annotated[int, typer.Option(min=1000, help="usage events to publish")] = 20_000,
    keep_running: Annotated[bool, typer.Option(
        "--keep-running", help="keep every service (and the dashboard) up until Ctrl-C")] = False,
) -> None:
    """Start Kafka and every service, publish a workload, show alerts and the dashboard."""
    from meter.demo import run_demo

    run_demo(get_settings(), workspaces=workspaces, events=events, keep_running=keep_running)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
