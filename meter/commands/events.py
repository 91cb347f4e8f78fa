"""`meter publish`, `meter tail`, and the operator commands `meter plan|topup|settings`.

Every event goes through ``schemas.validation`` (the one validity function) before it
is sent, and through ``schemas.publisher`` (idempotent, acks=all, murmur2_random).
"""

from __future__ import annotations

import base64
import os
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import orjson
import typer
from rich.console import Console

from groundwork.errors import UserError
from groundwork.settings import Settings, get_settings

if TYPE_CHECKING:
    from schemas.events import Event
    from schemas.publisher import Publisher

console = Console(stderr=True)


# --- shared helpers ---------------------------------------------------------------------------


def require_topics(settings: Settings, bases: list[str], timeout_s: float = 10.0) -> None:
    """Fail with what to do when the broker does not answer or a topic is missing."""
    from groundwork.kafka import existing_topics

    existing = existing_topics(settings, timeout_s)
    missing = [settings.topic(b) for b in bases if settings.topic(b) not in existing]
    if missing:
        raise UserError(f"topics missing: {', '.join(missing)}: run `meter topics create`")


def _open_publisher(settings: Settings, bases: list[str]) -> Publisher:
    from schemas.publisher import Publisher

    require_topics(settings, bases)
    return Publisher(settings, client_id="meter-cli")


def _close(publisher: Publisher) -> None:
    from schemas.publisher import PublishError

    try:
        publisher.close()
    except PublishError as exc:
        raise UserError(f"{exc}; check the broker with `meter kafka status`") from None


def _publish_one(fields: dict[str, Any]) -> Event:
    """Validate and publish one control event; print it (secrets redacted)."""
    from schemas.display import redact_secrets
    from schemas.events import TOPIC_OF_TYPE
    from schemas.jsonl import event_to_json
    from schemas.validation import InvalidEvent

    settings = get_settings()
    publisher = _open_publisher(settings, [TOPIC_OF_TYPE[fields["type"]]])
    try:
        event = publisher.publish(fields)
    except InvalidEvent as exc:
        publisher.close()
        raise UserError(f"invalid {fields['type']}: {exc.detail} ({exc.reason})") from None
    _close(publisher)
    sys.stdout.write(orjson.dumps(redact_secrets(event_to_json(event))).decode() + "\n")
    console.print(f"[green]published[/] {fields['type']} {event.event_id} for "
                  f"{event.workspace_id} to {settings.topic(TOPIC_OF_TYPE[fields['type']])}")
    return event


# --- meter publish ----------------------------------------------------------------------------


def publish(
    file: Annotated[Path, typer.Argument(help="JSON lines: one type-tagged event per line")],
    rejects: Annotated[Path | None, typer.Option(
        help="where rejected lines go (default: ./FILE.rejects.jsonl)")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="validate only; send nothing")] = False,
) -> None:
    """Validate every line of FILE and publish the valid events to their topics.

    Rejected lines go to the rejects file with their line number, reason and detail;
    the exit code is 1 when any line was rejected.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from schemas.events import RAW_USAGE_TOPICS, TOPIC_OF_TYPE
    from schemas.ids import now_ms
    from schemas.jsonl import parse_line
    from schemas.validation import InvalidEvent

    if not file.is_file():
        raise UserError(f"{file} is not a file: give a JSON lines file of events")
    rejects_path = rejects or Path(file.name + ".rejects.jsonl")
    settings = get_settings()
    publisher = None if dry_run else _open_publisher(
        settings, sorted(set(TOPIC_OF_TYPE.values()) | set(RAW_USAGE_TOPICS)))
    now = now_ms()
    size = file.stat().st_size
    sent = rejected = 0
    started = time.perf_counter()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TextColumn("bytes  {task.fields[rate]}"),
               TimeElapsedColumn())
    bad: BinaryIO | None = None
    with file.open("rb") as lines, \
            Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("dry run" if dry_run else "publishing", total=size,
                                 rate="")
        number = 0
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                event = parse_line(raw, now_ms=now, line=number)
            except InvalidEvent as exc:
                rejected += 1
                if bad is None:
                    bad = rejects_path.open("wb")
                bad.write(orjson.dumps({
                    "line": number, "reason": exc.reason, "field": exc.field,
                    "detail": exc.detail, "raw": raw.rstrip(b"\r\n").decode("utf-8", "replace"),
                }) + b"\n")
                continue
            if publisher is not None:
                publisher.publish_valid(event)
            sent += 1
            if number % 5000 == 0:
                elapsed = time.perf_counter() - started
                progress.update(task, completed=lines.tell(),
                                rate=f"{(sent + rejected) / elapsed:,.0f} lines/s")
        elapsed = max(time.perf_counter() - started, 1e-9)
        progress.update(task, completed=size, rate=f"{(sent + rejected) / elapsed:,.0f} lines/s")
        if bad is not None:
            bad.close()
        if publisher is not None:
            progress.update(task, description="flushing")
            _close(publisher)
    total_s = time.perf_counter() - started
    verb = "valid" if dry_run else "published"
    console.print(f"{sent:,} {verb}, {rejected:,} rejected of {number:,} lines in "
                  f"{total_s:.2f}s ({(sent + rejected) / max(total_s, 1e-9):,.0f} lines/s)")
    if rejected:
        console.print(f"[red]rejected lines[/] (line, reason, detail) are in {rejects_path}; "
                      f"fix those lines of {file} and publish them again")
        raise typer.Exit(1)


# --- meter tail -------------------------------------------------------------------------------


def _show(base: str, raw: bytes | None) -> dict[str, Any]:
    from schemas.codec import decode_event, decode_record
    from schemas.display import invalid_to_json, record_to_json, redact_secrets
    from schemas.events import TYPE_OF_TOPIC
    from schemas.jsonl import event_to_json
    from schemas.validation import InvalidEvent

    if raw is None:
        return {"tombstone": True}
    try:
        if base in TYPE_OF_TOPIC:
            return redact_secrets(event_to_json(decode_event(raw, topic=base)))
        topic, record = decode_record(raw)
    except InvalidEvent as exc:
        shown = invalid_to_json(exc, raw)
        if base == "alerting.settings":  # the bytes may hold a webhook secret
            shown["original"] = "<redacted: alert settings may hold secrets>"
        return shown
    shown = record_to_json(topic, record)
    if topic == "usage.deadletter" and str(record["source_topic"]).endswith("alerting.settings"):
        shown["original"] = "<redacted: alert settings may hold secrets>"
    return shown


def tail(
    topic: Annotated[str, typer.Argument(help="a DESIGN.md topic name, e.g. usage.tokens")],
    from_beginning: Annotated[bool, typer.Option(
        "--from-beginning", help="start at the oldest record instead of new ones")] = False,
    max_records: Annotated[int | None, typer.Option(
        "--max", min=1, help="stop after N records")] = None,
    idle_timeout: Annotated[float | None, typer.Option(
        "--idle-timeout", min=0.1, help="stop after S seconds without a record")] = None,
    meta: Annotated[bool, typer.Option(
        "--meta", help="wrap each record with partition, offset, key and timestamp")] = False,
) -> None:
    """Print TOPIC's records as JSON lines (times RFC 3339, bytes base64, secrets redacted)."""
    from confluent_kafka import Consumer, KafkaError

    from groundwork.kafka import consumer_config
    from schemas.registry import topics

    known = topics()
    if topic not in known:
        raise UserError(f"unknown topic {topic!r}; topics: {', '.join(known)}")
    settings = get_settings()
    require_topics(settings, [topic])
    # read_committed: the worker writes its outputs in transactions
    consumer = Consumer(consumer_config(
        settings, f"meter-tail-{uuid.uuid4().hex[:12]}",
        **{"auto.offset.reset": "earliest" if from_beginning else "latest",
           "session.timeout.ms": 10_000}))
    consumer.subscribe([settings.topic(topic)])
    out = sys.stdout
    count = 0
    last = time.monotonic()
    try:
        while max_records is None or count < max_records:
            msg = consumer.poll(0.5)
            if msg is None:
                if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    break
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise UserError(f"reading {settings.topic(topic)} failed: {error}")
            last = time.monotonic()
            shown = _show(topic, msg.value())
            if meta:
                key = msg.key()
                shown = {"partition": msg.partition(), "offset": msg.offset(),
                         "key": None if key is None else key.decode("utf-8", "replace"),
                         "timestamp": msg.timestamp()[1], "value": shown}
            out.write(orjson.dumps(shown).decode() + "\n")
            out.flush()
            count += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


# --- operator commands --------------------------------------------------------------------------


def _parse_limit(text: str) -> tuple[str, int | None]:
    quota, sep, value = text.partition("=")
    if not sep:
        raise UserError(f"--limit {text!r}: write QUOTA=N or QUOTA=unlimited")
    if value.strip().lower() in {"unlimited", "null", "none"}:
        return quota.strip(), None
    try:
        return quota.strip(), int(value.replace("_", ""))
    except ValueError:
        raise UserError(f"--limit {text!r}: {value!r} is not an integer or 'unlimited'") from None


def plan(
    workspace: Annotated[str, typer.Argument(help="workspace id")],
    plan_name: Annotated[str, typer.Option("--plan", help="plan name, e.g. team")],
    limit: Annotated[list[str] | None, typer.Option(
        help="QUOTA=N or QUOTA=unlimited, repeatable; quotas left out are unlimited")] = None,
    owner: Annotated[list[str] | None, typer.Option(help="owner email, repeatable")] = None,
    anchor: Annotated[str | None, typer.Option(
        help="cycle anchor, RFC 3339 (default: now)")] = None,
    timezone: Annotated[str, typer.Option(help="IANA timezone of the cycles")] = "UTC",
    event_id: Annotated[str | None, typer.Option(help="default: a new UUIDv7")] = None,
    at: Annotated[str | None, typer.Option(help="occurred_at, RFC 3339 (default: now)")] = None,
) -> None:
    """Set a workspace's plan: its limits, cycle anchor, timezone and owners."""
    from schemas.ids import now_ms

    limits: dict[str, int | None] = dict(_parse_limit(item) for item in limit or [])
    _publish_one({"type": "plan", "workspace_id": workspace, "event_id": event_id,
                  "occurred_at": at, "plan": plan_name, "limits": limits,
                  "cycle_anchor": anchor if anchor is not None else now_ms(),
                  "timezone": timezone, "owners": list(owner or [])})


def topup(
    workspace: Annotated[str, typer.Argument(help="workspace id")],
    quota: Annotated[str, typer.Argument(help="the quota, e.g. ai_tokens")],
    amount: Annotated[int, typer.Argument(help="amount added to the cycle's limit")],
    event_id: Annotated[str | None, typer.Option(help="default: a new UUIDv7")] = None,
    at: Annotated[str | None, typer.Option(
        help="occurred_at, RFC 3339 (default: now); the top-up counts in its cycle")] = None,
) -> None:
    """Grant a top-up: AMOUNT more of QUOTA for the cycle containing its time."""
    _publish_one({"type": "topup", "workspace_id": workspace, "event_id": event_id,
                  "occurred_at": at, "quota": quota, "amount": amount})


def _parse_mute(text: str) -> dict[str, Any]:
    quota, sep, threshold = text.partition(":")
    if not sep or threshold.strip().lower() in {"", "all"}:
        return {"quota": quota.strip(), "threshold": None}
    try:
        return {"quota": quota.strip(), "threshold": int(threshold)}
    except ValueError:
        raise UserError(f"--mute {text!r}: write QUOTA or QUOTA:80|95|100") from None


def _parse_forecast(text: str) -> dict[str, Any]:
    quota, sep, days = text.partition(":")
    if not sep or not days.strip():
        return {"quota": quota.strip(), "lead_days": None}
    try:
        return {"quota": quota.strip(), "lead_days": int(days)}
    except ValueError:
        raise UserError(f"--forecast {text!r}: write QUOTA or QUOTA:DAYS") from None


def alert_settings(
    workspace: Annotated[str, typer.Argument(help="workspace id")],
    email: Annotated[bool | None, typer.Option(
        "--email/--no-email", help="alert emails to the plan's owners")] = None,
    slack_webhook_url: Annotated[str | None, typer.Option(
        help="Slack incoming webhook URL")] = None,
    webhook_url: Annotated[str | None, typer.Option(help="webhook receiver URL")] = None,
    webhook_secret: Annotated[str | None, typer.Option(
        envvar="METER_WEBHOOK_SECRET", show_envvar=True,
        help="Standard Webhooks secret (whsec_...); prefer the environment variable")] = None,
    generate_secret: Annotated[bool, typer.Option(
        "--generate-secret", help="make a new whsec_ secret and print it once")] = False,
    mute: Annotated[list[str] | None, typer.Option(
        help="QUOTA (all thresholds) or QUOTA:80|95|100, repeatable")] = None,
    forecast: Annotated[list[str] | None, typer.Option(
        help="forecast alerts for QUOTA (ai_tokens, schedule_runs, api_requests_per_cycle) "
             "when 100 % is projected at least DAYS (default 3) before the cycle ends: "
             "QUOTA or QUOTA:DAYS, repeatable")] = None,
    mute_forecast: Annotated[list[str] | None, typer.Option(
        help="mute QUOTA's forecast alerts (thresholds stay), repeatable")] = None,
    event_id: Annotated[str | None, typer.Option(help="default: a new UUIDv7")] = None,
) -> None:
    """Replace a workspace's alert channels, mutes and forecast alerts (what is not given is
    cleared)."""
    if generate_secret:
        if webhook_secret is not None:
            raise UserError("give either --webhook-secret or --generate-secret, not both")
        webhook_secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    _publish_one({"type": "alert_settings", "workspace_id": workspace, "event_id": event_id,
                  "email": email, "slack_webhook_url": slack_webhook_url,
                  "webhook_url": webhook_url, "webhook_secret": webhook_secret,
                  "muted": [_parse_mute(m) for m in mute or []],
                  "forecasts": [_parse_forecast(f) for f in forecast or []],
                  "muted_forecasts": [q.strip() for q in mute_forecast or []]})
    if generate_secret:
        console.print("webhook secret (shown once; give it to the receiver):")
        sys.stdout.write(f"{webhook_secret}\n")


def register(app: typer.Typer) -> None:
    """Add this area's commands to `app`."""
    app.command("publish")(publish)
    app.command("tail")(tail)
    app.command("plan")(plan)
    app.command("topup")(topup)
    app.command("settings")(alert_settings)
