"""`meter demo`: the whole product on the embedded defaults, on this machine.

Starts Kafka (deploy/), the worker, the check API, the alerting consumer with a local
SMTP server and a local webhook receiver, the sink and the dashboard; publishes a
realistic workload timed around now (some workspaces driven across 80, 95 and 100 %
of different quotas, one re-armed by a top-up); waits until everything is processed
and delivered; prints a summary and where the dashboard is.

Every run gets its own topic prefix and data folder (older demo runs' folders are
removed), so a second run starts clean and never sees the first one's events.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from meter.errors import UserError
from meter.ports import free_port, port_or_free
from meter.settings import Settings, load_settings

console = Console(stderr=True)


@dataclass
class Service:
    name: str
    command: list[str]
    health_url: str
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None


@dataclass
class DemoRun:
    settings: Settings
    env: dict[str, str]
    run_dir: Path
    services: list[Service] = field(default_factory=list)

    def start(self, service: Service) -> None:
        service.log = self.run_dir / "logs" / f"{service.name}.log"
        service.log.parent.mkdir(parents=True, exist_ok=True)
        with service.log.open("ab") as out:
            service.proc = subprocess.Popen(
                [sys.executable, "-m", "meter.cli_entry", *service.command], env=self.env,
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        self.services.append(service)

    def wait_healthy(self, service: Service, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert service.proc is not None
            if service.proc.poll() is not None:
                raise UserError(f"{service.name} exited during start-up "
                                f"(exit {service.proc.returncode}); its log:\n"
                                + _tail(service.log))
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(service.health_url, timeout=1).status_code < 500:
                    return
            time.sleep(0.3)
        raise UserError(f"{service.name} did not answer {service.health_url} within "
                        f"{timeout_s:.0f} s; its log:\n" + _tail(service.log))

    def stop_all(self) -> None:
        for service in reversed(self.services):
            if service.proc is not None and service.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(service.proc.pid, signal.SIGTERM)
        for service in reversed(self.services):
            if service.proc is None:
                continue
            try:
                service.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(service.proc.pid, signal.SIGKILL)
                service.proc.wait()


def _tail(log: Path | None, lines: int = 20) -> str:
    if log is None or not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def run_demo(base: Settings, *, workspaces: int, events: int, keep_running: bool) -> None:
    from deploy import kafka_local
    from deploy.topics import create_topics
    from meter.demo_receivers import SmtpReceiver, WebhookReceiver
    from meter.workload import Drive, Workload

    started = time.monotonic()
    # SIGTERM (and SIGINT where a shell made background jobs ignore it) stop the demo
    # the way Ctrl-C does: every service is stopped, none is left behind.
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, _interrupt)
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    demo_root = (base.data_dir / "demo").resolve()
    for old in demo_root.glob("run-*"):  # earlier runs: their topics stay, their files go
        shutil.rmtree(old, ignore_errors=True)
    run_dir = demo_root / f"run-{stamp}"
    run_dir.mkdir(parents=True)

    started_kafka = not kafka_local.metadata_ok(base.kafka_bootstrap)
    if started_kafka:
        with console.status("starting Kafka") as status:
            kafka_local.start(base, progress=lambda msg: status.update(msg))
    else:
        console.print(f"using the Kafka broker that answers at {base.kafka_bootstrap}")
    token = secrets.token_hex(16)
    # The configured ports when free (so a person finds the usual URLs), else any.
    ports = {
        "worker": port_or_free(base.worker_web_port), "api": port_or_free(base.api_port),
        "sink": port_or_free(base.sink_port), "alerts": port_or_free(base.alerts_metrics_port),
        "dashboard": port_or_free(base.dashboard_port), "smtp": free_port(),
        "hooks": free_port(),
    }
    settings = load_settings(
        data_dir=run_dir, kafka_bootstrap=base.kafka_bootstrap, topic_prefix=f"demo{stamp}.",
        kafka_partitions=base.kafka_partitions, api_token=token,
    )
    create_topics(settings)
    env = dict(os.environ)
    env.update({
        "METER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "METER_TOPIC_PREFIX": settings.topic_prefix,
        "METER_KAFKA_PARTITIONS": str(settings.kafka_partitions),
        "METER_DATA_DIR": str(run_dir),
        "METER_API_TOKEN": token,
        "METER_API_PORT": str(ports["api"]),
        "METER_WORKER_WEB_PORT": str(ports["worker"]),
        "METER_SINK_PORT": str(ports["sink"]),
        "METER_ALERTS_METRICS_PORT": str(ports["alerts"]),
        "METER_DASHBOARD_PORT": str(ports["dashboard"]),
        "METER_SMTP_HOST": "127.0.0.1",
        "METER_SMTP_PORT": str(ports["smtp"]),
        "METER_DELIVERY_ALLOW_HOSTS": '["127.0.0.1"]',
    })
    env.pop("METER_CLICKHOUSE_URL", None)
    run = DemoRun(settings, env, run_dir)

    now_ms = int(time.time() * 1000)
    ids = [f"w{i:04d}" for i in range(1, workspaces + 1)]
    driven = ("ai_tokens", "api_requests_per_cycle", "storage_bytes", "schedule_runs")
    drives = tuple(Drive(ws, quota) for ws, quota in zip(ids, driven, strict=False))
    workload = Workload(seed=int(stamp) % 100_000, events=events, workspaces=workspaces,
                        span_days=2.0, now_ms=now_ms - 60_000, drive=drives)
    hook_secrets = {ws: "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
                    for ws in ids}
    smtp = SmtpReceiver(ports["smtp"])
    hooks = WebhookReceiver(ports["hooks"], hook_secrets)
    smtp.start()
    hooks.start()
    try:
        services = [
            Service("worker", ["worker"], f"http://127.0.0.1:{ports['worker']}/healthz"),
            Service("api", ["api"], f"http://127.0.0.1:{ports['api']}/healthz"),
            Service("alerts", ["alerts"], f"http://127.0.0.1:{ports['alerts']}/metrics"),
            Service("sink", ["sink"], f"http://127.0.0.1:{ports['sink']}/healthz"),
        ]
        with console.status("starting the worker, check API, alerting consumer and sink"):
            for service in services:
                run.start(service)
            for service in services:
                run.wait_healthy(service)
        dashboard = Service("dashboard", ["dashboard"], f"http://127.0.0.1:{ports['dashboard']}/")
        run.start(dashboard)
        run.wait_healthy(dashboard)

        api = f"http://127.0.0.1:{ports['api']}"
        published, rejected, topup = _publish(settings, workload, hook_secrets, hooks, api,
                                              token)
        with console.status("waiting for the worker, alerts and sink to catch up") as status:
            # Twice, a few seconds apart: aggregates leave the worker on a 1 s timer and
            # deliveries are recorded after the crossings that caused them.
            for _ in range(2):
                _wait_processed(settings, status.update)
                time.sleep(3.0)
        summary = _summary(settings, published, rejected, smtp, hooks, topup)
        console.print(summary)
        url = f"http://127.0.0.1:{ports['dashboard']}/"
        console.print(f"\n[bold green]Dashboard:[/] {url}   (workspaces {ids[0]} .. {ids[-1]})")
        console.print(f"Check API: http://127.0.0.1:{ports['api']}/v1/check "
                      f"(Authorization: Bearer {token})")
        console.print(f"Logs: {run_dir / 'logs'}; ready in {time.monotonic() - started:.0f} s")
        if keep_running:
            console.print("Running until Ctrl-C.")
            while all(s.proc is not None and s.proc.poll() is None for s in run.services):
                time.sleep(1)
            dead = [s.name for s in run.services
                    if s.proc is not None and s.proc.poll() is not None]
            raise UserError(f"{', '.join(dead)} stopped; logs in {run_dir / 'logs'}")
    except KeyboardInterrupt:
        console.print("\nstopping (Ctrl-C)")
    finally:
        with console.status("stopping the services"):
            run.stop_all()
            smtp.stop()
            hooks.stop()
            if started_kafka:
                kafka_local.stop(base)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _publish(settings: Settings, workload: Any, hook_secrets: dict[str, str], hooks: Any,
             api: str, token: str) -> tuple[int, int, str]:
    """Publish in the order a platform lives it, letting the worker catch up between
    phases (topics are not ordered against each other, S1): plans, alert settings,
    the usage, a top-up that re-arms, and the usage that fires again."""
    from meter.workload import generate
    from schemas.ids import uuid7
    from schemas.publisher import Publisher
    from schemas.validation import InvalidEvent, validate

    objects = list(generate(workload))
    # Every valid event, in the order published: `meter replay` over this file gives the
    # numbers the dashboard must show (the end-to-end test checks exactly that).
    published_log = (settings.data_dir / "published.jsonl").open("wb")

    def log(obj: dict[str, Any]) -> dict[str, Any]:
        obj.setdefault("event_id", uuid7())
        obj.setdefault("occurred_at", int(time.time() * 1000))
        published_log.write(orjson.dumps(obj) + b"\n")
        return obj

    control = [o for o in objects if o["type"] == "plan"]
    usage = [o for o in objects if o["type"] not in ("plan", "alert_settings")]
    published = rejected = 0
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    with Publisher(settings, client_id="meter-demo") as publisher, \
            Progress(*columns, console=console, transient=False) as progress:
        for obj in control:
            publisher.publish_valid(validate(obj["type"], log(obj)))
        publisher.flush()
        _wait_processed(settings, lambda _: None, groups=("worker",))
        for i, (ws, secret) in enumerate(hook_secrets.items()):
            # The second workspace mutes 95 % of its driven quota: its alerts show
            # "muted" and the 80 % one "superseded" or sent, as the rules say.
            muted = [{"quota": workload.drive[1].quota, "threshold": 95}] if i == 1 else []
            publisher.publish(log({"type": "alert_settings", "workspace_id": ws,
                                   "email": True, "webhook_url": hooks.url(ws),
                                   "webhook_secret": secret, "muted": muted}))
        publisher.flush()
        _wait_processed(settings, lambda _: None, groups=("worker",))
        task = progress.add_task("publishing the workload", total=len(usage))
        for obj in usage:
            try:
                publisher.publish_valid(validate(obj["type"], log(obj)))
                published += 1
            except InvalidEvent:
                # Bad lines are part of a realistic workload: send their bytes anyway,
                # so the worker dead-letters them with a reason.
                publisher.produce(_topic_for(obj), str(obj.get("workspace_id", "")).encode(),
                                  _raw_bytes(obj))
                rejected += 1
            progress.advance(task)
        publisher.flush()
        _wait_processed(settings, lambda _: None, groups=("worker",))
        # The first driven workspace gets a top-up that brings it under 75 % of the new
        # limit, so 80/95/100 re-arm (S10); then usage climbs to 85 % of the new limit
        # and 80 % fires again as "#2".
        first = workload.drive[0]
        used, limit = _usage_now(api, token, first.workspace, first.quota)
        amount = max(limit, -(-used * 4 // 3) - limit + 1)
        publisher.publish(log({"type": "topup", "workspace_id": first.workspace,
                               "quota": first.quota, "amount": amount}))
        publisher.flush()
        _wait_processed(settings, lambda _: None, groups=("worker",))
        extra = -(-(limit + amount) * 85 // 100) - used
        publisher.publish(log({"type": "tokens", "workspace_id": first.workspace,
                               "member_id": "ops", "machine_id": None, "skill": None,
                               "provider": "openai", "model": "gpt-4o", "input_tokens": extra,
                               "output_tokens": 0, "surface": "agent"}))
        publisher.flush()
    published_log.close()
    return published + 2 + len(control), rejected, f"{first.workspace} {first.quota} +{amount:,}"


def _usage_now(api: str, token: str, workspace: str, quota: str) -> tuple[int, int]:
    """(used, limit) of a quota from the check API, once the view has it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = httpx.get(f"{api}/v1/workspaces/{workspace}/quotas",
                             headers={"Authorization": f"Bearer {token}"}, timeout=5)
        if response.status_code == 200:
            entry = next(q for q in response.json()["quotas"] if q["quota"] == quota)
            if entry["limit"] is not None and entry["used"] > 0:
                return int(entry["used"]), int(entry["limit"])
        time.sleep(0.5)
    raise UserError(f"the check API did not show {workspace}'s {quota} within 30 s")


def _topic_for(obj: dict[str, Any]) -> str:
    from schemas.events import TOPIC_OF_TYPE

    return TOPIC_OF_TYPE.get(str(obj.get("type")), "usage.tokens")


def _raw_bytes(obj: dict[str, Any]) -> bytes:
    import orjson

    return orjson.dumps(obj)  # not Avro: the worker dead-letters it as undecodable


def _wait_processed(settings: Settings, say: Callable[[str], None],
                    groups: tuple[str, ...] = ("worker", "alerts", "sink"),
                    timeout_s: float = 300.0) -> None:
    """Until the named services committed every offset of their input topics."""
    from meter.topic_reader import group_lag
    from streams.worker import INPUT_TOPICS

    inputs = {
        "worker": (settings.topic_prefix + settings.worker_id, INPUT_TOPICS),
        "alerts": ("meter-alerts", ("quota.thresholds",)),
        "sink": ("meter-sink", ("usage.aggregates", "quota.thresholds", "alerting.deliveries")),
    }
    chosen = dict(inputs[name] for name in groups)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        behind = Counter({group.rsplit(".", 1)[-1]: group_lag(settings, group, topics)
                          for group, topics in chosen.items()})
        if sum(behind.values()) == 0:
            return
        say("waiting: " + ", ".join(f"{g} {n:,} behind" for g, n in behind.items() if n))
        time.sleep(1.0)


def _summary(settings: Settings, published: int, rejected: int, smtp: Any, hooks: Any,
             topup: str) -> Table:
    """What happened, from the real topics and the local receivers."""
    from meter.topic_reader import read_all

    crossings = [r for _, r in read_all(settings, "quota.thresholds")]
    letters = [r for _, r in read_all(settings, "usage.deadletter")]
    deliveries = Counter((r["channel"], r["status"])
                         for _, r in read_all(settings, "alerting.deliveries"))
    table = Table(title="meter demo", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("events published", f"{published:,}")
    table.add_row("bad events sent on purpose", f"{rejected:,}")
    table.add_row("dead letters (with reasons)", f"{len(letters):,}")
    table.add_row("threshold crossings", f"{len({c['alert_id'] for c in crossings}):,}")
    rearmed = sorted({c["alert_id"].split("/", 2)[2] for c in crossings if "#" in c["alert_id"]})
    table.add_row(f"top-up {topup}: re-armed", ", ".join(rearmed) or "none")
    for (channel, status), n in sorted(deliveries.items()):
        table.add_row(f"deliveries: {channel} {status}", f"{n:,}")
    table.add_row("emails received (local SMTP)", f"{len(smtp.inbox.messages):,}")
    table.add_row("webhooks received, signature verified", f"{sum(hooks.log.verified.values()):,}")
    table.add_row("webhooks with a bad signature", f"{hooks.log.bad_signatures:,}")
    return table
