"""A realistic, deterministic workload of usage and control events (benchmarks, tests, demo).

The same ``seed`` and ``Workload`` always give the same events, byte for byte.

    from meter.workload import Workload, Drive, generate, generate_lines, generate_events

    wl = Workload(seed=7, events=100_000, workspaces=40)
    for obj in generate(wl): ...            # type-tagged JSON objects (dicts), in time order
    for line in generate_lines(wl): ...     # the same as JSON lines (bytes, with "\\n")
    for event in generate_events(wl): ...   # only the valid ones, as typed events
    write_jsonl(path, wl)                   # -> number of lines written

What it contains, per workspace (``w0001``, ``w0002``, ...):
- first, control events: a plan (one of several, in one of several timezones, a cycle
  anchor on a random day; ``plans=False`` leaves every workspace without a plan),
  alert settings (email, a webhook with a ``whsec_`` secret, sometimes a mute), and
  machine registrations;
- then, spread over ``span_days`` ending at ``now_ms``: tokens (several providers and
  models, surfaces chat/agent/skill/schedule, some naming a skill or machine),
  commands, API calls (REST and gRPC, bursts), skill invocations (some cache hits),
  schedule runs, storage changes and readings, occasional machine churn and top-ups.
  Workspaces are Zipf-like: a few are busy, most are quiet.
- ``duplicate_rate`` of events are sent again a little later (same id and body);
- ``invalid_rate`` of lines are bad (negative counts, unknown type, missing field,
  naive time; ``generate_lines`` also writes some truncated JSON).

``drive=(Drive("w0003", "ai_tokens"), ...)`` makes chosen workspaces cross 80, 95 and
100 % of chosen quotas: their plan gets a limit sized from the expected background
usage and a cycle that starts just before the workload, and extra events at 30, 60 and
90 % of the stream lift usage to each threshold (``drive_thresholds`` tells which).
Drivable quotas: ai_tokens, schedule_runs, api_requests_per_cycle,
api_requests_per_minute, storage_bytes, machines. Needs ``span_days`` <= 27.

``now_ms`` defaults to a fixed instant (2025-06-01T00:00:00Z) so output does not
depend on the wall clock; pass the real now to time events around it (the demo).
``time_format`` "rfc3339" (default) writes ``2025-05-05T05:05:05.123Z``, "ms" ints.

Run as a script to write a file:  python -m meter.workload OUT.jsonl --events 1000000
"""

from __future__ import annotations

import argparse
import base64
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson

from schemas.events import QUOTAS, Event
from schemas.validation import InvalidEvent, validate

DEFAULT_NOW_MS: Final = 1_748_736_000_000  # 2025-06-01T00:00:00Z
DAY_MS: Final = 86_400_000
TIMEZONES: Final = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo",
                    "Australia/Sydney", "Asia/Kolkata", "America/Los_Angeles")
MODELS: Final = (("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("openai", "o3-mini"),
                 ("anthropic", "claude-3-5-sonnet"), ("anthropic", "claude-3-5-haiku"),
                 ("google", "gemini-2.0-flash"), ("google", "gemini-1.5-pro"),
                 ("mistral", "mistral-large"), ("acme", "in-house-1"))  # the last: unpriced
SKILLS: Final = ("web-search", "code-review", "summarize", "translate", "sql-helper",
                 "deploy", "test-runner", "doc-writer")
COMMANDS: Final = ("ls", "git status", "pytest -q", "make", "npm test", "cargo build",
                   "docker ps", "kubectl get pods", "python manage.py migrate", "du -sh .")
SURFACES: Final = ("chat", "chat", "chat", "agent", "agent", "skill", "schedule")
CATEGORIES: Final = ("transcripts", "transcripts", "audit_log", "file_index")
NAMES: Final = ("alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank", "ivy",
                "jon", "kim", "lee", "mia", "ned", "ola", "pat")
PLANS: Final[dict[str, dict[str, int | None]]] = {
    "free": {"machines": 2, "ai_tokens": 200_000, "storage_bytes": 1 << 30,
             "schedule_runs": 100, "api_requests_per_minute": 60,
             "api_requests_per_cycle": 10_000},
    "team": {"machines": 10, "ai_tokens": 20_000_000, "storage_bytes": 50 << 30,
             "schedule_runs": 5_000, "api_requests_per_minute": 600,
             "api_requests_per_cycle": 1_000_000},
    "business": {"machines": 50, "ai_tokens": 200_000_000, "storage_bytes": 500 << 30,
                 "schedule_runs": 50_000, "api_requests_per_minute": 3_000,
                 "api_requests_per_cycle": None},
    "enterprise": {"machines": None, "ai_tokens": None, "storage_bytes": None,
                   "schedule_runs": None, "api_requests_per_minute": 10_000,
                   "api_requests_per_cycle": None},
}
# the usage mix: (type, weight)
MIX: Final = (("tokens", 45), ("command", 20), ("api", 15), ("skill", 8),
              ("schedule_run", 5), ("storage", 5), ("machine", 1), ("topup", 1))
DRIVE_POINTS: Final = (0.3, 0.6, 0.9)
DRIVABLE: Final = ("ai_tokens", "schedule_runs", "api_requests_per_cycle",
                   "api_requests_per_minute", "storage_bytes", "machines")


@dataclass(frozen=True)
class Drive:
    """Drive ``workspace`` across ``thresholds`` of ``quota`` (see the module doc)."""

    workspace: str
    quota: str
    thresholds: tuple[int, ...] = (80, 95, 100)

    def __post_init__(self) -> None:
        if self.quota not in DRIVABLE:
            raise ValueError(f"cannot drive {self.quota!r}; drivable: {', '.join(DRIVABLE)}")


@dataclass(frozen=True)
class Workload:
    """What to generate; every field has a sensible default."""

    seed: int = 0
    events: int = 10_000  # usage events, before duplicates and bad lines
    workspaces: int = 20
    members: int = 6  # per workspace (busy ones get more)
    machines: int = 4  # per workspace, registered at the start
    span_days: float = 7.0
    now_ms: int = DEFAULT_NOW_MS
    duplicate_rate: float = 0.01
    invalid_rate: float = 0.001
    plans: bool = True
    time_format: str = "rfc3339"
    drive: tuple[Drive, ...] = field(default_factory=tuple)

    @property
    def start_ms(self) -> int:
        return self.now_ms - int(self.span_days * DAY_MS)

    def workspace_ids(self) -> list[str]:
        return [f"w{i:04d}" for i in range(1, self.workspaces + 1)]


# --- fast time formatting ----------------------------------------------------------------------

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_day_names: dict[int, str] = {}


def rfc3339(ms: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` (fast: the date part is cached per day)."""
    day, rest = divmod(ms, DAY_MS)
    prefix = _day_names.get(day)
    if prefix is None:
        prefix = _day_names[day] = (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%dT")
    seconds, millis = divmod(rest, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{prefix}{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


# --- the generator ------------------------------------------------------------------------


class _Workspace:
    __slots__ = (
        "anchor",
        "id",
        "limits",
        "machines",
        "members",
        "next_machine",
        "plan",
        "skills",
        "storage",
        "timezone",
        "weight",
    )

    def __init__(self, wid: str) -> None:
        self.id = wid
        self.members: list[str] = []
        self.machines: list[str] = []
        self.skills: list[str] = []
        self.plan: str | None = None
        self.timezone = "UTC"
        self.anchor = 0
        self.weight = 1.0
        self.limits: dict[str, int | None] = {}
        self.next_machine = 0
        self.storage = 0


class _Generator:
    def __init__(self, wl: Workload) -> None:
        if wl.drive and wl.span_days > 27:
            raise ValueError("drive needs span_days <= 27 (one cycle)")
        self.wl = wl
        self.rng = random.Random(wl.seed)
        self.seq = 0
        self.fmt = rfc3339 if wl.time_format == "rfc3339" else None
        self.spaces = [_Workspace(w) for w in wl.workspace_ids()]
        self.by_id = {ws.id: ws for ws in self.spaces}
        for d in wl.drive:
            if d.workspace not in self.by_id:
                raise ValueError(f"drive names {d.workspace!r}, not one of the workload's")
        self.driven: dict[tuple[str, str], int] = {}  # (workspace, quota) -> usage so far
        rng = self.rng
        for rank, ws in enumerate(self.spaces, start=1):
            ws.weight = 1.0 / rank ** 0.8
            ws.members = rng.sample(NAMES, min(len(NAMES), wl.members + (2 if rank < 4 else 0)))
            ws.machines = [f"{ws.id}-m{j}" for j in range(wl.machines)]
            ws.next_machine = wl.machines
            ws.skills = rng.sample(SKILLS, 4)
        total = sum(ws.weight for ws in self.spaces)
        self.cumulative: list[float] = []
        acc = 0.0
        for ws in self.spaces:
            acc += ws.weight / total
            self.cumulative.append(acc)
        mix_total = sum(w for _, w in MIX)
        self.mix: list[str] = [t for t, w in MIX for _ in range(w * 100 // mix_total)]

    def _id(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}{self.seq:09d}"

    def _time(self, ms: int) -> Any:
        return self.fmt(ms) if self.fmt is not None else ms

    def _pick_workspace(self) -> _Workspace:
        r = self.rng.random()
        lo, hi = 0, len(self.cumulative) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self.cumulative[mid] < r:
                lo = mid + 1
            else:
                hi = mid
        return self.spaces[lo]

    # expected background usage of a quota for one workspace over the whole stream
    def _expected(self, ws: _Workspace, quota: str) -> int:
        total = sum(w.weight for w in self.spaces)
        n = self.wl.events * ws.weight / total
        share = {t: w / 100 for t, w in MIX}
        per_event = {"ai_tokens": share["tokens"] * 1500, "schedule_runs": share["schedule_run"],
                     "api_requests_per_cycle": share["api"] * 6,
                     "api_requests_per_minute": 30.0,
                     "storage_bytes": share["storage"] * 50_000, "machines": 0.0}[quota]
        if quota == "api_requests_per_minute":
            return 30
        if quota == "machines":
            return self.wl.machines
        return max(1, int(n * per_event))

    def control(self) -> Iterator[dict[str, Any]]:
        rng, wl = self.rng, self.wl
        start = wl.start_ms
        drive_quotas: dict[str, list[str]] = {}
        for d in wl.drive:
            drive_quotas.setdefault(d.workspace, []).append(d.quota)
        for ws in self.spaces:
            at = start - DAY_MS + rng.randrange(DAY_MS // 2)
            if wl.plans:
                ws.plan = rng.choice(tuple(PLANS))
                ws.timezone = rng.choice(TIMEZONES)
                ws.limits = dict(PLANS[ws.plan])
                ws.anchor = start - rng.randrange(1, 27) * DAY_MS - rng.randrange(DAY_MS)
                if ws.id in drive_quotas:
                    ws.anchor = start - 3_600_000  # one cycle covers the whole workload
                    for quota in drive_quotas[ws.id]:
                        ws.limits[quota] = max(10, 2 * self._expected(ws, quota))
                        self.driven[(ws.id, quota)] = 0
                yield {"type": "plan", "event_id": self._id("p"), "workspace_id": ws.id,
                       "occurred_at": self._time(at), "plan": ws.plan,
                       "cycle_anchor": self._time(ws.anchor), "timezone": ws.timezone,
                       "limits": ws.limits, "owners": [f"owner@{ws.id}.example"]}
            secret = "whsec_" + base64.b64encode(rng.randbytes(24)).decode()
            muted = ([{"quota": rng.choice(QUOTAS), "threshold": rng.choice((80, 95, None))}]
                     if rng.random() < 0.3 else [])
            yield {"type": "alert_settings", "event_id": self._id("s"), "workspace_id": ws.id,
                   "occurred_at": self._time(at + 1000), "email": True,
                   "slack_webhook_url": None, "webhook_url": f"https://hooks.example/{ws.id}",
                   "webhook_secret": secret, "muted": muted}
            for j, machine in enumerate(ws.machines):
                yield {"type": "machine", "event_id": self._id("r"), "workspace_id": ws.id,
                       "occurred_at": self._time(at + 2000 + j), "machine_id": machine,
                       "action": "registered"}
                if (ws.id, "machines") in self.driven:
                    self.driven[(ws.id, "machines")] += 1

    def usage(self, ws: _Workspace, kind: str, at: int) -> dict[str, Any]:
        rng = self.rng
        base: dict[str, Any] = {"type": kind, "event_id": self._id("e"), "workspace_id": ws.id,
                                "occurred_at": self._time(at)}
        member = ws.members[int(rng.random() * len(ws.members))]
        machine = ws.machines[int(rng.random() * len(ws.machines))] if ws.machines else None
        if kind == "tokens":
            provider, model = MODELS[int(rng.random() * len(MODELS))]
            surface = SURFACES[int(rng.random() * len(SURFACES))]
            skill = ws.skills[int(rng.random() * 4)] if surface == "skill" else None
            inp = int(rng.expovariate(1 / 1200))
            out = int(rng.expovariate(1 / 300))
            base.update(member_id=member, machine_id=machine if surface != "chat" else None,
                        skill=skill, provider=provider, model=model, input_tokens=inp,
                        output_tokens=out, surface=surface)
            if out % 4 == 0:  # prompt caching on some calls (no extra draw: same sequence)
                base.update(cache_read_tokens=inp // 2, cache_write_tokens=inp // 8)
            self._count(ws, "ai_tokens", inp + out)
        elif kind == "command":
            if machine is None:
                return self.usage(ws, "api", at)
            base.update(member_id=member, machine_id=machine,
                        command=COMMANDS[int(rng.random() * len(COMMANDS))])
        elif kind == "api":
            requests = 1 if rng.random() < 0.7 else rng.randrange(2, 20)
            base.update(member_id=member if rng.random() < 0.6 else None,
                        protocol="rest" if rng.random() < 0.75 else "grpc", requests=requests)
            self._count(ws, "api_requests_per_cycle", requests)
        elif kind == "skill":
            base.update(member_id=member, skill=ws.skills[int(rng.random() * 4)],
                        machine_id=machine if rng.random() < 0.4 else None,
                        cache_hit=rng.random() < 0.35)
        elif kind == "schedule_run":
            base.update(member_id=member, schedule_id=f"sched-{int(rng.random() * 5)}",
                        machine_id=machine if rng.random() < 0.5 else None)
            self._count(ws, "schedule_runs", 1)
        elif kind == "storage":
            category = CATEGORIES[int(rng.random() * len(CATEGORIES))]
            if rng.random() < 0.1:
                base.update(category=category, total_bytes=rng.randrange(0, 5_000_000))
            else:
                delta = int(rng.expovariate(1 / 50_000)) * (1 if rng.random() < 0.85 else -1)
                base.update(category=category, delta_bytes=delta)
                self._count(ws, "storage_bytes", max(0, delta))
        elif kind == "machine":
            if ws.machines and rng.random() < 0.4:
                gone = ws.machines.pop(int(rng.random() * len(ws.machines)))
                base.update(machine_id=gone, action="removed")
            else:
                new = f"{ws.id}-m{ws.next_machine}"
                ws.next_machine += 1
                ws.machines.append(new)
                base.update(machine_id=new, action="registered")
        else:  # topup
            if not ws.plan:
                return self.usage(ws, "tokens", at)
            quota = ("ai_tokens", "schedule_runs", "api_requests_per_cycle")[
                int(rng.random() * 3)]
            if (ws.id, quota) in self.driven:  # a top-up would undo the drive's limit
                return self.usage(ws, "tokens", at)
            base.update(quota=quota, amount=rng.choice((1000, 10_000, 100_000)))
        return base

    def _count(self, ws: _Workspace, quota: str, amount: int) -> None:
        key = (ws.id, quota)
        if key in self.driven:
            self.driven[key] += amount

    def drive_events(self, d: Drive, point: int, at: int) -> Iterator[dict[str, Any]]:
        """Events lifting (workspace, quota) to threshold ``d.thresholds[point]``."""
        if point >= len(d.thresholds):
            return
        ws = self.by_id[d.workspace]
        limit = ws.limits.get(d.quota)
        if limit is None:
            return
        target = math.ceil(d.thresholds[point] * limit / 100)
        used = self.driven[(ws.id, d.quota)] if d.quota != "api_requests_per_minute" else 0
        need = target - used
        if need <= 0:
            return
        base = {"workspace_id": ws.id, "occurred_at": self._time(at)}
        if d.quota == "ai_tokens":
            yield {"type": "tokens", "event_id": self._id("d"), **base, "member_id": ws.members[0],
                   "machine_id": None, "skill": None, "provider": "openai", "model": "gpt-4o",
                   "input_tokens": need, "output_tokens": 0, "surface": "agent"}
        elif d.quota in ("api_requests_per_cycle", "api_requests_per_minute"):
            yield {"type": "api", "event_id": self._id("d"), **base, "member_id": None,
                   "protocol": "rest", "requests": need}
        elif d.quota == "storage_bytes":
            yield {"type": "storage", "event_id": self._id("d"), **base,
                   "category": "transcripts", "delta_bytes": need}
        elif d.quota == "schedule_runs":
            for _ in range(need):
                yield {"type": "schedule_run", "event_id": self._id("d"), **base,
                       "member_id": ws.members[0], "schedule_id": "driver", "machine_id": None}
        else:  # machines
            for _ in range(need):
                new = f"{ws.id}-m{ws.next_machine}"
                ws.next_machine += 1
                ws.machines.append(new)
                yield {"type": "machine", "event_id": self._id("d"), **base, "machine_id": new,
                       "action": "registered"}
        if d.quota != "api_requests_per_minute":
            self.driven[(ws.id, d.quota)] += need

    def corrupt(self, obj: dict[str, Any]) -> dict[str, Any]:
        bad = dict(obj)
        how = self.rng.randrange(4)
        if how == 0 and "input_tokens" in bad:
            bad["input_tokens"] = -bad["input_tokens"] - 1
        elif how == 1:
            bad["type"] = "gpu_minutes"
        elif how == 2:
            bad.pop("workspace_id")
        else:
            bad["occurred_at"] = "2025-05-05T05:05:05"
        bad["event_id"] = "bad-" + bad["event_id"]
        return bad

    def stream(self) -> Iterator[dict[str, Any]]:
        wl, rng = self.wl, self.rng
        yield from self.control()
        n = wl.events
        start, span = wl.start_ms, wl.now_ms - wl.start_ms
        drive_at = [int(p * n) for p in DRIVE_POINTS]
        pending: list[tuple[int, dict[str, Any]]] = []  # duplicates to resend at index
        mix = self.mix
        for i in range(n):
            at = start + span * i // n + int(rng.random() * 1000)
            for point, index in enumerate(drive_at):
                if i == index:
                    for d in wl.drive:
                        yield from self.drive_events(d, point, at)
            ws = self._pick_workspace()
            obj = self.usage(ws, mix[int(rng.random() * len(mix))], at)
            if wl.invalid_rate and rng.random() < wl.invalid_rate:
                yield self.corrupt(obj)
                continue
            yield obj
            if wl.duplicate_rate and rng.random() < wl.duplicate_rate:
                pending.append((i + rng.randrange(1, 200), obj))
            while pending and pending[0][0] <= i:
                yield pending.pop(0)[1]
        for _, obj in pending:
            yield obj


def generate(wl: Workload) -> Iterator[dict[str, Any]]:
    """The workload's type-tagged JSON objects, in time order (a few invalid on purpose)."""
    return _Generator(wl).stream()


def generate_lines(wl: Workload) -> Iterator[bytes]:
    """The workload as JSON lines; bad lines include some truncated JSON."""
    truncate = random.Random(wl.seed + 1)
    dumps = orjson.dumps
    for obj in generate(wl):
        line = dumps(obj)
        if str(obj["event_id"]).startswith("bad-") and truncate.random() < 0.25:
            line = line[: len(line) // 2]
        yield line + b"\n"


def generate_events(wl: Workload) -> Iterator[Event]:
    """Only the valid events, validated into typed events (``now_ms`` inert)."""
    for obj in generate(wl):
        try:
            yield validate(obj["type"], obj)
        except InvalidEvent:
            continue


def drive_thresholds(wl: Workload) -> dict[tuple[str, str], tuple[int, ...]]:
    """(workspace, quota) -> thresholds the workload drives it across."""
    return {(d.workspace, d.quota): d.thresholds for d in wl.drive}


def write_jsonl(path: Path, wl: Workload) -> int:
    """Write the workload's JSON lines to ``path``; returns the number of lines."""
    count = 0
    with path.open("wb") as out:
        batch: list[bytes] = []
        for line in generate_lines(wl):
            batch.append(line)
            if len(batch) >= 10_000:
                out.write(b"".join(batch))
                count += len(batch)
                batch.clear()
        out.write(b"".join(batch))
        count += len(batch)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description="write a workload as JSON lines")
    parser.add_argument("out", type=Path)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--workspaces", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--now-ms", type=int, default=DEFAULT_NOW_MS)
    parser.add_argument("--span-days", type=float, default=7.0)
    parser.add_argument("--invalid-rate", type=float, default=0.001)
    parser.add_argument("--duplicate-rate", type=float, default=0.01)
    parser.add_argument("--drive", action="append", default=[],
                        help="WORKSPACE:QUOTA, e.g. w0003:ai_tokens (repeatable)")
    args = parser.parse_args()
    drives = tuple(Drive(*item.split(":", 1)) for item in args.drive)
    wl = Workload(seed=args.seed, events=args.events, workspaces=args.workspaces,
                  now_ms=args.now_ms, span_days=args.span_days, invalid_rate=args.invalid_rate,
                  duplicate_rate=args.duplicate_rate, drive=drives)
    print(f"{write_jsonl(args.out, wl)} lines written to {args.out}")


if __name__ == "__main__":
    main()
