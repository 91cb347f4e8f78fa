"""`meter alerts`: the alerting consumer (email, Slack, signed webhooks)."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated

import typer

from groundwork.settings import get_settings

TOPICS = ["quota.thresholds", "alerting.settings", "quota.plans", "alerting.deliveries"]


def alerts(
    group_id: Annotated[str | None, typer.Option(
        help="consumer group (default METER_ALERTS_GROUP_ID or meter-alerts)")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        help="Prometheus port (default METER_ALERTS_METRICS_PORT, 7072)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log every record")] = False,
) -> None:
    """Deliver threshold crossings: email to owners, Slack, signed webhooks (Ctrl-C stops)."""
    from alerting.config import AlertingConfig
    from alerting.service import AlertService
    from meter.commands.events import require_topics

    settings = get_settings()
    require_topics(settings, TOPICS)
    overrides: dict[str, object] = {}
    if group_id:
        overrides["group_id"] = group_id
    if metrics_port is not None:
        overrides["metrics_port"] = metrics_port
    config = AlertingConfig.load(settings, **overrides)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("meter.alerts").setLevel(logging.INFO if verbose else logging.WARNING)

    async def main() -> None:
        service = AlertService.from_config(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, service.stop)
        task = asyncio.create_task(service.run())
        ready = asyncio.create_task(service.wait_ready())
        await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
        if ready.done() and not task.done():
            where = (f"http://{config.metrics_host}:{service.metrics_port}/metrics"
                     if service.metrics_port else "off")
            allow = ", ".join(sorted(config.allow_hosts)) or "none"
            typer.echo(f"meter alerts: consuming {settings.topic('quota.thresholds')} as "
                       f"group {config.group_id}; metrics {where}; allow-listed hosts: {allow}. "
                       "Ctrl-C stops (in-flight deliveries finish first).", err=True)
        else:
            ready.cancel()
        await task

    asyncio.run(main())


def register(app: typer.Typer) -> None:
    """Add this area's commands to `app`."""
    app.command("alerts")(alerts)
