"""Shared fixtures: a real Kafka broker (session), isolated topics, a chDB store path.

The broker is started by ``deploy.kafka_local`` on a free port in a temp dir and
stopped at the end of the session, unless ``METER_KAFKA_BOOTSTRAP`` points at a
running one (then it is used as it is).
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from groundwork.errors import UserError
from groundwork.ports import free_port_pair
from groundwork.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
ACCEPTANCE_DIR = (REPO / ".." / "shared" / "acceptance").resolve()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real broker for the whole session."""
    external = os.environ.get("METER_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    from deploy import kafka_local

    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("kafka-home"),
        kafka_bootstrap=f"127.0.0.1:{free_port_pair()}",
        kafka_partitions=2,
    )
    kafka_local.start(settings)
    try:
        yield settings.kafka_bootstrap
    finally:
        kafka_local.stop(settings, grace_s=20)


@pytest.fixture
def meter_settings(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings on the session broker with a unique topic prefix whose topics all exist.

    The prefix's topics are deleted after the test: a broker that outlives many runs
    (``METER_KAFKA_BOOTSTRAP``) would otherwise gather their partitions until it runs
    out of file descriptors (seen at about 20,000 partitions)."""
    from deploy.topics import create_topics, delete_topics

    settings = load_settings(
        data_dir=tmp_path / "data",
        kafka_bootstrap=kafka_bootstrap,
        kafka_partitions=2,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        chdb_path=tmp_path / "chdb",
    )
    create_topics(settings)
    yield settings
    try:
        delete_topics(settings)
    except UserError as exc:  # the test's result stands; the leftover topics are named
        warnings.warn(f"topics of {settings.topic_prefix} not deleted: {exc}", stacklevel=1)


@pytest.fixture
def chdb_path(tmp_path: Path) -> Path:
    """A fresh directory for an embedded chDB store."""
    path = tmp_path / "chdb"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def acceptance_dir() -> Path:
    if not ACCEPTANCE_DIR.is_dir():
        pytest.fail(f"the shared acceptance cases are missing at {ACCEPTANCE_DIR}")
    return ACCEPTANCE_DIR
