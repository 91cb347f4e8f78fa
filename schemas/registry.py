"""The versioned schema registry file (``registry.json``): subjects, versions, Confluent ids.

Each subject ``<topic>-value`` lists its versions; the highest is current (what we
write), every listed one stays readable (data written with an older version is
resolved to the current one). Ids are global and never reused. Files of older
versions live in ``schemas/history/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

SCHEMA_DIR: Final = Path(__file__).resolve().parent
REGISTRY_FILE: Final = SCHEMA_DIR / "registry.json"


@dataclass(frozen=True)
class SchemaVersion:
    """One registered schema: ``subject`` = ``topic + '-value'``."""

    topic: str
    subject: str
    version: int
    schema_id: int
    path: Path

    def load(self) -> dict[str, Any]:
        """The schema as parsed JSON."""
        schema: dict[str, Any] = json.loads(self.path.read_text())
        return schema


def subject_of(topic: str) -> str:
    """The Confluent subject of a topic's values (TopicNameStrategy)."""
    return f"{topic}-value"


@dataclass(frozen=True)
class Registry:
    """Every registered version of every subject, and each topic's current one."""

    versions: tuple[SchemaVersion, ...]
    current: dict[str, SchemaVersion]

    @classmethod
    def load(cls, path: Path = REGISTRY_FILE) -> Registry:
        """Read a registry file; schema files are relative to its folder."""
        data = json.loads(path.read_text())
        found: list[SchemaVersion] = []
        for subject, entries in data["subjects"].items():
            if not subject.endswith("-value"):
                raise ValueError(f"{path}: subject {subject!r} must end with '-value'")
            topic = subject.removesuffix("-value")
            for entry in entries:
                found.append(SchemaVersion(topic, subject, int(entry["version"]),
                                           int(entry["id"]), path.parent / entry["file"]))
        ids = [v.schema_id for v in found]
        if len(ids) != len(set(ids)):
            raise ValueError(f"{path}: a schema id is used twice")
        latest: dict[str, SchemaVersion] = {}
        for v in found:
            if v.topic not in latest or v.version > latest[v.topic].version:
                latest[v.topic] = v
        return cls(tuple(found), latest)

    def history(self, topic: str) -> list[SchemaVersion]:
        """A topic's versions, oldest first."""
        return sorted((v for v in self.versions if v.topic == topic), key=lambda v: v.version)


@cache
def default_registry() -> Registry:
    """The project's ``schemas/registry.json``."""
    return Registry.load()


def topics() -> tuple[str, ...]:
    """Every topic that has a schema."""
    return tuple(default_registry().current)
