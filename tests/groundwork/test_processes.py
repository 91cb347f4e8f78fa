"""Background processes by pid (groundwork/processes.py)."""

from __future__ import annotations

import subprocess
import sys
import time

from groundwork.processes import alive, terminate_group

IGNORES_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"


def _child(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def test_a_running_child_is_alive_and_an_exited_one_is_reaped_as_dead() -> None:
    proc = _child("import time; time.sleep(60)")
    try:
        assert alive(proc.pid)
    finally:
        proc.kill()
    deadline = time.monotonic() + 10
    while alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(proc.pid)  # a zombie until reaped, and alive() reaps it
    assert not alive(None)


def test_terminate_group_stops_a_polite_process_without_killing_it() -> None:
    proc = _child("import time; time.sleep(60)")
    assert terminate_group(proc.pid, grace_s=10) is False
    assert not alive(proc.pid)


def test_terminate_group_kills_what_ignores_sigterm_after_the_grace() -> None:
    proc = _child(IGNORES_TERM)
    time.sleep(0.5)  # let it install its handler
    started = time.monotonic()
    assert terminate_group(proc.pid, grace_s=0.5) is True
    assert time.monotonic() - started >= 0.5
    assert not alive(proc.pid)
