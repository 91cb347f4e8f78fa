"""`meter sink`, `meter usage WORKSPACE`, `meter history WORKSPACE [--cycles N] [--csv FILE]`.

Reads go through a running sink's HTTP read API when it owns the embedded store,
else they open the store directly (see sinks/reads.py).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from groundwork.errors import UserError
from groundwork.settings import get_settings
from sinks.shape import iso, parse_time
from streams.core.forecast import COUNTER_QUOTAS, forecast
from streams.core.pricing import dollars

if TYPE_CHECKING:
    from sinks.reads import Reads

out = Console()
err = Console(stderr=True)

TOTAL_COLUMNS = ("ai_tokens", "schedule_runs", "api_requests_per_cycle",
                 "api_requests_per_minute", "machines", "storage_bytes", "commands",
                 "skill_invocations")


def sink(
    group: Annotated[str, typer.Option(help="Kafka consumer group of the sink")] = "meter-sink",
    batch_rows: Annotated[int, typer.Option(min=1, help="write a batch at this many rows")
                          ] = 20_000,
    batch_seconds: Annotated[float, typer.Option(min=0.01, help="... or when this old")] = 1.0,
) -> None:
    """Run the ClickHouse sink (aggregates, crossings, deliveries, dead letters, plans).

    It also serves history reads and /metrics on METER_SINK_HOST:METER_SINK_PORT.
    """
    from sinks.service import run_sink
    from sinks.store import describe

    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    err.print(f"sink: {describe(settings)}; read API and metrics on "
              f"http://{settings.sink_host}:{settings.sink_port} (Ctrl-C stops)")
    try:
        run_sink(settings, stop=stop, group_id=group, max_rows=batch_rows,
                 max_delay_s=batch_seconds)
    except OSError as exc:
        raise UserError(f"cannot serve on {settings.sink_host}:{settings.sink_port}: {exc}; "
                        "set METER_SINK_PORT or stop the other process") from exc


@contextmanager
def _reads() -> Iterator[Reads]:
    from meter.supervisor import with_running_sink
    from sinks.reads import open_reads
    from sinks.store import StoreUnavailable

    settings = with_running_sink(get_settings())
    try:
        with open_reads(settings) as reads:
            yield reads
    except StoreUnavailable as exc:
        raise UserError(f"{exc}. Another process holds the store: start `meter sink` (it "
                        "serves reads on METER_SINK_PORT) or stop the process that holds it"
                        ) from exc


def _parse_cycle(text: str) -> int:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise UserError(f"--cycle {text!r}: expected YYYY-MM-DDTHH:MM:SSZ or epoch ms") from exc


def usage(workspace: Annotated[str, typer.Argument(help="workspace id")]) -> None:
    """The workspace's current cycle: totals against limits, and every breakdown."""
    with _reads() as reads:
        cycles = reads.history(workspace, 1)
    if not cycles:
        raise UserError(f"no usage recorded for workspace {workspace!r} (is the sink running?)")
    _print_cycle(workspace, cycles[0])


def history(
    workspace: Annotated[str, typer.Argument(help="workspace id")],
    cycles: Annotated[int, typer.Option(min=1, max=120, help="how many cycles")] = 12,
    csv: Annotated[Path | None, typer.Option("--csv", help="also write the CSV here")] = None,
    cycle: Annotated[str | None, typer.Option(
        "--cycle", help="only the cycle starting at START (YYYY-MM-DDTHH:MM:SSZ)")] = None,
) -> None:
    """The last N cycles (table); --csv FILE writes per-cycle breakdowns for finance."""
    from sinks.history import CycleNotFound

    start = _parse_cycle(cycle) if cycle is not None else None
    try:
        with _reads() as reads:
            rows = [reads.cycle(workspace, start)] if start is not None else reads.history(
                workspace, cycles)
            text = reads.csv(workspace, cycles=cycles, cycle_start=start) if csv else None
    except CycleNotFound as exc:
        raise UserError(f"{exc}; `meter history {workspace}` lists its cycles") from exc
    if not rows:
        raise UserError(f"no usage recorded for workspace {workspace!r}")
    if start is not None:
        _print_cycle(workspace, rows[0])
    else:
        _print_history(workspace, rows)
    if csv is not None and text is not None:
        csv.write_bytes(text.encode("utf-8"))
        err.print(f"wrote {text.count(chr(13) + chr(10)) - 1} rows to {csv}")


def _print_history(workspace: str, cycles: list[dict[str, Any]]) -> None:
    table = Table(title=f"{workspace}: last {len(cycles)} cycles")
    for name in ("cycle_start", "status", "plan", *TOTAL_COLUMNS):
        table.add_column(name, justify="left" if name in ("cycle_start", "status", "plan")
                         else "right")
    table.add_column("cost (USD)", justify="right")
    priced_with: dict[str, list[str]] = {}  # the price table recorded for each cycle
    for c in cycles:
        table.add_row(c["cycle_start"], c["status"], c["plan"] or "-",
                      *(f"{c['totals'][name]:,}" for name in TOTAL_COLUMNS),
                      _cost_text(c.get("cost")))
        prices = (c.get("cost") or {}).get("prices")
        if prices:
            priced_with.setdefault(prices, []).append(c["cycle_start"])
    out.print(table)
    for prices, starts in priced_with.items():
        out.print(f"priced with {prices}: {', '.join(starts)}")


def _forecast_text(c: dict[str, Any], quota: str, used: int, limit: int | None,
                   now_ms: int) -> str:
    """A counter quota's forecast (streams/core/forecast.py) while its cycle is open."""
    if quota not in COUNTER_QUOTAS or c["status"] == "final":
        return ""
    end = parse_time(c["cycle_ends_at"])
    if now_ms >= end:
        return ""
    f = forecast(used, limit, parse_time(c["cycle_start"]), end, now_ms)
    if f.status == "insufficient_data":
        return "too early (first 24 h)" if used else "no usage yet"
    if f.status == "reached":
        return "100 % reached"
    text = f"{f.projected:,}"
    if f.exhausted_at is not None:
        text += f", reaches 100 % on {iso(f.exhausted_at)}"
    return text


def _cost_text(cost: dict[str, Any] | None) -> str:
    """A cycle's cost in exact dollars, with its unpriced tokens (never guessed)."""
    if not cost:
        return "-"
    text = dollars(cost["total"])
    if cost["unpriced_tokens"]:
        text += f" + {cost['unpriced_tokens']:,} unpriced tokens"
    return text


def _print_cost(cost: dict[str, Any] | None) -> None:
    """Cost per member, machine, skill and model (micro-dollars shown as exact dollars)."""
    if not cost:
        return
    out.print(f"cost: [bold]{_cost_text(cost)}[/]"
              + (f" (priced with {cost['prices']})" if cost.get("prices") else ""))
    for title in ("members", "machines", "skills"):
        entries: dict[str, int] = cost[title]
        if entries:
            table = Table(title=f"cost by {title[:-1]}")
            table.add_column(title[:-1])
            table.add_column("cost (USD)", justify="right")
            for key, micros in sorted(entries.items(), key=lambda kv: -kv[1]):
                table.add_row(key, dollars(micros))
            out.print(table)
    models: dict[str, dict[str, Any]] = cost["models"]
    if models:
        table = Table(title="cost by model")
        for name in ("model", "cost (USD)", "cache read", "cache write"):
            table.add_column(name, justify="left" if name == "model" else "right")
        for key, m in sorted(models.items()):
            price = dollars(m["cost"]) if m["priced"] else (
                f"unpriced ({m['unpriced_tokens']:,} tokens)")
            table.add_row(key, price, f"{m['cache_read_tokens']:,}",
                          f"{m['cache_write_tokens']:,}")
        out.print(table)


def _print_cycle(workspace: str, c: dict[str, Any]) -> None:
    out.print(f"[bold]{workspace}[/] cycle {c['cycle_start']} .. {c['cycle_ends_at']} "
              f"({c['status']}), plan {c['plan'] or '-'}")
    totals = Table(title="usage")
    for name in ("quota / total", "used", "limit", "percent", "forecast at cycle end"):
        totals.add_column(name, justify="left" if name == "quota / total" else "right")
    now_ms = int(time.time() * 1000)
    for name in TOTAL_COLUMNS:
        limit = c["limits"].get(name)
        used = c["totals"][name]
        limit_text = "-" if name not in c["limits"] else (
            "unlimited" if limit is None else f"{limit:,}")
        percent = f"{used * 100 // limit}%" if limit else ""
        totals.add_row(name, f"{used:,}", limit_text, percent,
                       _forecast_text(c, name, used, limit, now_ms))
    out.print(totals)
    for title, key in (("machines", "machines"), ("members", "members"), ("skills", "skills")):
        entries: dict[str, dict[str, int]] = c[key]
        if entries:
            out.print(_breakdown(title, entries))
    models = {f"{p}/{m}": v for p, e in c["providers"].items() for m, v in e["models"].items()}
    providers = {p: {k: v for k, v in e.items() if k != "models"}
                 for p, e in c["providers"].items()}
    if providers:
        out.print(_breakdown("providers", providers))
    if models:
        out.print(_breakdown("models", models))
    _print_cost(c.get("cost"))


def _breakdown(title: str, entries: dict[str, dict[str, int]]) -> Table:
    metrics = list(next(iter(entries.values())))
    table = Table(title=title)
    table.add_column(title[:-1])
    for metric in metrics:
        table.add_column(metric, justify="right")
    for key, values in sorted(entries.items()):
        table.add_row(key, *(f"{values.get(m, 0):,}" for m in metrics))
    return table


def register(app: typer.Typer) -> None:
    """Add this area's commands to `app`."""
    app.command("sink")(sink)
    app.command("usage")(usage)
    app.command("history")(history)
