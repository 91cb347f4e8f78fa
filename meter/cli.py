"""The ``meter`` console script: one Typer app, each area registering its commands.

Heavy imports (confluent-kafka, RocksDB, chDB) happen inside the commands, so
``meter --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from dashboard import cli as dashboard
from groundwork.errors import UserError
from groundwork.settings import SettingsError
from meter.commands import (
    alerts,
    deadletter,
    demo,
    events,
    infra,
    replay,
    sink,
    streams,
    supervise,
)

app = typer.Typer(
    name="meter",
    help="Usage metering and quotas for the workspace platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for area in (supervise, infra, events, replay, streams, alerts, sink, dashboard, demo,
             deadletter):
    area.register(app)


def main() -> None:
    """Entry point: user errors print one clear line and exit 2, never a traceback."""
    try:
        app()
    except SettingsError as exc:
        for problem in exc.problems:  # one line each
            typer.secho(f"error: {problem}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except UserError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
