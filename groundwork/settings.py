"""Every setting of every process, in one typed place (env prefix ``METER_``).

``Settings()`` reads the environment (and a ``.env`` file in the working directory);
a wrong value fails with the setting's environment name, what is wrong and what is
expected, one line per wrong setting, see ``load_settings``. List settings take a
comma-separated value (``a,b``) or a JSON list (``["a", "b"]``).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
from enum import Enum, StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Final

from annotated_types import Ge, Gt, Le, MinLen
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError


class StalePolicy(StrEnum):
    """What hard quotas answer when the check API's view is too old."""

    FAIL_OPEN = "fail_open"
    FAIL_CLOSED = "fail_closed"


class SettingsError(ValueError):
    """Settings are wrong; ``problems`` holds one line per wrong setting, each naming
    its environment variable, what is wrong and what is expected."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# A host name, an IPv4 or an IPv6 address (what a listener binds or a client dials).
HOST_PATTERN: Final = r"^[A-Za-z0-9.:_-]+$"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="METER_", env_file=".env", extra="ignore", validate_default=True
    )

    # Where everything local lives: Kafka data and logs, chDB store, the worker's store.
    data_dir: Path = Field(default=Path(".meter"), description="local state directory")

    cache_dir: Path | None = Field(
        default=None, description="download cache (Kafka jars); default <repo>/.cache"
    )

    # Kafka
    kafka_bootstrap: str = Field(default="127.0.0.1:19092", description="bootstrap servers")
    kafka_partitions: int = Field(default=4, ge=1,
                                  description="partitions of co-partitioned topics")
    kafka_replication: int = Field(default=1, ge=1)
    kafka_version: str = Field(default="4.4.0", pattern=r"^\d+\.\d+\.\d+(-[A-Za-z0-9.-]+)?$",
                               description="Apache Kafka version for deploy/")
    kafka_controller_port: int = Field(default=0, ge=0, le=65535,
                                       description="0: broker port + 1")
    # Every test run creates its own prefixed topics on one broker: 512m ran out of heap
    # after a few hundred test topics on the dev broker.
    kafka_heap: str = Field(default="1g", pattern=r"^\d+[kKmMgG]?$")
    topic_prefix: str = Field(
        default="", pattern=r"^[A-Za-z0-9._-]*$",
        description="prepended to every topic name (isolated test or staging runs)"
    )

    # ClickHouse: a server URL, or embedded chDB at chdb_path (default data_dir/chdb)
    clickhouse_url: str | None = Field(default=None, pattern=r"^https?://\S+$",
                                       description="e.g. http://user:pw@host:8123/db")
    chdb_path: Path | None = None
    clickhouse_database: str = Field(default="meter", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    # Services
    worker_id: str = Field(default="meter-worker", min_length=1,
                           description="the workers' consumer group (with the topic prefix)")
    worker_instance: str | None = Field(
        default=None, min_length=1, pattern=r"^[A-Za-z0-9._-]+$",
        description="this worker's stable id, its transactional.id; "
                    "default: host name and a hash of the data directory")
    worker_web_port: int = Field(default=6066, ge=0, le=65535)
    worker_batch_max: int = Field(default=30_000, ge=1,
                                  description="most events in one batch (one transaction)")
    # A paused worker's open transaction is aborted (transaction timeout) before its
    # partitions can move to another worker (session timeout): the first must be lower.
    worker_session_timeout_ms: int = Field(default=15_000, ge=6_000)
    worker_transaction_timeout_ms: int = Field(default=10_000, ge=1_000)
    worker_align_idle_ms: int = Field(
        default=100, ge=0, description="how long a partition waits for a topic with no news")
    worker_align_lag_wait_ms: int = Field(
        default=10_000, ge=0, description="how long it waits for a topic known to hold more")
    api_host: str = Field(default="127.0.0.1", pattern=HOST_PATTERN)
    api_port: int = Field(default=7070, ge=0, le=65535)
    api_token: SecretStr | None = Field(default=None, min_length=1,
                                        description="bearer token for the check API")
    api_stale_after_s: float = Field(default=30.0, gt=0)
    api_stale_policy: StalePolicy = StalePolicy.FAIL_OPEN
    api_workers: int = Field(default=1, ge=1, le=64,
                             description="processes serving the check API's port")
    dashboard_host: str = Field(default="127.0.0.1", pattern=HOST_PATTERN)
    dashboard_port: int = Field(default=8080, ge=0, le=65535)
    sink_host: str = Field(default="127.0.0.1", pattern=HOST_PATTERN)
    sink_port: int = Field(default=7071, ge=0, le=65535, description="sink read API and metrics")
    alerts_metrics_port: int = Field(default=7072, ge=0, le=65535)

    # Alerting
    smtp_host: str = Field(default="127.0.0.1", pattern=HOST_PATTERN)
    smtp_port: int = Field(default=8025, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = Field(default="meter@localhost", pattern=r"^[^@\s]+@[^@\s]+$")
    delivery_allow_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="hosts allowed over http and on private/loopback addresses (S13)",
    )
    delivery_timeout_s: float = Field(default=5.0, gt=0)
    # 12 attempts with waits capped at 5 min: a receiver down for 9 to 18 minutes (the
    # jitter) still gets the alert; 5 attempts up to 60 s gave up after 8 to 15 s of
    # outage (tests/faults/test_alerting_faults.py).
    delivery_max_attempts: int = Field(default=12, ge=1)
    delivery_backoff_base_s: float = Field(default=1.0, gt=0,
                                           description="first retry waits about this long")
    delivery_backoff_max_s: float = Field(default=300.0, gt=0,
                                          description="cap of one backoff")
    delivery_retry_after_max_s: float = Field(
        default=300.0, gt=0, description="longest Retry-After that is honoured as given")
    alerts_group_id: str = Field(default="meter-alerts", min_length=1)
    alerts_max_in_flight: int = Field(default=256, ge=1,
                                      description="deliveries sending at the same time")
    alerts_collapse_wait_s: float = Field(
        default=10.0, ge=0,
        description="how long crossings of one event wait for their highest sibling")
    alerts_metrics_host: str = Field(default="127.0.0.1", pattern=HOST_PATTERN)

    @field_validator("delivery_allow_hosts", mode="before")
    @classmethod
    def _list_from_text(cls, value: object) -> object:
        """``a,b`` or ``["a", "b"]`` from the environment; lists pass as they are."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except ValueError:
                raise ValueError("not a valid JSON list") from None
        return [item.strip() for item in text.split(",") if item.strip()]

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_has_port(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"{server.strip()!r} is not host:port")
        return value

    @model_validator(mode="after")
    def _transaction_below_session(self) -> Settings:
        if self.worker_transaction_timeout_ms >= self.worker_session_timeout_ms:
            raise ValueError(
                "METER_WORKER_TRANSACTION_TIMEOUT_MS must be below "
                "METER_WORKER_SESSION_TIMEOUT_MS, so a paused worker's transaction aborts "
                f"before its partitions move (got {self.worker_transaction_timeout_ms} and "
                f"{self.worker_session_timeout_ms})")
        return self

    @property
    def worker_instance_id(self) -> str:
        """The stable id of this worker instance (see ``worker_instance``)."""
        if self.worker_instance:
            return self.worker_instance
        digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:10]
        host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()) or "host"
        return f"{host}-{digest}"

    @property
    def chdb_data_path(self) -> Path:
        return self.chdb_path if self.chdb_path is not None else self.data_dir / "chdb"

    def topic(self, name: str) -> str:
        """The real name of a DESIGN.md topic (``usage.tokens``) under ``topic_prefix``."""
        return self.topic_prefix + name

    @property
    def kafka_port(self) -> int:
        return int(self.kafka_bootstrap.split(",")[0].rpartition(":")[2])


# Where a setting's type does not say it all.
_HOST = "a host name or IP address"
_EXPECTED = {
    "kafka_bootstrap": "host:port[,host:port...]",
    "kafka_version": "a version like 4.4.0",
    "kafka_heap": "a Java heap size like 512m or 1g",
    "topic_prefix": "letters, digits, '.', '_' or '-' (Kafka topic characters)",
    "clickhouse_url": "an http:// or https:// URL",
    "clickhouse_database": "a database name (letters, digits, '_')",
    "worker_instance": "letters, digits, '.', '_' or '-', not empty",
    "smtp_from": "an email address like meter@example.com",
    "api_token": "a non-empty token",
    "api_host": _HOST, "dashboard_host": _HOST, "sink_host": _HOST, "smtp_host": _HOST,
    "alerts_metrics_host": _HOST,
}


def expected_value(name: str, field: FieldInfo) -> str:
    """What a setting accepts, in words, from its type and constraints."""
    if name in _EXPECTED:
        return _EXPECTED[name]
    annotation: Any = field.annotation
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    base: Any = args[0] if len(args) == 1 and annotation not in (list[str],) else annotation
    bounds = []
    for meta in field.metadata:
        if isinstance(meta, Ge):
            bounds.append(f">= {meta.ge}")
        elif isinstance(meta, Gt):
            bounds.append(f"> {meta.gt}")
        elif isinstance(meta, Le):
            bounds.append(f"<= {meta.le}")
        elif isinstance(meta, MinLen) and meta.min_length:
            bounds.append("not empty")
    if getattr(base, "__origin__", None) is list:
        words = "a comma-separated list (a,b) or a JSON list"
    elif isinstance(base, type) and issubclass(base, Enum):
        words = "one of " + ", ".join(str(m.value) for m in base)
    elif base is bool:
        words = "true or false"
    elif base is int:
        words = "a whole number"
    elif base is float:
        words = "a number"
    elif base is Path:
        words = "a path"
    else:
        words = "text"
    return words + (" " + " and ".join(bounds) if bounds else "")


def _problem(err: Any) -> str:
    if not err["loc"]:  # a rule across settings: its message names them
        return str(err["msg"]).removeprefix("Value error, ")
    field = str(err["loc"][0])
    name = "METER_" + field.upper()
    wrong = str(err["msg"]).removeprefix("Value error, ")
    wrong = wrong[:1].lower() + wrong[1:]
    info = Settings.model_fields.get(field)
    expected = f"; expected {expected_value(field, info)}" if info is not None else ""
    return f"{name}: {wrong} (got {err.get('input')!r}){expected}"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; raises ``SettingsError`` naming the bad variables."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError([_problem(err) for err in exc.errors()]) from None
    except SourceError as exc:  # a value the environment source could not even parse
        field = re.search(r'field "(\w+)"', str(exc))
        name = "METER_" + field.group(1).upper() if field else "a METER_ setting"
        raise SettingsError([f"{name}: could not be read ({exc.__cause__ or exc})"]) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
