"""Background processes by pid: is one alive, and stopping one with its process group."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def alive(pid: int | None) -> bool:
    """The process runs. An exited child of this process is reaped and a zombie of
    anyone's counts as dead."""
    if pid is None:
        return False
    with contextlib.suppress(ChildProcessError):  # not our child: nothing to reap
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # no /proc: trust the signal
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def terminate_group(pid: int, grace_s: float) -> bool:
    """SIGTERM the process group led by ``pid``, wait up to ``grace_s``, then SIGKILL it;
    returns once the leader is gone, True if it had to be killed."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return False
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    while alive(pid):
        time.sleep(0.05)
    return True
