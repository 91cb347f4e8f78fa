"""`meter deadletter list|show|replay`: what could not be processed, and bringing it back
once its cause is fixed (``meter/deadletters.py``)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from groundwork.errors import UserError
from groundwork.settings import get_settings

if TYPE_CHECKING:
    from groundwork.settings import Settings
    from meter.deadletters import Letter

console = Console(stderr=True)
out = Console(width=200)
app = typer.Typer(help="Dead letters (usage.deadletter): list, show, replay after a fix.",
                  no_args_is_help=True)

Reason = Annotated[str | None, typer.Option("--reason", help="a dead-letter reason (S12)")]
Workspace = Annotated[str | None, typer.Option("--workspace", help="one workspace")]
Topic = Annotated[str | None, typer.Option("--topic", help="one source topic (usage.tokens)")]
Since = Annotated[str | None, typer.Option(
    "--since", help="dead-lettered at or after T: RFC 3339, epoch ms, or an age (2h, 7d)")]


def _selected_letters(settings: Settings, reason: str | None, workspace: str | None,
                      topic: str | None, since: str | None) -> list[Letter]:
    """The dead letters the filters select; records on the topic that do not decode as
    dead letters are named on stderr (they cannot be filtered, shown or replayed)."""
    from meter.deadletters import Selection, parse_since, read_letters
    from schemas.validation import REASONS

    if reason is not None and reason not in REASONS:
        raise UserError(f"--reason {reason!r} is not a dead-letter reason; expected one of "
                        + ", ".join(REASONS))
    selection = Selection(reason, workspace, topic,
                          parse_since(since) if since is not None else None)
    scan = read_letters(settings)
    if scan.unreadable:
        shown = ", ".join(scan.unreadable[:5]) + (" …" if len(scan.unreadable) > 5 else "")
        console.print(f"{len(scan.unreadable):,} record(s) on "
                      f"{settings.topic('usage.deadletter')} are not dead letters of this "
                      f"schema and are left out (PARTITION:OFFSET {shown}); read them with a "
                      "Kafka console consumer")
    return [letter for letter in scan.letters if selection.matches(letter)]


@app.command("list")
def list_(reason: Reason = None, workspace: Workspace = None, topic: Topic = None,
          since: Since = None) -> None:
    """Dead letters counted by reason, source topic and workspace, and how many of them
    a replay re-published."""
    from meter.deadletters import read_replays, summarize

    settings = get_settings()
    letters = _selected_letters(settings, reason, workspace, topic, since)
    rows = summarize(letters, read_replays(settings))
    table = Table(title=f"dead letters on {settings.topic('usage.deadletter')}")
    for column in ("reason", "source topic", "workspace", "dead letters", "replayed"):
        table.add_column(column, justify="right" if column in ("dead letters", "replayed")
                         else "left")
    for row_reason, row_topic, row_workspace, n, replayed in rows:
        table.add_row(row_reason, row_topic, row_workspace or "(no key)", f"{n:,}",
                      f"{replayed:,}")
    table.add_row("total", "", "", f"{sum(r[3] for r in rows):,}",
                  f"{sum(r[4] for r in rows):,}", style="bold")
    out.print(table)


@app.command("show")
def show(
    ref: Annotated[str | None, typer.Argument(
        help="one dead letter, PARTITION:OFFSET as `list --json` or `show` prints it")] = None,
    reason: Reason = None, workspace: Workspace = None, topic: Topic = None,
    since: Since = None,
    limit: Annotated[int, typer.Option("--max", min=1, help="show at most N")] = 20,
) -> None:
    """Dead letters as JSON lines, the original bytes decoded where possible (the event,
    an Avro record, JSON, text, else base64)."""
    from meter.deadletters import letter_to_json, read_replays

    settings = get_settings()
    letters = [letter for letter in _selected_letters(settings, reason, workspace, topic, since)
               if ref is None or letter.ref == ref]
    if ref is not None and not letters:
        raise UserError(f"no dead letter {ref} (PARTITION:OFFSET on "
                        f"{settings.topic('usage.deadletter')}); `meter deadletter show` "
                        "lists them")
    replays = read_replays(settings)
    for letter in letters[:limit]:
        sys.stdout.write(orjson.dumps(letter_to_json(letter, replays)).decode() + "\n")
    if len(letters) > limit:
        console.print(f"{len(letters) - limit:,} more: raise --max or narrow the filters")


@app.command("replay")
def replay(
    reason: Annotated[str, typer.Option("--reason", help="the reason whose cause was fixed")],
    workspace: Workspace = None, topic: Topic = None, since: Since = None,
    again: Annotated[bool, typer.Option(
        "--again", help="also send dead letters replayed before (S6 drops repeats)")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would be sent")] = False,
) -> None:
    """Re-publish dead letters' original records to their source topics (same key), so
    the worker processes them again once the cause is fixed; what was sent is recorded."""
    from meter.deadletters import read_replays
    from meter.deadletters import replay as replay_letters

    settings = get_settings()
    letters = _selected_letters(settings, reason, workspace, topic, since)
    result = replay_letters(settings, letters, read_replays(settings), again=again,
                            dry_run=dry_run)
    verb = "would re-publish" if dry_run else "re-published"
    by_topic: dict[str, int] = {}
    for letter in result.sent:
        by_topic[letter.source_topic] = by_topic.get(letter.source_topic, 0) + 1
    where = ", ".join(f"{n:,} to {settings.topic(t)}" for t, n in sorted(by_topic.items()))
    console.print(f"{verb} {len(result.sent):,} dead letter(s)" + (f": {where}" if where else ""))
    if result.already_replayed:
        console.print(f"skipped {result.already_replayed:,} replayed before (--again sends "
                      "them too)")
    if result.empty:
        console.print(f"skipped {result.empty:,} with no original bytes (tombstones)")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="deadletter")
