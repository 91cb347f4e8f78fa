"""`meter demo` end to end: the running stack, the dashboard in headless Chromium, and the
numbers on it against ClickHouse, `meter replay` and the CLI's CSV export."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from groundwork.ports import free_port
from tests.dashboard.test_screenshot import FLAGS, _browser
from tests.streams.harness import differences, flatten_usage, replay_lines

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "demo"


class Demo:
    def __init__(self, proc: subprocess.Popen[str], output: list[str], env: dict[str, str],
                 data_dir: Path) -> None:
        self.proc, self.output, self.env, self.data_dir = proc, output, env, data_dir
        text = "\n".join(output)
        self.dashboard = re.search(r"Dashboard:\s+(http://\S+?)/?\s", text).group(1)  # type: ignore[union-attr]
        self.run_dir = next((data_dir / "demo").glob("run-*"))


@pytest.fixture(scope="module")
def demo(kafka_bootstrap: str) -> Iterator[Demo]:
    data_dir = Path(tempfile.mkdtemp(prefix="demo-e2e-"))
    env = dict(os.environ, METER_KAFKA_BOOTSTRAP=kafka_bootstrap, METER_DATA_DIR=str(data_dir),
               METER_DASHBOARD_PORT=str(free_port()), METER_API_PORT=str(free_port()),
               METER_SINK_PORT=str(free_port()), METER_WORKER_WEB_PORT=str(free_port()),
               METER_ALERTS_METRICS_PORT=str(free_port()), COLUMNS="200")
    proc = subprocess.Popen(
        [sys.executable, "-m", "meter.cli_entry", "demo", "--workspaces", "4", "--events",
         "3000", "--keep-running"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    output: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        output.append(line.rstrip())
        if "Running until Ctrl-C" in line:
            break
    if "Running until Ctrl-C" not in "\n".join(output):
        proc.kill()
        pytest.fail("the demo did not come up:\n" + "\n".join(output[-40:]))
    try:
        yield Demo(proc, output, env, data_dir)
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


def test_the_summary_shows_crossings_deliveries_and_the_rearm(demo: Demo) -> None:
    text = "\n".join(demo.output)
    assert re.search(r"threshold crossings\s*│\s*[1-9]", text), text
    assert re.search(r"webhooks received, signature verified\s*│\s*[1-9]", text), text
    assert re.search(r"webhooks with a bad signature\s*│\s*0\b", text), text
    assert "#2" in text  # the top-up re-armed a threshold


def test_dashboard_numbers_equal_meter_replay_of_the_published_log(demo: Demo) -> None:
    lines = (demo.run_dir / "published.jsonl").read_bytes().splitlines()
    usage, _ = replay_lines(lines)
    for workspace, body in usage["workspaces"].items():
        shown = httpx.get(f"{demo.dashboard}/api/v1/usage.json",
                          params={"workspace": workspace}, timeout=30).json()
        # Every cycle the replay has must be on the dashboard with the same numbers.
        cycles = set(body["cycles"])
        on_page = {"workspaces": {workspace: {"cycles": {
            c: v for c, v in shown["workspaces"][workspace]["cycles"].items() if c in cycles}}}}
        replayed = {"workspaces": {workspace: body}}
        diff = differences(flatten_usage(on_page), flatten_usage(replayed))
        assert not diff, f"{workspace}: " + "\n".join(diff[:30])


def test_the_page_renders_in_chromium_with_no_console_messages(demo: Demo) -> None:
    browser = _browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name, path in (("index", "/"), ("w0001", "/workspace?id=w0001"),
                       ("w0002", "/workspace?id=w0002")):
        target = ARTIFACTS / f"{name}.png"
        with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
            done = subprocess.run(
                [browser, *FLAGS, f"--user-data-dir={profile}", "--window-size=1440,3800",
                 f"--screenshot={target}", demo.dashboard + path],
                capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        assert [line for line in done.stderr.splitlines() if ":CONSOLE" in line] == []
        assert target.stat().st_size > 10_000


def test_muted_and_superseded_alerts_are_shown_as_such(demo: Demo) -> None:
    page = httpx.get(f"{demo.dashboard}/workspace", params={"id": "w0002"}, timeout=30).text
    assert "muted" in page
    assert "superseded" in page or "delivered" in page


def test_csv_download_equals_the_cli_export(demo: Demo, tmp_path: Path) -> None:
    download = httpx.get(f"{demo.dashboard}/export.csv", params={"workspace": "w0001"},
                         timeout=30)
    assert download.status_code == 200
    out = tmp_path / "w0001.csv"
    env = dict(demo.env, METER_TOPIC_PREFIX="")
    subprocess.run([sys.executable, "-m", "meter.cli_entry", "history", "w0001", "--csv",
                    str(out)], env=env, check=True, capture_output=True, timeout=120)
    assert download.content == out.read_bytes()
