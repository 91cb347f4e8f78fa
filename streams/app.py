"""The Faust app: one agent over the raw usage and control topics, one table of workspaces.

Thin on purpose: it feeds batches to ``BatchProcessor`` (decode, fence, core) and
performs what it returns, in the order that keeps at-least-once delivery exact: one
table write per changed workspace (its outbox included), then the outputs and the
changelog records acknowledged by the broker, then Faust acks the offsets
(``take_events`` acks after the loop body; a batch the broker did not confirm is
disowned first, so it is delivered again instead).

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
from aiokafka.errors import IllegalStateError
from confluent_kafka import Consumer as ConfluentConsumer
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as ConfluentProducer
from confluent_kafka import TopicPartition as ConfluentTopicPartition
from faust.streams import _current_event  # see _write_entry
from faust.types import TP, EventT

from meter.settings import Settings
from meter.topic_reader import committed_offsets
from schemas.codec import encode_record
from schemas.events import RAW_USAGE_TOPICS
from streams import faust_fixes
from streams.continuity import OffsetContinuity, Verdict
from streams.metrics import WorkerMetrics
from streams.processor import COMPACTED_INPUTS, BatchProcessor, OutputRecord, RawMessage
from streams.state_view import HEARTBEAT_KEY_PREFIX, heartbeat_record

log = logging.getLogger("meter.worker")

# alert settings too: the core counts them (S12: they can open a cycle), like the replay.
INPUT_TOPICS = (*RAW_USAGE_TOPICS, "quota.plans", "quota.topups", "alerting.settings")
# Bigger batches mean fewer table writes per event (one per workspace per batch) and
# fewer awaits; measured on 2 cores, 5000 gave 8k events/s where 2000 gave 4.7k.
BATCH_MAX = 5000
BATCH_WITHIN_S = 0.3  # the most a lone event waits for its batch (crossing latency)
HEARTBEAT_INTERVAL_S = 5.0
SNAPSHOT_INTERVAL_S = 1.0  # usage.aggregates and quota.state of changed workspaces
LAG_INTERVAL_S = 2.0  # lag and memory gauges; a held partition is sought again
# RocksDB memory per table partition. Faust's defaults (three 64 MB write buffers and a
# 2 GiB block cache per partition) let a busy worker's RSS climb by hundreds of MB
# before it levels off (claimed from the defaults, not measured alone: see
# bench/bench_load.py). The worker reads a workspace from the store only on a miss of
# its own entry cache, so a small block cache is enough.
ROCKSDB_OPTIONS = {"write_buffer_size": 16 << 20, "max_write_buffer_number": 2,
                   "block_cache_size": 32 << 20}


def create_app(settings: Settings) -> faust.App:
    """A Faust app wired to ``settings``; ``app.main()`` or ``app.worker`` runs it."""
    faust_fixes.install()
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
    workspaces = ChangelogTable(app, name="workspaces", key_type=bytes, value_type=bytes,
                                default=None, beacon=app.tables.beacon,
                                partitions=settings.kafka_partitions,
                                options=ROCKSDB_OPTIONS)
    app.tables.add(workspaces)
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
    probe = OffsetProbe(settings.kafka_bootstrap)
    compacted = {settings.topic(t) for t in COMPACTED_INPUTS}
    continuity = OffsetContinuity(holes_allowed=compacted.__contains__)
    state: dict[str, Any] = {"ready": False}

    @app.agent(inputs)
    async def meter(stream: Any) -> None:  # a faust.Stream; its stubs lack take_events
        async for events in stream.take_events(BATCH_MAX, BATCH_WITHIN_S):
            # Events buffered before a rebalance may belong to partitions this worker no
            # longer owns: their new owner processes them from its committed offset, on
            # the state it recovered. Applying them here, on this worker's stale copy,
            # would publish numbers behind the truth (found by tests/faults). And an
            # event after an offset hole waits until the hole is filled (continuity.py).
            owned = owned_partitions()
            held_before = continuity.holds()
            by_msg = {}
            raw = []
            try:
                for ev in events:
                    m = ev.message
                    if await admit(m.topic, m.partition, m.offset, m.partition in owned):
                        msg = RawMessage(m.topic, m.partition, m.offset, m.key, m.value)
                        raw.append(msg)
                        by_msg[id(msg)] = ev
                    else:
                        _disown(app.consumer, m)
                        metrics.held_back += 1
                for (topic, partition), start, end in continuity.take_holes():
                    faust_fixes.record_hole(app.consumer, TP(topic, partition), start, end)
                for (topic, partition), offset in continuity.holds().items():
                    if (topic, partition) not in held_before:
                        log.info("holding back %s[%d] from offset %d (%s)", topic, partition,
                                 offset, "owned" if partition in owned else "not owned")
                result = processor.process(raw)
                # 1. one table write per changed workspace, outbox included, before any
                # await
                for key, (value, last) in result.writes.items():
                    _write_entry(workspaces, key, value, by_msg[id(last)])
                changelog = workspaces.take_sent()
                # 2. the outputs and the changelog records, acknowledged by the broker;
                # then the outboxes are done
                await send_all(result.outputs)
                await asyncio.gather(*changelog)
            except BaseException:
                # Cancelled (shutdown, rebalance) or failed before the broker confirmed
                # the batch: take_events would still ack it, and Faust could commit
                # offsets whose state exists only in this process. Unacked, and sought
                # back to (Faust would not deliver it again by itself), the batch is
                # delivered again; fences and S6 make that exact.
                for ev in events:
                    _disown(app.consumer, ev.message)
                processor.forget()
                firsts: dict[tuple[str, int], int] = {}
                for msg in raw:
                    tp = (msg.topic, msg.partition)
                    firsts[tp] = min(firsts.get(tp, msg.offset), msg.offset)
                continuity.redeliver(firsts)
                raise
            result.acknowledged()
            metrics.batches += 1
            for (topic, partition), missing in continuity.take_seeks().items():
                log.warning("%s[%d]: events after a missing offset are held back; seeking "
                            "back to offset %d", topic, partition, missing)
                await seek(topic, partition, missing)
            # 3. take_events acks the batch after this body

    async def admit(topic: str, partition: int, offset: int, owned: bool) -> bool:
        tp = (topic, partition)
        verdict = continuity.admit(tp, offset, owned)
        if verdict is Verdict.ASK:  # a hole before it: real (a marker) or a lost delivery?
            # Only the broker knows: Faust's own gap records also cover offsets its
            # fetcher dropped (trusting them lost events in tests/faults/test_store_loss).
            missing = continuity.missing(tp)
            first = await asyncio.to_thread(probe.first_offset, topic, partition, missing)
            verdict = continuity.answer(tp, offset, first)
            metrics.holes += 1
        return verdict is Verdict.APPLY

    async def seek(topic: str, partition: int, offset: int) -> None:
        metrics.seeks += 1
        # seek_wait runs in the consumer's own thread (aiokafka's seek is not
        # thread-safe) and resets Faust's read offset, which would drop the refetch
        try:
            await app.consumer.seek_wait({TP(topic, partition): offset})
        except IllegalStateError:
            # Revoked in the meantime (a rebalance): its next owner starts from the
            # committed offset, below the hold. Raised from a timer, this error stopped
            # the whole worker mid-rebalance (tests/faults/test_rebalance.py, in CI).
            log.info("%s[%d] was revoked before the seek to offset %d", topic, partition,
                     offset)

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
        probe.close()

    @app.timer(interval=LAG_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def refresh_lag() -> None:
        # A hold that outlives a tick: Faust may have dropped the refetched offset (its
        # read-offset filter), so seek again; harmless if the stream is already back.
        owned = owned_partitions()
        for (topic, partition), offset in continuity.holds().items():
            if partition in owned and topic in inputs.topics:
                log.info("still holding back %s[%d]: seeking again to offset %d", topic,
                         partition, offset)
                await seek(topic, partition, offset)
        lag: dict[str, int] = {}
        for tp in app.consumer.assignment():
            if tp.topic not in inputs.topics:
                continue
            try:
                position = await app.consumer.position(tp)
            except IllegalStateError:  # revoked since assignment() was read
                continue
            highwater = app.consumer.highwater(tp)
            if position is not None and highwater is not None:
                lag[f"{tp.topic}:{tp.partition}"] = max(0, highwater - position)
        metrics.lag = lag
        metrics.workspaces_cached, metrics.ids_remembered = processor.held_in_memory()

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
        inputs_assigned = [(tp.topic, tp.partition) for tp in assigned
                           if tp.topic in inputs.topics]
        try:
            starts = await asyncio.to_thread(committed_offsets, settings, app_id,
                                             inputs_assigned)
        except KafkaException as exc:  # the broker away: no baseline, holes still caught
            log.warning("could not read committed offsets after a rebalance: %s", exc)
            starts = dict.fromkeys(inputs_assigned)
        continuity.assigned(starts)
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


class OffsetProbe:
    """Asks the broker which offset holds the first record at or after a given one: tells
    a lost delivery (the record exists) from a real hole in the log (transaction
    markers). One consumer, never in a group, used by one caller at a time."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._consumer: ConfluentConsumer | None = None

    def first_offset(self, topic: str, partition: int, offset: int,
                     timeout_s: float = 5.0) -> int | None:
        """None when the broker gave no record in time (then assume a lost delivery)."""
        if self._consumer is None:
            self._consumer = ConfluentConsumer({
                "bootstrap.servers": self._bootstrap, "group.id": "meter-offset-probe",
                "enable.auto.commit": False,
                # what Faust (aiokafka, read_uncommitted) would deliver: markers only are holes
                "isolation.level": "read_uncommitted",
                "enable.partition.eof": True, "fetch.wait.max.ms": 20})
        consumer = self._consumer
        consumer.assign([ConfluentTopicPartition(topic, partition, offset)])
        try:
            deadline = time.monotonic() + timeout_s
            while (left := deadline - time.monotonic()) > 0:
                message = consumer.poll(left)
                if message is None:
                    continue
                error = message.error()
                if error is None or error.code() == KafkaError._PARTITION_EOF:
                    # a record, or the end of the log: no record before that offset
                    return message.offset()
                return None
            return None
        finally:
            consumer.unassign()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class ChangelogTable(faust.Table[bytes, bytes]):
    """A table that hands out the changelog records of its writes, to be awaited.

    Faust sends changelog records from a buffer in the background and, before it
    commits offsets, flushes that buffer with a 0.1 s patience (``ProducerBuffer.
    flush_atmost``): on a busy event loop the commit runs ahead of records still
    buffered. After a SIGKILL the committed offsets then cover state that only the
    local store had; with the store lost too, those events were counted nowhere
    (tests/faults/test_store_loss.py). The agent awaits these futures before the
    batch is acked, so no offset is committed before its state is in the changelog.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sent: list[Any] = []

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        future = super().send_changelog(*args, **kwargs)
        self._sent.append(future)
        return future

    def take_sent(self) -> list[Any]:
        """The changelog records written since the last call (futures of their acks)."""
        sent, self._sent = self._sent, []
        return sent


def _disown(consumer: Any, message: Any) -> None:
    """Keep ``take_events`` from acking a message.

    Used for messages of revoked partitions and for a batch the broker did not confirm.
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
