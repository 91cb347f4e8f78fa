"""A real Apache Kafka broker on 127.0.0.1, from Maven Central jars, in KRaft mode.

One combined broker+controller node. The jars are resolved once with Maven into a
git-ignored cache (``<cache>/kafka/<version>/libs``); the node's storage, config,
logs and pid file live in ``<data_dir>/kafka``. Start waits until a metadata
request answers; stop sends SIGTERM, waits, then SIGKILL.
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from groundwork.errors import UserError
from groundwork.kafka import admin_config
from groundwork.processes import alive, terminate_group
from groundwork.settings import Settings

DEPLOY_DIR = Path(__file__).resolve().parent
REPO_DIR = DEPLOY_DIR.parent
POM = DEPLOY_DIR / "kafka" / "pom.xml"
LOG4J_CONFIG = DEPLOY_DIR / "kafka" / "log4j2.xml"

Progress = Callable[[str], None]


class KafkaStartError(UserError):
    """The broker did not come up; the message has the cause and the log tail."""


@dataclass(frozen=True)
class KafkaPaths:
    """Where a local broker's files are: its jars, and its home with the config, data,
    logs and pid file (the layout is ``kafka_paths``')."""

    libs: Path
    home: Path
    config: Path
    storage: Path
    logs: Path
    pid_file: Path
    console_log: Path
    server_log: Path


def kafka_paths(settings: Settings) -> KafkaPaths:
    cache = settings.cache_dir if settings.cache_dir is not None else REPO_DIR / ".cache"
    home = (settings.data_dir / "kafka").resolve()
    logs = home / "logs"
    return KafkaPaths(
        libs=cache.resolve() / "kafka" / settings.kafka_version / "libs",
        home=home,
        config=home / "server.properties",
        storage=home / "data",
        logs=logs,
        pid_file=home / "broker.pid",
        console_log=logs / "console.log",
        server_log=logs / "server.log",
    )


def _noop(_: str) -> None:
    return None


def ensure_jars(settings: Settings, progress: Progress = _noop) -> Path:
    """Resolve the broker's jars into the cache once; later calls return at once."""
    libs = kafka_paths(settings).libs
    if (libs / ".complete").exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaStartError(
            "Maven (mvn) is not installed: it fetches the Kafka jars from Maven Central. "
            "Install it (apt-get install maven) and retry."
        )
    progress(f"resolving Apache Kafka {settings.kafka_version} jars from Maven Central")
    libs.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=libs.parent))
    cmd = [
        mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}", f"-Dkafka.version={settings.kafka_version}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise KafkaStartError(
            f"could not resolve Kafka {settings.kafka_version} from Maven Central "
            f"(mvn exit {result.returncode}); check METER_KAFKA_VERSION and the network.\n{tail}"
        )
    (staging / ".complete").write_text(settings.kafka_version)
    if libs.exists():  # a half-written earlier attempt
        shutil.rmtree(libs)
    staging.rename(libs)
    return libs


def _controller_port(settings: Settings) -> int:
    return settings.kafka_controller_port or settings.kafka_port + 1


def _server_properties(settings: Settings, paths: KafkaPaths) -> str:
    port, cport = settings.kafka_port, _controller_port(settings)
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{cport}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(paths.storage),
        "num.partitions": str(settings.kafka_partitions),
        # One node: every internal topic has one replica.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Topics come from deploy/topics.toml (the worker's changelogs included):
        # a typo in a topic name must fail loudly instead of creating a topic.
        "auto.create.topics.enable": "false",
        # Quick rebalances for tests and the demo.
        "group.initial.rebalance.delay.ms": "0",
        "log.segment.bytes": str(64 * 1024 * 1024),
        "log.retention.check.interval.ms": "60000",
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def read_pid(paths: KafkaPaths) -> int | None:
    """The broker's pid when its process is alive, else None."""
    try:
        pid = int(paths.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def metadata_ok(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when the broker answers a metadata request (being ready, not just listening)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(admin_config(bootstrap, log_level=0))
    try:
        admin.list_topics(timeout=timeout_s)
    except Exception:
        return False
    return True




def log_tail(paths: KafkaPaths, lines: int = 25) -> str:
    chunks = []
    for log in (paths.console_log, paths.server_log):
        if log.exists():
            text = log.read_text(errors="replace").splitlines()[-lines:]
            chunks.append(f"--- {log} ---\n" + "\n".join(text))
    return "\n".join(chunks) if chunks else "(no broker log was written)"


def new_cluster_id() -> str:
    """A random KRaft cluster id, made the way Kafka's ``Uuid.randomUuid`` makes one.

    URL-safe base64 of a random UUID's 16 bytes, unpadded (22 characters). Kafka draws
    again when the text would start with '-' (1 draw in 64): command-line parsers,
    ``kafka-storage format -t`` among them, take such an id for an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _format_storage(java: str, settings: Settings, paths: KafkaPaths) -> None:
    if (paths.storage / "meta.properties").exists():
        return
    cluster_id = new_cluster_id()
    cmd = [java, "-cp", f"{paths.libs}/*", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
           f"-Dkafka.logs.dir={paths.logs}", "kafka.tools.StorageTool", "format",
           "-t", cluster_id, "-c", str(paths.config)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stderr + result.stdout).strip().splitlines()
        cause = output[-1] if output else f"exit {result.returncode}"
        raise KafkaStartError(f"formatting KRaft storage failed: {cause}\n{log_tail(paths)}")


def start(settings: Settings, progress: Progress = _noop, timeout_s: float = 90.0) -> int:
    """Start the broker (or find it running); return its pid once metadata answers."""
    paths = kafka_paths(settings)
    running = read_pid(paths)
    if running is not None:
        if metadata_ok(settings.kafka_bootstrap, timeout_s=5):
            progress(f"Kafka already running (pid {running}) on {settings.kafka_bootstrap}")
            return running
        raise KafkaStartError(
            f"a broker process (pid {running}) exists but does not answer on "
            f"{settings.kafka_bootstrap}; run `meter kafka stop` and start again.\n"
            + log_tail(paths)
        )
    java = shutil.which("java")
    if java is None:
        raise KafkaStartError("Java is not installed: Kafka 4 needs Java 17 or newer "
                              "(apt-get install openjdk-17-jre-headless).")
    for port in (settings.kafka_port, _controller_port(settings)):
        if not _port_is_free(port):
            raise KafkaStartError(
                f"port {port} on 127.0.0.1 is already in use; stop what holds it or choose "
                "another with METER_KAFKA_BOOTSTRAP=127.0.0.1:<port>."
            )
    libs = ensure_jars(settings, progress)
    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.config.write_text(_server_properties(settings, paths))
    progress("formatting KRaft storage")
    _format_storage(java, settings, paths)
    progress(f"starting Kafka {settings.kafka_version} on {settings.kafka_bootstrap}")
    cmd = [
        java, f"-Xmx{settings.kafka_heap}", f"-Xms{settings.kafka_heap}",
        "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", f"-Dkafka.logs.dir={paths.logs}",
        "-cp", f"{libs}/*", "kafka.Kafka", str(paths.config),
    ]
    with paths.console_log.open("ab") as console:
        proc = subprocess.Popen(cmd, stdout=console, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    paths.pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            paths.pid_file.unlink(missing_ok=True)
            raise KafkaStartError(
                f"the broker exited during start-up (exit {proc.returncode}).\n" + log_tail(paths)
            )
        if metadata_ok(settings.kafka_bootstrap, timeout_s=1.0):
            progress(f"Kafka ready on {settings.kafka_bootstrap} (pid {proc.pid})")
            return proc.pid
        time.sleep(0.25)
    terminate_group(proc.pid, grace_s=10)
    paths.pid_file.unlink(missing_ok=True)
    raise KafkaStartError(
        f"the broker did not answer within {timeout_s:.0f} s.\n" + log_tail(paths))


def stop(settings: Settings, progress: Progress = _noop, grace_s: float = 30.0) -> bool:
    """Stop the broker; False when none was running."""
    paths = kafka_paths(settings)
    pid = read_pid(paths)
    if pid is None:
        paths.pid_file.unlink(missing_ok=True)
        return False
    progress(f"stopping Kafka (pid {pid})")
    killed = terminate_group(pid, grace_s)
    paths.pid_file.unlink(missing_ok=True)
    progress("Kafka killed after the grace period" if killed else "Kafka stopped")
    return True


@dataclass(frozen=True)
class KafkaStatus:
    pid: int | None
    answering: bool
    bootstrap: str
    logs: Path


def status(settings: Settings) -> KafkaStatus:
    paths = kafka_paths(settings)
    pid = read_pid(paths)
    answering = metadata_ok(settings.kafka_bootstrap, timeout_s=2.0)
    return KafkaStatus(pid=pid, answering=answering, bootstrap=settings.kafka_bootstrap,
                       logs=paths.logs)
