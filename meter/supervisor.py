"""`meter up|status|down`: every service as a background process on this machine.

``up`` uses the broker at ``METER_KAFKA_BOOTSTRAP`` when it answers, else starts one
(``deploy.kafka_local``, on a free port pair when the configured one is taken); creates
the topics; then starts N workers, the check API, the alerting consumer, the sink and
the dashboard, each in its own session (they outlive the command), each on its
configured port or a free one when that port is taken. What runs is recorded in
``<data>/run/services.json`` (pids, ports, URLs, the environment each got) with one pid
file per service; logs go to ``<data>/logs/<service>.log``. A second ``up`` starts only
what is not running (a crashed service is restarted with the same ports). ``down``
stops the services in order (dashboard first, the broker last and only if ``up``
started it), by their recorded pids.

``meter demo`` starts and stops its services with the same functions (``spawn``,
``wait_healthy``, ``stop_pids``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import orjson

from groundwork.errors import UserError
from groundwork.ports import free_port, free_port_pair, port_or_free
from groundwork.processes import alive, terminate_group
from groundwork.settings import Settings

Say = Callable[[str], None]
# The order `down` stops them in (the reverse of start); workers are "worker-1", ...
STOP_ORDER = ("dashboard", "api", "alerts", "sink", "worker")


@dataclass
class ServiceRecord:
    """One supervised service as recorded in services.json."""

    name: str
    command: list[str]
    port: int
    health_url: str
    ready_url: str
    url: str
    env: dict[str, str] = field(default_factory=dict)  # METER_* given to it
    pid: int | None = None
    group: str | None = None  # its consumer group, for lag
    inputs: list[str] = field(default_factory=list)  # base topics it consumes


@dataclass
class RunState:
    """What ``up`` started, in ``<data>/run/services.json``."""

    bootstrap: str
    kafka_started: bool
    services: dict[str, ServiceRecord] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return orjson.dumps({"bootstrap": self.bootstrap, "kafka_started": self.kafka_started,
                             "services": [asdict(s) for s in self.services.values()]},
                            option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes) -> RunState:
        raw = orjson.loads(data)
        services = {s["name"]: ServiceRecord(**s) for s in raw["services"]}
        return cls(raw["bootstrap"], raw["kafka_started"], services)


def run_dir(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "run"


def logs_dir(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "logs"


def load_state(settings: Settings) -> RunState | None:
    path = run_dir(settings) / "services.json"
    if not path.exists():
        return None
    try:
        return RunState.from_json(path.read_bytes())
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a services file meter up wrote ({exc}); "
                        "stop what runs by hand and remove it") from None


def save_state(settings: Settings, state: RunState) -> None:
    directory = run_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "services.json.tmp"
    tmp.write_bytes(state.to_json())
    tmp.replace(directory / "services.json")
    for record in state.services.values():
        pid_file = directory / f"{record.name}.pid"
        if record.pid is None:
            pid_file.unlink(missing_ok=True)
        else:
            pid_file.write_text(f"{record.pid}\n")


# --- processes ---------------------------------------------------------------------------


def spawn(name: str, command: list[str], env: dict[str, str], log: Path) -> int:
    """Start ``meter <command>`` in its own session, output to ``log``; its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meter.cli_entry", *command], env=env, stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return proc.pid


def is_service(pid: int | None) -> bool:
    """The pid runs and is a meter process (not an unrelated one that reused the pid)."""
    if not alive(pid):
        return False
    try:
        return b"meter.cli_entry" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pid


def tail(log: Path, lines: int = 20) -> str:
    if not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def wait_healthy(name: str, pid: int, url: str, log: Path, timeout_s: float = 90.0) -> None:
    """Until ``url`` answers below 500; ``UserError`` with the log if the process exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            raise UserError(f"{name} exited during start-up; its log ({log}):\n" + tail(log))
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.3)
    raise UserError(f"{name} did not answer {url} within {timeout_s:.0f} s; its log ({log}):\n"
                    + tail(log))


def stop_pids(pids: list[int], grace_s: float = 20.0) -> None:
    """SIGTERM each process group, in the order given, wait; SIGKILL what is left."""
    for pid in pids:
        terminate_group(pid, grace_s)


# --- the services ------------------------------------------------------------------------


def _records(settings: Settings, workers: int, ports: dict[str, int]) -> list[ServiceRecord]:
    """What ``up`` runs, in start order; ``ports`` are the ports chosen."""
    from sinks.consumer import DEFAULT_GROUP as SINK_GROUP
    from sinks.rows import SINK_TOPICS
    from streams.worker import INPUT_TOPICS

    def local(port: int, path: str = "") -> str:
        return f"http://127.0.0.1:{port}{path}"

    worker_group = settings.topic_prefix + settings.worker_id
    records = [
        ServiceRecord(f"worker-{i}", ["worker"], ports[f"worker-{i}"],
                      local(ports[f"worker-{i}"], "/healthz"),
                      local(ports[f"worker-{i}"], "/readyz"),
                      local(ports[f"worker-{i}"], "/metrics"),
                      group=worker_group, inputs=list(INPUT_TOPICS))
        for i in range(1, workers + 1)]
    records += [
        ServiceRecord("api", ["api"], ports["api"], local(ports["api"], "/healthz"),
                      local(ports["api"], "/readyz"), local(ports["api"], "/v1/check")),
        ServiceRecord("alerts", ["alerts"], ports["alerts"], local(ports["alerts"], "/metrics"),
                      local(ports["alerts"], "/metrics"), local(ports["alerts"], "/metrics"),
                      group=settings.alerts_group_id, inputs=["quota.thresholds"]),
        ServiceRecord("sink", ["sink"], ports["sink"], local(ports["sink"], "/healthz"),
                      local(ports["sink"], "/readyz"), local(ports["sink"], "/"),
                      group=SINK_GROUP, inputs=list(SINK_TOPICS)),
        ServiceRecord("dashboard", ["dashboard"], ports["dashboard"],
                      local(ports["dashboard"], "/healthz"), local(ports["dashboard"], "/healthz"),
                      local(ports["dashboard"], "/")),
    ]
    return records


def _choose_ports(settings: Settings, workers: int, state: RunState | None) -> dict[str, int]:
    """Each service's port from before (kept when free), else its setting's when free,
    else any free port."""
    defaults = {"api": settings.api_port, "alerts": settings.alerts_metrics_port,
                "sink": settings.sink_port, "dashboard": settings.dashboard_port}
    for i in range(1, workers + 1):
        defaults[f"worker-{i}"] = settings.worker_web_port + i - 1
    chosen: dict[str, int] = {}
    for name, default in defaults.items():
        before = state.services.get(name) if state else None
        if before is not None and is_service(before.pid):
            chosen[name] = before.port  # runs: keeps its port
            continue
        want = before.port if before is not None else default
        port = port_or_free(want) if want else free_port()  # 0: any free port
        while port in chosen.values():
            port = free_port()
        chosen[name] = port
    return chosen


def _api_token(settings: Settings) -> str:
    """METER_API_TOKEN, else a token made once and kept in <data>/run/api_token (0600)."""
    if settings.api_token is not None:
        return settings.api_token.get_secret_value()
    path = run_dir(settings) / "api_token"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


def _ensure_broker(settings: Settings, state: RunState | None, say: Say
                   ) -> tuple[str, bool]:
    """(bootstrap, started by up): the broker of the last up, the configured one when it
    answers, else a broker of our own."""
    from deploy import kafka_local

    if state is not None and state.kafka_started:
        if kafka_local.metadata_ok(state.bootstrap):
            return state.bootstrap, True
        own = settings.model_copy(update={"kafka_bootstrap": state.bootstrap})
        if kafka_local.read_pid(kafka_local.kafka_paths(own)) is not None:
            kafka_local.stop(own)  # its process exists but does not answer
        say(f"starting the broker again on {state.bootstrap}")
        kafka_local.start(own, progress=say)
        return state.bootstrap, True
    if kafka_local.metadata_ok(settings.kafka_bootstrap):
        return settings.kafka_bootstrap, False
    port = settings.kafka_port
    if port_or_free(port) != port or port_or_free(port + 1) != port + 1:
        port = free_port_pair()
    own = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{port}",
                                      "kafka_controller_port": 0})
    say(f"no broker answers at {settings.kafka_bootstrap}: starting one on 127.0.0.1:{port}")
    kafka_local.start(own, progress=say)
    return own.kafka_bootstrap, True


@dataclass
class UpResult:
    state: RunState
    started: list[str]
    running: list[str]
    restarted: list[str]
    token_file: Path | None


def up(settings: Settings, workers: int = 1, say: Say = lambda _: None,
       extra_env: dict[str, str | None] | None = None) -> UpResult:
    """Start whatever of the stack is not running; see the module docstring.

    ``extra_env`` adds settings for every service (None removes one from the
    environment they inherit), e.g. the demo's local SMTP server.
    """
    from deploy.topics import create_topics

    if workers < 1:
        raise UserError("--workers must be 1 or more")
    state = load_state(settings)
    bootstrap, kafka_started = _ensure_broker(settings, state, say)
    on_broker = settings.model_copy(update={"kafka_bootstrap": bootstrap})
    create_topics(on_broker)
    if state is None or state.bootstrap != bootstrap:
        state = RunState(bootstrap, kafka_started, state.services if state else {})
    state.kafka_started = kafka_started
    token = _api_token(settings)
    ports = _choose_ports(settings, workers, state)
    data = settings.data_dir.resolve()
    shared = {
        "METER_KAFKA_BOOTSTRAP": bootstrap,
        "METER_TOPIC_PREFIX": settings.topic_prefix,
        "METER_KAFKA_PARTITIONS": str(settings.kafka_partitions),
        "METER_DATA_DIR": str(data),
        "METER_CHDB_PATH": str(settings.chdb_data_path.resolve()),
        "METER_API_PORT": str(ports["api"]),
        "METER_SINK_PORT": str(ports["sink"]),
        "METER_ALERTS_METRICS_PORT": str(ports["alerts"]),
        "METER_DASHBOARD_PORT": str(ports["dashboard"]),
    }
    started: list[str] = []
    running: list[str] = []
    restarted: list[str] = []
    waiting: list[ServiceRecord] = []
    for record in _records(on_broker, workers, ports):
        before = state.services.get(record.name)
        if before is not None and is_service(before.pid):
            running.append(record.name)
            continue
        env = dict(shared)
        if record.name.startswith("worker-"):
            env["METER_DATA_DIR"] = str(data / "workers" / record.name)
            env["METER_WORKER_WEB_PORT"] = str(record.port)
        extra = extra_env or {}
        env.update({k: v for k, v in extra.items() if v is not None})
        record.env = env
        full_env = {k: v for k, v in os.environ.items() if extra.get(k, "") is not None}
        full_env.update(env)
        full_env["METER_API_TOKEN"] = token
        record.pid = spawn(record.name, record.command, full_env,
                           logs_dir(settings) / f"{record.name}.log")
        if before is not None:
            restarted.append(f"{record.name} (pid {before.pid} was not running)")
        state.services[record.name] = record
        save_state(settings, state)  # a failure below still leaves every pid recorded
        started.append(record.name)
        waiting.append(record)
    for record in waiting:
        assert record.pid is not None
        wait_healthy(record.name, record.pid, record.health_url,
                     logs_dir(settings) / f"{record.name}.log")
    save_state(settings, state)
    token_file = run_dir(settings) / "api_token" if settings.api_token is None else None
    return UpResult(state, started, running, restarted, token_file)


@dataclass
class ServiceStatus:
    name: str
    pid: int | None
    running: bool
    healthy: bool
    ready: bool
    lag: int | None
    url: str


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def status(settings: Settings) -> tuple[RunState | None, list[ServiceStatus]]:
    """Every recorded service: process, /healthz, /readyz, its group's lag, its URL."""
    from groundwork.kafka import group_lag

    state = load_state(settings)
    if state is None:
        return None, []
    from deploy import kafka_local

    on_broker = settings.model_copy(update={"kafka_bootstrap": state.bootstrap})
    answering = kafka_local.metadata_ok(state.bootstrap)
    broker_pid = kafka_local.read_pid(kafka_local.kafka_paths(on_broker)) \
        if state.kafka_started else None
    rows = [ServiceStatus("kafka", broker_pid, answering or broker_pid is not None,
                          answering, answering, None, state.bootstrap)]
    lags: dict[str, int | None] = {}
    for record in state.services.values():
        running = is_service(record.pid)
        if record.group is not None and record.group not in lags and answering:
            try:
                lags[record.group] = group_lag(on_broker, record.group, tuple(record.inputs))
            except Exception:  # the broker is down: no lag to show
                lags[record.group] = None
        rows.append(ServiceStatus(
            record.name, record.pid, running,
            running and _answers(record.health_url), running and _answers(record.ready_url),
            lags.get(record.group) if record.group else None, record.url))
    return state, rows


def down(settings: Settings, say: Say = lambda _: None) -> list[str]:
    """Stop every recorded service in order, then the broker if up started it."""
    from deploy import kafka_local

    state = load_state(settings)
    if state is None:
        return []

    def rank(name: str) -> int:
        return STOP_ORDER.index(name.split("-")[0]) if name.split("-")[0] in STOP_ORDER else 0

    stopped = []
    for record in sorted(state.services.values(), key=lambda r: rank(r.name)):
        if is_service(record.pid):
            assert record.pid is not None
            say(f"stopping {record.name} (pid {record.pid})")
            stop_pids([record.pid])
            stopped.append(record.name)
        record.pid = None
        save_state(settings, state)
    if state.kafka_started:
        own = settings.model_copy(update={"kafka_bootstrap": state.bootstrap})
        say(f"stopping the broker on {state.bootstrap}")
        if kafka_local.stop(own):
            stopped.append("kafka")
    (run_dir(settings) / "services.json").unlink(missing_ok=True)
    return stopped


def with_running_sink(settings: Settings) -> Settings:
    """``settings`` pointed at the sink ``meter up`` runs for this data directory (it may
    have taken a free port), so ``meter usage`` and ``meter history`` read through it."""
    try:
        state = load_state(settings)
    except UserError:
        return settings
    sink = state.services.get("sink") if state is not None else None
    if sink is None or not is_service(sink.pid):
        return settings
    return settings.model_copy(update={"sink_port": sink.port, "sink_host": "127.0.0.1"})
