"""The Faust app: one agent over the raw usage and control topics, one table of workspaces.

Thin on purpose: it feeds batches to ``BatchProcessor`` (decode, fence, core) and
performs what it returns, in the order that keeps at-least-once delivery exact:
outputs acknowledged by the broker, then one table write per changed workspace,
then Faust acks the offsets (``take_events`` acks after the loop body).

Every input topic is keyed by ``workspace_id`` and has the same partition count, so
partition p of every topic, and of the table's changelog, belongs to one worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import Any

import faust
from confluent_kafka import Producer as ConfluentProducer
from faust.streams import _current_event  # see _write_entry
from faust.types import EventT

from meter.settings import Settings
from schemas.codec import encode_record
from schemas.events import RAW_USAGE_TOPICS
from streams.metrics import WorkerMetrics
from streams.processor import BatchProcessor, OutputRecord, RawMessage
from streams.state_view import HEARTBEAT_KEY_PREFIX, heartbeat_record

log = logging.getLogger("meter.worker")

# alert settings too: the core counts them (S12: they can open a cycle), like the replay.
INPUT_TOPICS = (*RAW_USAGE_TOPICS, "quota.plans", "quota.topups", "alerting.settings")
# Bigger batches mean fewer table writes per event (one per workspace per batch) and
# fewer awaits; measured on 2 cores, 5000 gave 8k events/s where 2000 gave 4.7k.
BATCH_MAX = 5000
BATCH_WITHIN_S = 0.3  # the most a lone event waits for its batch (crossing latency)
HEARTBEAT_INTERVAL_S = 5.0
SNAPSHOT_INTERVAL_S = 1.0
LAG_INTERVAL_S = 2.0  # usage.aggregates and quota.state of changed workspaces


def create_app(settings: Settings) -> faust.App:
    """A Faust app wired to ``settings``; ``app.main()`` or ``app.worker`` runs it."""
    app_id = settings.topic_prefix + settings.worker_id
    datadir = (settings.data_dir / "faust").resolve()
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="rocksdb://",
        datadir=str(datadir),
        topic_partitions=settings.kafka_partitions,
        topic_replication_factor=settings.kafka_replication,
        web_host="127.0.0.1",
        web_port=settings.worker_web_port,
        web_in_thread=False,
        producer_acks=-1,
        producer_linger_ms=5,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=BATCH_MAX * 4,
        broker_max_poll_records=BATCH_MAX,
        table_standby_replicas=0,
        # Our own topics exist (deploy/topics.toml); Faust may create its changelog only.
        topic_allow_declare=True,
        processing_guarantee="at_least_once",
        # Keys are workspace ids and values our own bytes (Avro or table entries).
        key_serializer="raw",
        value_serializer="raw",
    )
    inputs = app.topic(*(settings.topic(t) for t in INPUT_TOPICS),
                       key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    workspaces = app.Table("workspaces", key_type=bytes, value_type=bytes,
                           partitions=settings.kafka_partitions, default=None)
    metrics = WorkerMetrics()

    def load(key: bytes) -> bytes | None:
        # Without a current event the RocksDB store looks the key up in every partition
        # it holds. Inside a ``take_events`` batch the current event is the batch's latest,
        # often another partition's: the store would read that partition only, miss the
        # workspace and let a fresh state overwrite it (lost counts after a rebalance or
        # a restart). See ``_write_entry`` for the write side.
        token = _current_event.set(None)
        try:
            value: bytes | None = workspaces.get(key)
        finally:
            with contextlib.suppress(ValueError):
                _current_event.reset(token)
        return value

    processor = BatchProcessor(load, topic_prefix=settings.topic_prefix, metrics=metrics)
    state: dict[str, Any] = {"ready": False}

    @app.agent(inputs)
    async def meter(stream: Any) -> None:  # a faust.Stream; its stubs lack take_events
        async for events in stream.take_events(BATCH_MAX, BATCH_WITHIN_S):
            # Events buffered before a rebalance may belong to partitions this worker no
            # longer owns: their new owner processes them from its committed offset, on
            # the state it recovered. Applying them here, on this worker's stale copy,
            # would publish numbers behind the truth (found by tests/faults).
            owned = owned_partitions()
            by_msg = {}
            raw = []
            for ev in events:
                m = ev.message
                if m.partition not in owned:
                    _disown(app.consumer, m)
                    metrics.skipped_revoked += 1
                    continue
                msg = RawMessage(m.topic, m.partition, m.offset, m.key, m.value)
                raw.append(msg)
                by_msg[id(msg)] = ev
            result = processor.process(raw)
            # 1. one table write per changed workspace, outbox included, before any await
            for key, (value, last) in result.writes.items():
                _write_entry(workspaces, key, value, by_msg[id(last)])
            # 2. the outputs, acknowledged by the broker; then the outboxes are done
            await send_all(result.outputs)
            result.acknowledged()
            metrics.batches += 1
            # 3. take_events acks the batch after this body

    def owned_partitions() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic in inputs.topics}

    async def send_all(outputs: list[OutputRecord]) -> None:
        futures = [
            await app.producer.send(settings.topic(out.topic), out.key, out.value,
                                    partition=None, timestamp=None, headers=None)
            for out in outputs
        ]
        if futures:
            await asyncio.gather(*futures)

    # Snapshots go through librdkafka, not aiokafka: thousands of small records a
    # second cost ~2 us each there against ~30 us in Python. They need no ack before
    # the table write (a recovered workspace re-emits everything under a newer
    # version), so a separate, asynchronous producer is safe.
    snapshot_producer = ConfluentProducer({
        "bootstrap.servers": settings.kafka_bootstrap, "partitioner": "murmur2_random",
        "enable.idempotence": True, "acks": "all", "linger.ms": 20,
        "compression.type": "lz4", "client.id": f"{app_id}-snapshots",
    })

    @app.timer(interval=SNAPSHOT_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def snapshots() -> None:
        for out in processor.take_snapshots():
            while True:
                try:
                    snapshot_producer.produce(settings.topic(out.topic), out.value, out.key)
                    break
                except BufferError:  # local queue full: let librdkafka drain it
                    snapshot_producer.poll(0.05)
        snapshot_producer.poll(0)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def flush_snapshots(app: Any, *_: Any, signal: Any, **__: Any) -> None:
        snapshot_producer.flush(10)

    @app.timer(interval=LAG_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def refresh_lag() -> None:
        lag: dict[str, int] = {}
        for tp in app.consumer.assignment():
            if tp.topic not in inputs.topics:
                continue
            position = await app.consumer.position(tp)
            highwater = app.consumer.highwater(tp)
            if position is not None and highwater is not None:
                lag[f"{tp.topic}:{tp.partition}"] = max(0, highwater - position)
        metrics.lag = lag

    heartbeat_topic = settings.topic("quota.state")
    heartbeat_key = HEARTBEAT_KEY_PREFIX + app_id.encode()
    heartbeats = {"seq": 0}

    @app.timer(interval=HEARTBEAT_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def heartbeat() -> None:
        # The check API measures staleness from the newest record or heartbeat it saw.
        heartbeats["seq"] += 1
        record = heartbeat_record(app_id, heartbeats["seq"], int(time.time() * 1000))
        await app.producer.send(heartbeat_topic, heartbeat_key,
                                encode_record("quota.state", record),
                                partition=None, timestamp=None, headers=None)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # mode's stubs are too narrow
    async def on_assigned(app: Any, *args: Any, signal: Any, **_: Any) -> None:
        assigned: set[Any] = args[0]  # signal handlers get (sender, assigned)
        mine = sorted({tp.partition for tp in assigned if tp.topic in inputs.topics})
        log.info("worker %s owns partitions %s of %d input topics", app.conf.id, mine,
                 len(INPUT_TOPICS))
        state["ready"] = True

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: Any, *args: Any, signal: Any, **_: Any) -> None:
        revoked: set[Any] = args[0]
        processor.drop_partitions({tp.partition for tp in revoked})

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.text(metrics.render(), content_type="text/plain")

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "alive"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ready = bool(state["ready"]) and not app.rebalancing
        return web.json({"ready": ready}, status=200 if ready else 503)

    app.meter_metrics = metrics  # type: ignore[attr-defined]
    return app


def _disown(consumer: Any, message: Any) -> None:
    """Keep ``take_events`` from acking a message of a revoked partition.

    Faust forgets a revoked partition's offsets, then records any later ack of it; if
    the partition comes back to this worker, that ack is committed and the offsets
    of events nobody applied are skipped (found by tests/faults/test_rebalance.py).
    Marking the message acked beforehand makes Faust's ack a no-op for it.
    """
    consumer._unacked_messages.discard(message)
    message.acked = True


def _write_entry(table: Any, key: bytes, value: bytes, event: EventT[Any]) -> None:
    """Write one workspace's entry as if from inside the iteration of its last event.

    Faust's table (changelog partition) and its RocksDB store (local partition) both
    take the partition from the *current event*; inside a ``take_events`` batch that is
    whichever event came last, possibly another partition's. Setting the current event
    to this workspace's own last message makes both use the workspace's partition.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        table[key] = value
    finally:
        with contextlib.suppress(ValueError):
            _current_event.reset(token)
