"""``python -m dashboard [--source ...] [--port N]``: ``meter dashboard`` without the CLI
wiring (same options, same errors)."""

from __future__ import annotations

import sys

import typer

from dashboard.cli import dashboard
from groundwork.errors import UserError
from groundwork.settings import SettingsError


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(dashboard)
    try:
        app()
    except (UserError, SettingsError) as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)


if __name__ == "__main__":
    main()
