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
import secrets
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from groundwork.errors import UserError
from groundwork.ports import free_port
from groundwork.processes import alive
from groundwork.settings import Settings, load_settings
from meter import supervisor

console = Console(stderr=True)


def run_demo(base: Settings, *, workspaces: int, events: int, keep_running: bool) -> None:
    from deploy import kafka_local
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
    # The services take the configured ports when free (so a person finds the usual
    # URLs), else any: `meter up`'s supervisor starts them, as background services of
    # this run's data folder (`METER_DATA_DIR=<run> meter status` shows them).
    settings = load_settings(
        data_dir=run_dir, kafka_bootstrap=base.kafka_bootstrap, topic_prefix=f"demo{stamp}.",
        kafka_partitions=base.kafka_partitions, api_token=token,
    )
    smtp_port, hooks_port = free_port(), free_port()
    extra_env: dict[str, str | None] = {
        "METER_SMTP_HOST": "127.0.0.1",
        "METER_SMTP_PORT": str(smtp_port),
        "METER_DELIVERY_ALLOW_HOSTS": "127.0.0.1",
        "METER_CLICKHOUSE_URL": None,  # the demo's own embedded store
    }

    now_ms = int(time.time() * 1000)
    ids = [f"w{i:04d}" for i in range(1, workspaces + 1)]
    driven = ("ai_tokens", "api_requests_per_cycle", "storage_bytes", "schedule_runs")
    drives = tuple(Drive(ws, quota) for ws, quota in zip(ids, driven, strict=False))
    workload = Workload(seed=int(stamp) % 100_000, events=events, workspaces=workspaces,
                        span_days=2.0, now_ms=now_ms - 60_000, drive=drives)
    hook_secrets = {ws: "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
                    for ws in ids}
    smtp = SmtpReceiver(smtp_port)
    hooks = WebhookReceiver(hooks_port, hook_secrets)
    smtp.start()
    hooks.start()
    try:
        with console.status("starting the worker, check API, alerting consumer, sink and "
                            "dashboard") as status:
            result = supervisor.up(settings, 1, say=status.update, extra_env=extra_env)
        ports = {name: record.port for name, record in result.state.services.items()}

        api = f"http://127.0.0.1:{ports['api']}"
        published, rejected, topup, rearm_causes = _publish(settings, workload, hook_secrets,
                                                            hooks, api, token)
        with console.status("waiting for the worker, alerts and sink to catch up") as status:
            # Twice, a few seconds apart: aggregates leave the worker on a 1 s timer and
            # deliveries are recorded after the crossings that caused them.
            for _ in range(2):
                _wait_processed(settings, status.update)
                time.sleep(3.0)
        summary = _summary(settings, published, rejected, smtp, hooks, topup, rearm_causes)
        console.print(summary)
        url = f"http://127.0.0.1:{ports['dashboard']}/"
        # soft_wrap: a URL or a token cut at the terminal's width cannot be copied whole
        console.print(f"\n[bold green]Dashboard:[/] {url}   (workspaces {ids[0]} .. {ids[-1]})",
                      soft_wrap=True)
        console.print(f"Check API: {api}/v1/check", soft_wrap=True)
        console.print(f"Authorization: Bearer {token}", soft_wrap=True)
        console.print(f"Logs: {supervisor.logs_dir(settings)}; ready in "
                      f"{time.monotonic() - started:.0f} s", soft_wrap=True)
        if keep_running:
            console.print("Running until Ctrl-C.")
            records = list(result.state.services.values())
            while all(alive(r.pid) for r in records):
                time.sleep(1)
            dead = [r.name for r in records if not alive(r.pid)]
            raise UserError(f"{', '.join(dead)} stopped; logs in {supervisor.logs_dir(settings)}")
    except KeyboardInterrupt:
        console.print("\nstopping (Ctrl-C)")
    finally:
        with console.status("stopping the services"):
            supervisor.down(settings)
            smtp.stop()
            hooks.stop()
            if started_kafka:
                kafka_local.stop(base)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@dataclass(frozen=True)
class RearmCauses:
    """What may have re-armed a threshold (S10), to group the summary's #2 arms."""

    topup: tuple[str, str]  # (workspace, quota) of the demo's top-up
    plan_changes: frozenset[tuple[str, str]]  # (workspace, quota) whose limit a plan raised

    def cause(self, workspace: str, quota: str) -> str:
        if (workspace, quota) == self.topup:
            return "top-up"
        if (workspace, quota) in self.plan_changes:
            return "plan change"
        if quota in ("storage_bytes", "machines"):
            return "gauge fell back"
        return "other"


def _plan_changes(objects: list[dict[str, Any]]) -> frozenset[tuple[str, str]]:
    """(workspace, quota) pairs whose limit a later plan event raised."""
    from schemas.validation import parse_rfc3339_ms

    def at(obj: dict[str, Any]) -> int:
        value = obj.get("occurred_at") or 0
        return parse_rfc3339_ms(value) if isinstance(value, str) else int(value)

    limits: dict[str, dict[str, Any]] = {}
    raised = set()
    for obj in sorted((o for o in objects if o["type"] == "plan"), key=at):
        before = limits.get(obj["workspace_id"])
        after = obj.get("limits") or {}
        if before is not None:
            for quota, limit in after.items():
                old = before.get(quota)
                if old is not None and (limit is None or limit > old):
                    raised.add((obj["workspace_id"], quota))
        limits[obj["workspace_id"]] = after
    return frozenset(raised)


def _publish(settings: Settings, workload: Any, hook_secrets: dict[str, str], hooks: Any,
             api: str, token: str) -> tuple[int, int, str, RearmCauses]:
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
    causes = RearmCauses((first.workspace, first.quota), _plan_changes(objects))
    return (published + 2 + len(control), rejected,
            f"{first.workspace} {first.quota} +{amount:,}", causes)


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
    from groundwork.kafka import group_lag
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
             topup: str, causes: RearmCauses) -> Table:
    """What happened, from the real topics and the local receivers."""
    from schemas.reading import read_all

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
    by_cause: dict[str, set[str]] = {}
    for c in crossings:
        if c["arm"] > 1:  # "w0001 ai_tokens/80#2", under what re-armed it (S10)
            shown = f"{c['workspace_id']} {c['quota']}/{c['threshold']}#{c['arm']}"
            by_cause.setdefault(causes.cause(c["workspace_id"], c["quota"]), set()).add(shown)
    titles = {"top-up": f"re-armed by the top-up ({topup})",
              "plan change": "re-armed by a plan raising a limit",
              "gauge fell back": "re-armed as a gauge fell back under 75 %",
              "other": "re-armed otherwise"}
    for cause, title in titles.items():
        if cause in by_cause or cause == "top-up":
            table.add_row(title, ", ".join(sorted(by_cause.get(cause, ()))) or "none")
    for (channel, status), n in sorted(deliveries.items()):
        table.add_row(f"deliveries: {channel} {status}", f"{n:,}")
    table.add_row("emails received (local SMTP)", f"{len(smtp.inbox.messages):,}")
    table.add_row("webhooks received, signature verified", f"{sum(hooks.log.verified.values()):,}")
    table.add_row("webhooks with a bad signature", f"{hooks.log.bad_signatures:,}")
    return table
