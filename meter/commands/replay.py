"""`meter replay`: the metering core over a JSON lines log, without Kafka.

Writes DIR/usage.json, DIR/thresholds.jsonl (crossings in the order they fired) and
DIR/deadletter.jsonl (line, reason, detail, raw). The same log gives byte-identical
files. The pure logic is ``streams.core.replay``; this is only files and progress.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from groundwork.errors import UserError

PROGRESS_EVERY = 65_536  # lines between progress bar updates (keeps the loop tight)


def parse_now(text: str) -> int:
    """``--now``: RFC 3339 with an offset, or integer epoch milliseconds."""
    from schemas.validation import InvalidEvent, parse_rfc3339_ms

    stripped = text.strip()
    if stripped.lstrip("-").isdigit():
        return int(stripped)
    try:
        return parse_rfc3339_ms(stripped, "--now")
    except InvalidEvent as exc:
        raise UserError(exc.detail) from None


def load_plans(path: Path) -> list[object]:
    """Plan records for ``--plan`` (every line must be a valid plan)."""
    from schemas.events import PlanEvent
    from schemas.jsonl import parse_line
    from schemas.validation import InvalidEvent

    if not path.is_file():
        raise UserError(f"--plan: {path} is not a file; give a JSON lines file of plan records")
    plans: list[object] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                event = parse_line(raw, now_ms=None)
            except InvalidEvent as exc:
                raise UserError(
                    f"--plan {path} line {number}: {exc.reason}: {exc.detail}"
                ) from None
            if not isinstance(event, PlanEvent):
                raise UserError(f"--plan {path} line {number}: only plan records belong here")
            plans.append(event)
    return plans


def _lines_with_progress(handle: IO[bytes], total: int, quiet: bool) -> Iterator[bytes]:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("[bold]replay"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeRemainingColumn(), transient=True, disable=quiet,
    ) as progress:
        task = progress.add_task("replay", total=total)
        done = 0
        count = 0
        for raw in handle:
            yield raw
            done += len(raw)
            count += 1
            if count == PROGRESS_EVERY:
                count = 0
                progress.update(task, completed=done)
        progress.update(task, completed=done)


def run_replay(
    file: Path, out: Path, *, now_ms: int | None, plan_file: Path | None, quiet: bool = True
) -> dict[str, object]:
    """Replay ``file`` into ``out``; the statistics (the CLI prints them)."""
    from schemas.events import PlanEvent
    from streams.core.quotas import ThresholdCrossing
    from streams.core.replay import Replay, dumps_line, dumps_usage

    if not file.is_file():
        raise UserError(f"{file} is not a file; give the JSON lines log to replay")
    plans = load_plans(plan_file) if plan_file is not None else []
    out.mkdir(parents=True, exist_ok=True)
    with (
        file.open("rb") as log,
        (out / "thresholds.jsonl").open("wb") as thresholds,
        (out / "deadletter.jsonl").open("wb") as deadletter,
    ):
        def write_crossing(crossing: ThresholdCrossing) -> None:
            thresholds.write(dumps_line(crossing.to_json()))

        def write_deadletter(record: dict[str, Any]) -> None:
            deadletter.write(dumps_line(record))

        replay = Replay(
            now_ms=now_ms,
            on_crossing=write_crossing,
            on_deadletter=write_deadletter,
            what_if_plans=[p for p in plans if isinstance(p, PlanEvent)],
        )
        replay.feed(_lines_with_progress(log, file.stat().st_size, quiet))
        usage = replay.finish()
    (out / "usage.json").write_bytes(dumps_usage(usage))
    stats = replay.stats
    return {
        "lines": stats.lines, "counted": stats.counted, "duplicates": stats.duplicates,
        "rejected": stats.rejected, "crossings": stats.crossings,
        "workspaces": stats.workspaces, "skipped_plans": stats.skipped_plans,
        "reasons": dict(sorted(stats.reasons.items())),
    }


def register(app: typer.Typer) -> None:
    """Add this area's commands to `app`."""

    @app.command("replay")
    def replay(
        file: Annotated[Path, typer.Argument(help="JSON lines log, in processing order")],
        out: Annotated[Path, typer.Option("--out", help="directory for the three outputs")],
        now: Annotated[str | None, typer.Option(
            "--now", help="'now' for the S5 future test (RFC 3339 or epoch ms); "
            "left out, the test is inert")] = None,
        plan: Annotated[Path | None, typer.Option(
            "--plan", help="plan records replacing the log's plans for their workspaces "
            "(what-if)")] = None,
    ) -> None:
        """Run the metering core over a log: usage.json, thresholds.jsonl, deadletter.jsonl."""
        now_ms = parse_now(now) if now is not None else None
        stats = run_replay(file, out, now_ms=now_ms, plan_file=plan, quiet=False)
        reasons = ", ".join(f"{k} {v}" for k, v in stats["reasons"].items())  # type: ignore[attr-defined]
        typer.echo(
            f"{stats['lines']} lines: {stats['counted']} counted, {stats['duplicates']} "
            f"duplicates, {stats['rejected']} dead-lettered{f' ({reasons})' if reasons else ''}, "
            f"{stats['crossings']} crossings, {stats['workspaces']} workspaces"
        )
        typer.echo(f"wrote {out / 'usage.json'}, {out / 'thresholds.jsonl'}, "
                   f"{out / 'deadletter.jsonl'}")
