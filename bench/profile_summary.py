"""Where the time goes: a summary of a py-spy profile in its raw format.

py-spy's ``--format raw`` writes one line per distinct stack, root first, and its count:
``<module> (meter/cli_entry.py:6);run (streams/worker.py:190);... 42``. This module gives
the share of samples by leaf function (the frame running when sampled; without
``--native``, a call into C code such as librdkafka shows as the Python frame that made
it) and by named areas of the worker, then prints both as tables.

    .venv/bin/python -m bench.profile_summary PROFILE.txt [--top 15]

Areas: a stack that has ``encode_record`` (or another ``encode*`` of schemas/codec.py) on
it is "encode outputs"; otherwise the frame nearest the leaf that belongs to an area
names it (so the processor's call into the core counts as core, the worker's call into
the id store as id store); stacks with no such frame are "other" (the interpreter's
start, threads of the standard library). py-spy leaves out threads it sees idle, but
counts a thread waiting in ``select`` or in librdkafka's ``consume`` as active: the
status server's thread is shown apart, and a worker waiting for records shows as
``drain (streams/restore.py)`` under the Kafka area.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

_FRAME: Final = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# (area, file prefixes, function names or None for any): the frame nearest the leaf that
# matches a rule names the area; rules are tried in this order for each frame
KAFKA: Final = "Kafka client calls + loop (streams/worker.py)"
AREAS: Final[tuple[tuple[str, tuple[str, ...], frozenset[str] | None], ...]] = (
    ("decode + validate (schemas/codec.py, schemas/validation.py)",
     ("schemas/codec.py", "schemas/validation.py", "schemas/events.py"), None),
    ("metering core (streams/core/)", ("streams/core/",), None),
    ("id store + local store (streams/idstore.py, streams/localstore.py)",
     ("streams/idstore.py", "streams/localstore.py", "rocksdict/"), None),
    ("alignment (streams/align.py)", ("streams/align.py",), None),
    ("processor (streams/processor.py)", ("streams/processor.py",), None),
    (KAFKA, ("streams/restore.py",), frozenset({"drain"})),  # the loop's consume
    ("changelog restore (streams/restore.py)", ("streams/restore.py",), None),
    (KAFKA, ("streams/worker.py",), None),
    # the /healthz, /readyz, /metrics thread: waiting in select, which py-spy counts as
    # active
    ("status web server (waiting)", ("socketserver.py",), None),
)
ENCODE: Final = "encode outputs (encode_record)"
OTHER: Final = "other"


@dataclass(frozen=True, slots=True)
class Frame:
    func: str
    file: str
    line: int | None

    @property
    def name(self) -> str:
        return f"{self.func} ({self.file})" if self.file else self.func


def parse_frame(text: str) -> Frame:
    match = _FRAME.match(text.strip())
    if match is None:  # e.g. a thread or process frame of --threads / --subprocesses
        return Frame(text.strip(), "", None)
    line = match.group("line")
    return Frame(match.group("func"), match.group("file"), int(line) if line else None)


def parse_raw(lines: Iterable[str]) -> list[tuple[list[Frame], int]]:
    """(stack root first, samples) for each line of py-spy's raw output."""
    stacks = []
    for line in lines:
        line = line.rstrip("\n")
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append(([parse_frame(f) for f in stack.split(";")], int(count)))
    return stacks


def _is_encode(frame: Frame) -> bool:
    return frame.file.endswith("schemas/codec.py") and \
        frame.func.rpartition(".")[2].startswith("encode")


def area_of(stack: list[Frame]) -> str:
    if any(_is_encode(f) for f in stack):
        return ENCODE
    for frame in reversed(stack):
        for area, prefixes, functions in AREAS:
            if any(frame.file.startswith(p) or f"/{p}" in frame.file for p in prefixes) and (
                    functions is None or frame.func.rpartition(".")[2] in functions):
                return area
    return OTHER


def summarize(stacks: list[tuple[list[Frame], int]], top: int = 15) -> dict[str, Any]:
    """Share of samples (percent) by leaf function (the ``top`` first) and by area."""
    total = sum(n for _, n in stacks)
    leaves: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    for stack, n in stacks:
        leaves[stack[-1].name if stack else "?"] += n
        areas[area_of(stack)] += n

    def pct(n: int) -> float:
        return round(100 * n / total, 1) if total else 0.0

    order = list(dict.fromkeys([ENCODE, *(a for a, _, _ in AREAS), OTHER]))
    return {
        "samples": total,
        "by_area_pct": {a: pct(areas[a]) for a in order if areas[a]},
        "by_leaf_pct": [[name, pct(n)] for name, n in leaves.most_common(top)],
    }


def summarize_file(path: Path, top: int = 15) -> dict[str, Any]:
    with path.open() as raw:
        return summarize(parse_raw(raw), top)


def print_summary(summary: dict[str, Any], title: str = "where the time goes") -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{title}: by area ({summary['samples']:,} samples)")
    table.add_column("area")
    table.add_column("% samples", justify="right")
    for area, share in summary["by_area_pct"].items():
        table.add_row(area, f"{share:.1f}")
    console.print(table)
    table = Table(title=f"{title}: by leaf function")
    table.add_column("leaf function")
    table.add_column("% samples", justify="right")
    for name, share in summary["by_leaf_pct"]:
        table.add_row(name, f"{share:.1f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path, help="py-spy record --format raw output")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print_summary(summarize_file(args.profile, args.top))


if __name__ == "__main__":
    main()
