"""`meter worker` (aggregation and quota evaluation) and `meter api` (the check API)."""

from __future__ import annotations

import typer

from groundwork.settings import get_settings


def worker(
    loglevel: str = typer.Option("info", help="log level of the worker"),
) -> None:
    """Run a metering worker; several workers with the same METER_WORKER_ID share the load
    (each with its own METER_DATA_DIR, or its own METER_WORKER_INSTANCE)."""
    import logging

    from streams.worker import run_worker

    settings = get_settings()
    logging.basicConfig(level=loglevel.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run_worker(settings)


def api() -> None:
    """Run the check API for gateways (bearer token from METER_API_TOKEN)."""
    from streams.api import serve

    serve(get_settings())


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
    app.command("api")(api)
