"""Avro with Confluent framing: magic byte 0, 4-byte big-endian schema id, Avro body.

- ``encode_event`` / ``decode_event``: typed events on their topics; decoding goes
  through ``schemas.validation.validate`` (the one validity function), so a record
  that Avro accepts but the contract does not is an ``InvalidEvent`` too.
- ``encode_record`` / ``decode_record``: any topic's record as a dict (output
  records, dead letters), times as int epoch ms.
- ``decode_written``: a record as its producer wrote it (the writer's schema version,
  no resolution), for readers that handle every version themselves: resolving
  ``usage.aggregates`` version 1 into version 2 would give ``values: []`` and lose
  the one value the record holds.

Bytes that are not a record of a registered schema (wrong magic byte, unknown schema
id, a body that does not decode, trailing bytes) raise ``InvalidEvent('undecodable')``.

Schemas are parsed once. ``timestamp-millis`` is only an annotation on ``long``, so
we read and write with copies of the schemas without ``logicalType``: the bytes are
the same, and times stay int ms with no ``datetime`` round trip. ``decode_record``
resolves data written with an older registered version to the current version of its
subject.

The module functions use the project's ``schemas/registry.json``; ``Codec`` works on
any registry file (the schema evolution tests use one with extra versions).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from io import BytesIO
from typing import Any, Final

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from schemas.events import (
    TOPIC_OF_TYPE,
    TYPE_OF_CLASS,
    TYPE_OF_TOPIC,
    AlertSettingsEvent,
    Event,
    PlanEvent,
)
from schemas.registry import Registry, default_registry
from schemas.validation import InvalidEvent, validate

MAGIC: Final = 0


def strip_logical_types(schema: Any) -> Any:
    """A copy of ``schema`` with ``timestamp-millis`` annotations removed (same binary form)."""
    if isinstance(schema, dict):
        return {k: strip_logical_types(v) for k, v in schema.items()
                if not (k == "logicalType" and v == "timestamp-millis")}
    if isinstance(schema, list):
        return [strip_logical_types(item) for item in schema]
    return schema


def frame(schema_id: int, body: bytes) -> bytes:
    """Confluent framing of an Avro body."""
    return bytes([MAGIC]) + schema_id.to_bytes(4, "big") + body


class Codec:
    """Encoder and decoder for every subject of one registry (schemas parsed once)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._writers: dict[str, tuple[bytes, Any]] = {}
        # schema id -> (topic, version, the writer's schema, the current one or None)
        self._readers: dict[int, tuple[str, int, Any, Any]] = {}
        for topic, v in registry.current.items():
            schema = parse_schema(strip_logical_types(v.load()))
            self._writers[topic] = (frame(v.schema_id, b""), schema)
        for v in registry.versions:
            current = self._writers[v.topic][1]
            if v.schema_id == registry.current[v.topic].schema_id:
                self._readers[v.schema_id] = (v.topic, v.version, current, None)
            else:
                old = parse_schema(strip_logical_types(v.load()))
                self._readers[v.schema_id] = (v.topic, v.version, old, current)

    def encode_record(self, topic: str, record: Mapping[str, Any]) -> bytes:
        """Confluent-framed Avro of ``record`` under ``topic``'s current schema."""
        try:
            header, schema = self._writers[topic]
        except KeyError:
            raise ValueError(f"no schema for topic {topic!r}") from None
        out = BytesIO()
        out.write(header)
        try:
            schemaless_writer(out, schema, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"record does not fit the {topic} schema: {exc}") from None
        return out.getvalue()

    def decode_record(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """``(base topic, record)`` in the current version of the topic's schema;
        ``InvalidEvent('undecodable')`` if it is not one."""
        topic, _version, record = self._decode(data, resolve=True)
        return topic, record

    def decode_written(self, data: bytes) -> tuple[str, int, dict[str, Any]]:
        """``(base topic, writer's version, record)`` read with the writer's schema, not
        resolved to the current version; ``InvalidEvent('undecodable')`` if it is not one."""
        return self._decode(data, resolve=False)

    def _decode(self, data: bytes, *, resolve: bool) -> tuple[str, int, dict[str, Any]]:
        if len(data) < 5 or data[0] != MAGIC:
            raise InvalidEvent("undecodable", "too short for the Confluent framing"
                               if len(data) < 5 else
                               f"magic byte is {data[0]}, expected 0 (Confluent framing)")
        schema_id = int.from_bytes(data[1:5], "big")
        reader = self._readers.get(schema_id)
        if reader is None:
            raise InvalidEvent(
                "undecodable", f"unknown schema id {schema_id} (see schemas/registry.json)"
            )
        topic, version, writer_schema, current_schema = reader
        body = BytesIO(data)
        body.seek(5)
        try:
            record = schemaless_reader(body, writer_schema,
                                       current_schema if resolve else None)
        except Exception as exc:  # any corrupt body: EOF, bad varint, bad UTF-8, huge lengths
            raise InvalidEvent(
                "undecodable", f"Avro body does not decode as {topic}: {type(exc).__name__}"
            ) from None
        if body.tell() != len(data):
            raise InvalidEvent(
                "undecodable", f"{len(data) - body.tell()} trailing bytes after the {topic} record"
            )
        if not isinstance(record, dict):
            raise InvalidEvent("undecodable", f"{topic} body is not a record")
        return topic, version, record


@cache
def default_codec() -> Codec:
    """The codec of the project's registry."""
    return Codec(default_registry())


def schema_id_of(topic: str) -> int:
    """The Confluent id of ``topic``'s current schema."""
    return default_registry().current[topic].schema_id


def encode_record(topic: str, record: Mapping[str, Any]) -> bytes:
    """Confluent-framed Avro of ``record`` under ``topic``'s current schema (times int ms).

    ``topic`` is the base DESIGN.md name (no prefix). A record that does not fit the
    schema raises ``ValueError`` naming the topic.
    """
    return default_codec().encode_record(topic, record)


def decode_record(data: bytes) -> tuple[str, dict[str, Any]]:
    """``(base topic name, record)`` of Confluent-framed Avro; ``InvalidEvent`` if undecodable."""
    return default_codec().decode_record(data)


def decode_written(data: bytes) -> tuple[str, int, dict[str, Any]]:
    """``(base topic name, writer's schema version, record as written)`` of Confluent-framed
    Avro, not resolved to the current version; ``InvalidEvent`` if undecodable."""
    return default_codec().decode_written(data)


def event_record(event: Event) -> dict[str, Any]:
    """The Avro record (a dict) of an event."""
    record: dict[str, Any] = dict(zip(event._fields, event, strict=True))
    if type(event) is PlanEvent:
        record["limits"] = event.limits._asdict()
        record["owners"] = list(event.owners)
    elif type(event) is AlertSettingsEvent:
        record["muted"] = [{"quota": m.quota, "threshold": m.threshold} for m in event.muted]
        record["forecasts"] = [{"quota": f.quota, "lead_days": f.lead_days}
                               for f in event.forecasts]
        record["muted_forecasts"] = list(event.muted_forecasts)
    return record


def topic_of(event: Event) -> str:
    """The base topic an event is published to."""
    return TOPIC_OF_TYPE[TYPE_OF_CLASS[type(event)]]


def encode_event(event: Event) -> bytes:
    """Confluent-framed Avro of a (validated) event on its own topic."""
    return default_codec().encode_record(topic_of(event), event_record(event))


def decode_event(
    data: bytes, *, now_ms: int | None = None, topic: str | None = None
) -> Event:
    """The event in Confluent-framed Avro bytes, validated; ``InvalidEvent`` says why not.

    ``topic``, when given (base name), must be the topic the schema id belongs to.
    """
    record_topic, record = default_codec().decode_record(data)
    type_name = TYPE_OF_TOPIC.get(record_topic)
    if type_name is None or (topic is not None and topic != record_topic):
        raise InvalidEvent(
            "unknown_type",
            f"a {record_topic} record is not an event"
            + ("" if topic is None else f" of {topic}"),
            "type",
        )
    return validate(type_name, record, now_ms=now_ms)


def key_of(workspace_id: str) -> bytes:
    """The message key of every topic: the workspace id, UTF-8."""
    return workspace_id.encode()
