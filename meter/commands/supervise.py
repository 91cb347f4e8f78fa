"""`meter up`, `meter status`, `meter down`: the whole stack as background services
(``meter/supervisor.py``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from groundwork.settings import get_settings

console = Console(stderr=True, soft_wrap=True)
out = Console(width=200)


def up(
    workers: Annotated[int, typer.Option("--workers", min=1, max=16,
                                         help="stream workers to run")] = 1,
) -> None:
    """Start the broker (unless METER_KAFKA_BOOTSTRAP answers), the topics, N workers,
    the check API, alerts, the sink and the dashboard in the background; print URLs."""
    from meter import supervisor

    settings = get_settings()
    with console.status("starting the services") as progress:
        result = supervisor.up(settings, workers, say=lambda msg: progress.update(msg))
    if not result.started:
        console.print("everything already runs: " + ", ".join(result.running)
                      + " (`meter status` shows their health)")
    else:
        console.print(f"started {', '.join(result.started)}"
                      + (f"; already running: {', '.join(result.running)}"
                         if result.running else ""))
    if result.restarted:
        console.print("[yellow]started again:[/] " + ", ".join(result.restarted))
    kafka = "started by meter up" if result.state.kafka_started else "already running"
    console.print(f"Kafka: {result.state.bootstrap} ({kafka})")
    for record in result.state.services.values():
        out.print(f"{record.name:<10} {record.url}")
    if result.token_file is not None:
        console.print(f"check API token (Authorization: Bearer ...): {result.token_file}")
    console.print(f"logs: {supervisor.logs_dir(settings)}; `meter down` stops everything")


def status() -> None:
    """Every service's process, health, readiness, consumer lag and URL; exit 1 when one
    is not running."""
    from meter import supervisor

    settings = get_settings()
    state, rows = supervisor.status(settings)
    if state is None:
        console.print(f"nothing started by `meter up` in {settings.data_dir}")
        raise typer.Exit(1)
    table = Table(title=f"meter services (Kafka {state.bootstrap})")
    for column in ("service", "pid", "process", "healthy", "ready", "lag", "url"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.name, str(row.pid or "-"),
                      "running" if row.running else "[red]not running[/]",
                      "yes" if row.healthy else "[red]no[/]",
                      "yes" if row.ready else "[yellow]no[/]",
                      "-" if row.lag is None else f"{row.lag:,}", row.url)
    out.print(table)
    broker = rows[0]
    if not broker.healthy:
        console.print(f"[red]Kafka does not answer at {state.bootstrap}[/]"
                      + ("; `meter up` starts it again" if state.kafka_started else ""))
    dead = [row.name for row in rows[1:] if not row.running]
    if not broker.healthy and not dead:
        raise typer.Exit(1)
    if dead:
        console.print(f"[red]not running:[/] {', '.join(dead)}; `meter up` starts them again "
                      f"(logs in {supervisor.logs_dir(settings)})")
        raise typer.Exit(1)


def down() -> None:
    """Stop every service `meter up` started, in order (the broker last, if up started
    it), by their recorded pids."""
    from meter import supervisor

    settings = get_settings()
    with console.status("stopping the services") as progress:
        stopped = supervisor.down(settings, say=lambda msg: progress.update(msg))
    console.print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("status")(status)
    app.command("down")(down)
