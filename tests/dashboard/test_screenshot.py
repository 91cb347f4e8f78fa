"""Headless Chromium renders the pages: screenshots under test-artifacts/dashboard/ and
no console messages (errors, warnings, logs). Skipped, with the reason in the summary,
when no Chromium is installed (Debian: ``apt-get install -y chromium``)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0")


def _browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless Chromium installed (apt-get install -y chromium); "
                "dashboard screenshots not taken")


def _screenshot(url: str, target: Path, width: int, height: int) -> str:
    browser = _browser()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        done = subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
             f"--screenshot={target}", url],
            capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert target.stat().st_size > 10_000, f"{target} looks empty"
    return done.stderr


@pytest.mark.parametrize(("name", "path", "width", "height"), [
    ("workspace-1440", "/workspace?id=acme", 1440, 4300),
    ("workspace-1024", "/workspace?id=acme", 1024, 5200),
    ("workspace-february", "/workspace?id=acme&cycle=2026-02-01T00:00:00Z&metric=storage_bytes",
     1280, 3600),
    ("index", "/", 1280, 800),
])
def test_pages_render_in_chromium_without_console_messages(
        dashboard_url: str, artifacts_dir: Path, name: str, path: str, width: int,
        height: int) -> None:
    log = _screenshot(dashboard_url + path, artifacts_dir / f"{name}.png", width, height)
    console = [line for line in log.splitlines() if ":CONSOLE" in line]
    assert console == []
