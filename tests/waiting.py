"""Waiting for something to become true: one helper for every test.

A deadline here guards against hangs; it is never a timing assertion. A wait fails at
once when the process it depends on has died (``proc`` exited, or ``check`` raises), so
a crash reads as a crash and not as a timeout.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable

What = str | Callable[[], str]  # a description, or one built when the wait gives up


def _alive(what: What, proc: subprocess.Popen[bytes] | None,
           check: Callable[[], object] | None) -> None:
    if proc is not None and proc.poll() is not None:
        raise AssertionError(f"the process exited with {proc.returncode} while waiting for "
                             f"{_text(what)}")
    if check is not None:
        check()


def _text(what: What) -> str:
    return what if isinstance(what, str) else what()


def wait_until(condition: Callable[[], object], what: What, timeout_s: float = 120.0, *,
               proc: subprocess.Popen[bytes] | None = None,
               check: Callable[[], object] | None = None, poll_s: float = 0.1) -> None:
    """Until ``condition()`` is truthy; ``AssertionError`` naming ``what`` after
    ``timeout_s``, or as soon as ``proc`` exits or ``check()`` raises."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        _alive(what, proc, check)
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {_text(what)}")
        time.sleep(poll_s)


async def wait_until_async(condition: Callable[[], object], what: What,
                           timeout_s: float = 60.0, *,
                           proc: subprocess.Popen[bytes] | None = None,
                           check: Callable[[], object] | None = None,
                           poll_s: float = 0.02) -> None:
    """``wait_until`` for a test on an event loop (sleeps without blocking the loop)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        _alive(what, proc, check)
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {_text(what)}")
        await asyncio.sleep(poll_s)
