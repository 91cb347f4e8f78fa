"""Publishing crossings and control records, running the consumer, reading its records."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from confluent_kafka import Producer

from alerting.config import AlertingConfig
from alerting.service import AlertService
from groundwork.kafka import producer_config
from groundwork.settings import Settings
from schemas.codec import encode_event, encode_record
from schemas.events import UNLIMITED, AlertSettingsEvent, Limits, Mute, PlanEvent
from schemas.reading import read_all
from streams.core.quotas import ThresholdCrossing as Crossing


def publish(settings: Settings, base_topic: str, items: Sequence[tuple[str, bytes | None]]) -> None:
    producer = Producer(producer_config(settings))
    for key, value in items:
        producer.produce(settings.topic(base_topic), key=key.encode(), value=value)
    assert producer.flush(30) == 0


def publish_crossings(settings: Settings, crossings: Sequence[Crossing]) -> None:
    publish(settings, "quota.thresholds",
            [(c.workspace_id, encode_record("quota.thresholds", c._asdict())) for c in crossings])


def settings_item(workspace: str, *, email: bool | None = True, slack: str | None = None,
                  webhook: str | None = None, secret: str | None = None,
                  muted: Sequence[Mute] = (),
                  muted_forecasts: Sequence[str] = ()) -> tuple[str, bytes]:
    """One ``alerting.settings`` record (key, value) for ``publish``."""
    event = AlertSettingsEvent(f"s-{uuid.uuid4().hex[:8]}", workspace, int(time.time() * 1000),
                               email, slack, webhook, secret, tuple(muted),
                               muted_forecasts=tuple(muted_forecasts))
    return workspace, encode_event(event)


def publish_settings(settings: Settings, workspace: str, **fields: Any) -> None:
    publish(settings, "alerting.settings", [settings_item(workspace, **fields)])


def plan_item(workspace: str, owners: Sequence[str],
              limits: Limits = UNLIMITED) -> tuple[str, bytes]:
    """One ``quota.plans`` record (key, value) naming ``owners``."""
    now = int(time.time() * 1000)
    event = PlanEvent(f"p-{uuid.uuid4().hex[:8]}", workspace, now, "team", now, "UTC",
                      limits._replace(ai_tokens=1000), tuple(owners))
    return workspace, encode_event(event)


def publish_plan(settings: Settings, workspace: str, owners: Sequence[str],
                 limits: Limits = UNLIMITED) -> None:
    publish(settings, "quota.plans", [plan_item(workspace, owners, limits)])


def read_deliveries(settings: Settings) -> list[dict[str, Any]]:
    """Every record on alerting.deliveries, in partition order."""
    return [record for _key, record in read_all(settings, "alerting.deliveries")]


def statuses(records: Sequence[dict[str, Any]], alert_id: str, channel: str) -> list[str]:
    return [f"{r['status']}#{r['attempt']}" for r in records
            if r["alert_id"] == alert_id and r["channel"] == channel]


@asynccontextmanager
async def running(config: AlertingConfig) -> AsyncIterator[AlertService]:
    """The service on a real broker (``AlertService.from_config``)."""
    async with serving(AlertService.from_config(config, drain_s=5.0)) as service:
        yield service


@asynccontextmanager
async def serving(service: AlertService) -> AsyncIterator[AlertService]:
    """Run ``service`` until the block ends (then stop it gracefully and wait)."""
    task = asyncio.create_task(service.run())
    ready = asyncio.create_task(service.wait_ready())
    await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    try:
        yield service
    finally:
        service.stop()
        await task


def alert_config(settings: Settings, smtp_port: int, *, timeout_s: float = 1.0,
                 max_attempts: int = 4, **overrides: Any) -> AlertingConfig:
    """Short backoffs and timeouts; 127.0.0.1 allow-listed over http (S13)."""
    values: dict[str, Any] = dict(backoff_base_s=0.05, backoff_max_s=0.2, retry_after_max_s=2.0,
                                  group_id=f"alerts-{uuid.uuid4().hex[:8]}",
                                  collapse_wait_s=5.0, metrics_port=0)
    values.update(overrides)
    shared = settings.model_copy(update={
        "delivery_allow_hosts": ["127.0.0.1"], "smtp_port": smtp_port,
        "delivery_timeout_s": timeout_s, "delivery_max_attempts": max_attempts})
    return AlertingConfig(settings=shared, **values)


def done(service: AlertService, alert_id: str, *channels: str) -> bool:
    """Every one of ``channels`` has an outcome for ``alert_id`` (delivered or given up)."""
    return all(service.ledger.state(alert_id, ch).done for ch in channels)


async def metrics_text(service: AlertService) -> str:
    """The service's ``/metrics`` page."""
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{service.metrics_port}/metrics") as resp:
        return await resp.text()
