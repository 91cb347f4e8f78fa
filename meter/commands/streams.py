"""`meter worker` (Faust aggregation and quota evaluation) and `meter api` (the check API)."""

from __future__ import annotations

import typer

from meter.settings import get_settings


def worker(
    loglevel: str = typer.Option("info", help="log level of the worker"),
) -> None:
    """Run a metering worker; several workers with the same METER_WORKER_ID share the load."""
    import faust

    from streams.app import create_app

    settings = get_settings()
    app = create_app(settings)
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()


def api() -> None:
    """Run the check API for gateways (bearer token from METER_API_TOKEN)."""
    from streams.api import serve

    serve(get_settings())


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
    app.command("api")(api)
