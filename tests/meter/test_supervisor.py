"""`meter up|status|down` as a user runs them from a fresh clone: real processes, the
real broker, free ports; then nothing left running."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from groundwork.ports import free_port, free_port_pair
from groundwork.processes import alive
from groundwork.settings import Settings, load_settings
from meter import supervisor
from tests.waiting import wait_until

SERVICES = ["worker-1", "worker-2", "api", "alerts", "sink", "dashboard"]


def _env(settings: Settings, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METER_")}
    env.update({"METER_DATA_DIR": str(settings.data_dir),
                "METER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
                "METER_TOPIC_PREFIX": settings.topic_prefix, **extra})
    return env


def _meter(env: dict[str, str], cwd: Path, *args: str, ok: bool = True
           ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "meter.cli_entry", *args], env=env, cwd=cwd,
                            capture_output=True, text=True, timeout=300, check=False)
    if ok:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def _processes_of(data_dir: Path) -> list[int]:
    """Every process on this machine whose environment names ``data_dir``."""
    marker = f"METER_DATA_DIR={data_dir}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if any(item.startswith(marker) for item in (proc / "environ").read_bytes()
                   .split(b"\0")) and alive(int(proc.name)):
                found.append(int(proc.name))
    return found


def _wait_all_ready(settings: Settings, names: list[str], timeout_s: float = 120.0) -> None:
    rows: list[supervisor.ServiceStatus] = []

    def all_ready() -> bool:
        nonlocal rows
        _, rows = supervisor.status(settings)
        ready = sorted(r.name for r in rows if r.running and r.healthy and r.ready)
        return ready == sorted(["kafka", *names])

    wait_until(all_ready, lambda: f"every service to be ready: {rows}", timeout_s, poll_s=1.0)


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings of a `meter up` run in a fresh data dir; `down` whatever is left after."""
    settings = load_settings(data_dir=tmp_path / "data", kafka_bootstrap=kafka_bootstrap,
                             topic_prefix=f"up{uuid.uuid4().hex[:8]}.", kafka_partitions=2)
    try:
        yield settings
    finally:
        supervisor.down(settings)
        for pid in _processes_of(settings.data_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_up_status_usage_down_on_free_ports(stack: Settings, tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("API", "SINK", "ALERTS_METRICS", "DASHBOARD",
                                            "WORKER_WEB")}
    env = _env(stack, {f"METER_{name}_PORT": str(port) for name, port in ports.items()})
    taken = socket.socket()  # the check API's configured port is taken: up picks another
    taken.bind(("127.0.0.1", ports["API"]))
    taken.listen()
    try:
        first = _meter(env, tmp_path, "up", "--workers", "2")
        assert "started worker-1, worker-2, api, alerts, sink, dashboard" in first.stderr
        urls = dict(line.split() for line in first.stdout.splitlines())
        assert sorted(urls) == sorted(SERVICES)
        assert urls["api"] != f"http://127.0.0.1:{ports['API']}/v1/check"
        assert urls["dashboard"] == f"http://127.0.0.1:{ports['DASHBOARD']}/"
        _wait_all_ready(stack, SERVICES)
        assert "worker-1" in _meter(env, tmp_path, "status").stdout

        again = _meter(env, tmp_path, "up", "--workers", "2")
        assert "everything already runs" in again.stderr
        state = supervisor.load_state(stack)
        assert state is not None and not state.kafka_started

        events = tmp_path / "one.jsonl"
        events.write_text('{"type": "tokens", "event_id": "e-up-1", "occurred_at": '
                          f'{int(time.time() * 1000)}, "workspace_id": "w-up", "member_id": "m1", '
                          '"machine_id": null, "skill": null, "provider": "openai", '
                          '"model": "gpt-4o", "input_tokens": 1234, "output_tokens": 0, '
                          '"surface": "chat"}\n')
        _meter(env, tmp_path, "publish", str(events))
        deadline = time.monotonic() + 120
        usage = _meter(env, tmp_path, "usage", "w-up", ok=False)
        while "1,234" not in usage.stdout and time.monotonic() < deadline:
            time.sleep(1.0)
            usage = _meter(env, tmp_path, "usage", "w-up", ok=False)
        assert "1,234" in usage.stdout, usage.stdout + usage.stderr

        killed = int((stack.data_dir / "run" / "worker-1.pid").read_text())
        os.kill(killed, signal.SIGKILL)
        while alive(killed):
            time.sleep(0.1)
        status = _meter(env, tmp_path, "status", ok=False)
        assert status.returncode == 1
        row = next(line for line in status.stdout.splitlines() if "worker-1" in line)
        assert "not running" in row
        restarted = _meter(env, tmp_path, "up", "--workers", "2")
        assert "started again: worker-1" in restarted.stderr
        assert int((stack.data_dir / "run" / "worker-1.pid").read_text()) != killed
        _wait_all_ready(stack, SERVICES)
    finally:
        taken.close()
        pids = [r.pid for r in (supervisor.load_state(stack) or supervisor.RunState(
            "", False)).services.values()]
        down = _meter(env, tmp_path, "down")
    assert "stopped dashboard, api, alerts, sink, worker-1, worker-2" in down.stderr
    assert not [pid for pid in pids if alive(pid)]
    assert _processes_of(stack.data_dir) == []
    assert _meter(env, tmp_path, "status", ok=False).returncode == 1


def test_up_starts_its_own_broker_when_none_answers(stack: Settings, tmp_path: Path) -> None:
    own = stack.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port_pair()}"})
    env = _env(own, {"METER_KAFKA_HEAP": "256m", "METER_API_PORT": str(free_port()),
                     "METER_SINK_PORT": str(free_port()),
                     "METER_ALERTS_METRICS_PORT": str(free_port()),
                     "METER_DASHBOARD_PORT": str(free_port()),
                     "METER_WORKER_WEB_PORT": str(free_port())})
    try:
        result = _meter(env, tmp_path, "up")
        assert f"Kafka: {own.kafka_bootstrap} (started by meter up)" in result.stderr
        _wait_all_ready(own, ["worker-1", "api", "alerts", "sink", "dashboard"])
    finally:
        down = _meter(env, tmp_path, "down")
    assert "kafka" in down.stderr
    assert _processes_of(own.data_dir) == []
    from deploy import kafka_local

    assert not kafka_local.metadata_ok(own.kafka_bootstrap, timeout_s=2)
