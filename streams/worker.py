"""The stream worker: a Kafka consume-process-produce loop with exactly-once transactions
(EOS v2, KIP-447) on confluent-kafka (DESIGN.md, "The stream engine").

One batch is one transaction:

1. records of the owned partitions of every input topic are consumed (``read_committed``,
   no auto-commit), decoded and queued per topic; a batch takes them in event-time order
   per partition (``streams/align.py``). Nothing is consumed between a batch's first
   apply and its commit: rebalance callbacks run inside ``consume``;
2. ``BatchProcessor.process`` applies the batch to the workspaces' state and returns
   every output: crossings, prune requests, dead letters, ``quota.state``,
   ``usage.aggregates``, one changelog record per changed workspace and the S6 store's
   records;
3. they are produced in one transaction with the input offsets of the records applied
   (``send_offsets_to_transaction``: the next offset to apply, never the consumer's
   position, so records held back for alignment are read again after a restart), then
   committed. A retriable commit error is retried (a timed-out commit may still
   complete: never rewind while the outcome is unknown); an abortable one aborts,
   forgets the batch's changes in memory and seeks the partitions back to the offsets
   last committed; a fatal one (fenced) ends the worker with a clear error;
4. only after the commit, the local store (RocksDB) gets the batch's state in one write
   batch, with the changelog offsets it reflects.

Zombies are fenced by Kafka: a worker paused past ``transaction.timeout.ms`` has its
transaction aborted by the coordinator, and a stale generation's offset commit is
refused, so the whole transaction aborts and its partitions' new owner, which restores
with ``read_committed``, never sees it. On assignment, the inputs stay paused while the
changelogs are read from the offsets saved in the local store to their end
(``streams/localstore.py``), then resume from the committed offsets.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from groundwork.errors import UserError
from groundwork.kafka import consumer_config, producer_config, reader_config
from groundwork.partitioning import partition_for
from groundwork.settings import Settings
from schemas.codec import encode_record
from schemas.events import RAW_USAGE_TOPICS
from streams.align import EventTimeAligner
from streams.heap import HeapPolicy
from streams.idstore import IdStore
from streams.localstore import LocalStore, StoreLocked
from streams.metrics import WorkerMetrics
from streams.processor import (
    CHANGELOGS,
    BatchProcessor,
    BatchResult,
    Output,
    decode_incoming,
)
from streams.restore import ChangelogRestore, RestoreFailed, drain
from streams.state_view import HEARTBEAT_KEY_PREFIX, heartbeat_record
from streams.web import StatusServer

log = logging.getLogger("meter.worker")

# Control topics first: on equal event times they apply before usage (S1 alignment), as a
# log written in time order lists a plan before the usage it governs. Alert settings
# too: the core counts them (S12: they can open a cycle), like the replay.
INPUT_TOPICS: Final = ("quota.plans", "quota.topups", "alerting.settings", *RAW_USAGE_TOPICS)
OUTPUT_TOPICS: Final = ("quota.thresholds", "quota.state", "usage.aggregates",
                        "storage.prune_requests", "usage.deadletter")
HEARTBEAT_INTERVAL_S: Final = 5.0
GAUGE_INTERVAL_S: Final = 2.0
IDLE_POLL_S: Final = 0.2  # how long the loop waits for news when it has nothing to do
WAITING_POLL_S: Final = 0.01  # ... and when a partition waits for a topic (alignment)
KAFKA_TIMEOUT_S: Final = 60.0
# One transactional call (AddOffsetsToTxn + TxnOffsetCommit, EndTxn) waits this long; a
# timed-out one is retried or aborted by the loop, which sees the stop flag meanwhile.
TXN_CALL_TIMEOUT_S: Final = 15.0
# A commit or abort whose outcome is still unknown after this gives the producer up: a new
# one under the same transactional.id settles the transaction, whatever its outcome, and
# the partitions are restored from what Kafka holds. Without this bound a coordinator
# librdkafka keeps a stale route to (librdkafka #5511, seen after a broker restart)
# retried "Timed out" forever: no commit, and SIGTERM was never heard.
TXN_OUTCOME_DEADLINE_S: Final = 60.0
# A producer fenced again this soon after a fenced one was replaced means another instance
# runs with the same transactional.id: exit rather than fence each other in turn. (Once is
# a worker that was paused past its transaction timeout: it carries on.)
FENCED_AGAIN_S: Final = 60.0
# Errors that mean another owner took over (a rebalance, or this worker was paused past
# its transaction timeout): the transaction aborts and the next poll learns the news.
_FENCING: Final = frozenset({
    KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.REBALANCE_IN_PROGRESS, KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError.PRODUCER_FENCED, KafkaError.FENCED_INSTANCE_ID, KafkaError._FENCED,
})


class WorkerFatal(UserError):
    """The worker cannot go on; the message says why and what to do."""


class TransactionAborted(Exception):
    """The batch's transaction was aborted: its changes are to be forgotten."""


class ProducerFailed(Exception):
    """The transactional producer hit a fatal error: it cannot be used again."""

    def __init__(self, error: KafkaError) -> None:
        super().__init__(error.str())
        self.error = error


def transactional_id(settings: Settings) -> str:
    """One stable id per worker instance: its transactional.id."""
    return f"{settings.topic(settings.worker_id)}.{settings.worker_instance_id}"


class Worker:
    """One worker instance; ``run`` until ``stop``. Several form one consumer group."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = WorkerMetrics()
        self.group = settings.topic(settings.worker_id)
        self.instance = transactional_id(settings)
        self._base = {settings.topic(t): t for t in (*INPUT_TOPICS, *CHANGELOGS)}
        self._inputs = [settings.topic(t) for t in INPUT_TOPICS]
        try:
            self.store = LocalStore(settings.data_dir / "worker" / "store")
        except StoreLocked as exc:
            raise WorkerFatal(str(exc)) from None
        self.ids = IdStore(self.store)
        self.processor = BatchProcessor(self.store, self.ids)
        self.aligner = EventTimeAligner(
            INPUT_TOPICS, idle_wait_s=settings.worker_align_idle_ms / 1000,
            lag_wait_s=settings.worker_align_lag_wait_ms / 1000)
        self._stop = threading.Event()
        self._assigned: set[int] = set()
        self._restoring: set[int] = set()
        self._paused: set[tuple[str, int]] = set()  # full queues (backpressure)
        self._committed: dict[tuple[str, int], int] = {}  # next offset, as last committed
        # what alignment knows of each input partition: the next offset it will be handed,
        # and the last stable offset (at assignment, then from librdkafka's statistics)
        self._next: dict[tuple[str, int], int] = {}
        self._ends: dict[tuple[str, int], int] = {}
        self._delivered: dict[tuple[str, int], int] = {}  # changelog -> next offset
        self._fatal: WorkerFatal | None = None
        self._fenced_at = -FENCED_AGAIN_S  # when a fenced producer was last replaced
        self._transaction_began = 0.0
        self._ready = False
        self._heartbeat_seq = 0
        self._heartbeat_due = 0.0
        self._gauges_due = 0.0
        self._heap = HeapPolicy(time.monotonic())
        self._partitions = 0  # of every worker topic (checked equal at start)
        self._rebalances = 0  # assignment changes seen (see _intake_fresh)
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._restore: ChangelogRestore | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    @property
    def ready(self) -> bool:
        return self._ready and not self._restoring

    def run(self) -> None:
        """Consume, process and commit until ``stop``; raises ``WorkerFatal``."""
        web = StatusServer("127.0.0.1", self.settings.worker_web_port, lambda: self.ready,
                           self.metrics.render)
        self.metrics.gc.install()
        try:
            self._check_topics()
            self._producer = self._make_producer()
            self._restore = ChangelogRestore(Consumer(self._restorer_config()), self.store,
                                             self.ids, self.settings.topic)
            self._consumer = Consumer(self._consumer_config())
            self._consumer.subscribe(self._inputs, on_assign=self._on_assign,
                                     on_revoke=self._on_revoke, on_lost=self._on_lost)
            web.start()
            log.info("worker %s started (group %s, %d input topics)", self.instance,
                     self.group, len(INPUT_TOPICS))
            while not self._stop.is_set():
                self._step()
        finally:
            self._close(web)

    def _close(self, web: StatusServer) -> None:
        self.metrics.gc.uninstall()
        web.stop()
        if self._consumer is not None:
            try:
                self._consumer.close()  # revokes: nothing is pending between batches
            except (KafkaException, RuntimeError) as exc:
                log.warning("closing the consumer: %s", exc)
        if self._restore is not None:
            self._restore.close()
        if self._producer is not None:
            try:
                self._producer.flush(10)  # heartbeats' leftovers; no transaction is open
            except KafkaException as exc:  # fenced: nothing of it would commit anyway
                log.info("closing the producer: %s", exc.args[0].str())
        self.store.close()
        log.info("worker %s stopped", self.instance)

    # -- clients -----------------------------------------------------------------------

    def _check_topics(self) -> None:
        """Every input and changelog topic exists with one partition count (co-partitioning)."""
        from groundwork.kafka import existing_topics

        existing = existing_topics(self.settings)
        names = [self.settings.topic(t) for t in (*INPUT_TOPICS, *CHANGELOGS, *OUTPUT_TOPICS)]
        missing = [t for t in names if t not in existing]
        if missing:
            raise WorkerFatal(f"topics missing: {', '.join(missing)}; create them with "
                              "`meter topics create`")
        counts = {t: len(existing[t].partitions) for t in names}
        if len(set(counts.values())) != 1:
            detail = ", ".join(f"{t}: {n}" for t, n in sorted(counts.items()))
            raise WorkerFatal(f"the worker's topics must have one partition count "
                              f"(co-partitioning), found {detail}")
        self._partitions = next(iter(counts.values()))

    def _make_producer(self) -> Producer:
        settings = self.settings
        # idempotent, acks=all, lz4, and murmur2_random: every producer hashes keys alike
        # (Java's murmur2); outputs name their partition, the heartbeat's is computed the
        # same way
        producer = Producer(producer_config(settings, f"{self.instance}-producer", **{
            "transactional.id": self.instance,
            "transaction.timeout.ms": settings.worker_transaction_timeout_ms,
            "linger.ms": 5,
            # A batch's transaction begins right after the previous commit, while the
            # coordinator may still be writing that commit's markers: AddOffsetsToTxn is then
            # refused (CONCURRENT_TRANSACTIONS) and librdkafka retries after this backoff
            # (100 ms by default; about 1.5 % of transactions at 2,000 events/s, each a
            # 100 ms stop, 2026-12-06). Retries still back off exponentially, up to
            # retry.backoff.max.ms (1 s), when a broker is away.
            "retry.backoff.ms": 10,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            # fatal errors surface from the transaction calls (ProducerFailed)
            "error_cb": lambda error: None,
        }))
        deadline = time.monotonic() + 120
        while True:  # right after a broker start the coordinator may still be loading
            try:
                # also aborts a transaction this instance left open before a crash
                producer.init_transactions(KAFKA_TIMEOUT_S)
                return producer
            except KafkaException as exc:
                error = exc.args[0]
                if error.fatal() or time.monotonic() > deadline:
                    raise WorkerFatal(f"cannot start transactions as {self.instance}: "
                                      f"{error.str()}") from None
                log.info("waiting for the transaction coordinator: %s", error.str())
                time.sleep(1)

    def _consumer_config(self) -> dict[str, Any]:
        settings = self.settings
        session = settings.worker_session_timeout_ms
        # read_committed (never see an aborted record), no auto commit
        return consumer_config(settings, self.group, f"{self.instance}-consumer", **{
            # No static membership (group.instance.id): after a broker restart librdkafka's
            # rejoin was refused as FENCED_INSTANCE_ID, fatal to the consumer
            # (tests/faults/test_broker_restart.py), and a stopped static member keeps its
            # partitions until its session times out.
            "partition.assignment.strategy": "range",  # partition p of every topic together
            "enable.auto.offset.store": False,
            # an offset out of range is an error to handle, never a silent jump
            "auto.offset.reset": "error",
            "enable.partition.eof": True,  # the end of a partition tells alignment to go on
            "session.timeout.ms": session,
            "heartbeat.interval.ms": max(1000, session // 5),
            "statistics.interval.ms": int(GAUGE_INTERVAL_S * 1000),
            "stats_cb": self._on_stats,
            "error_cb": self._on_client_error,
        })

    def _offsets_reader_config(self) -> dict[str, Any]:
        # the worker's group, but never subscribes: it only reads the group's offsets,
        # stable ones (read_committed asks with require_stable)
        return consumer_config(self.settings, self.group, f"{self.instance}-offsets")

    def _restorer_config(self) -> dict[str, Any]:
        # read_committed up to the last stable offset, where partition EOF is raised;
        # assign() only: never joins its group, never commits
        return reader_config(self.settings, f"{self.group}.restore", f"{self.instance}-restore",
                             error_cb=self._on_client_error)

    def _on_stats(self, payload: str) -> None:
        for tp, end in self.metrics.record_stats(payload, set(self._inputs)).items():
            if end > self._ends.get(tp, -1):
                self._ends[tp] = end

    def _on_client_error(self, error: KafkaError) -> None:
        # librdkafka logs transport errors itself (a broker away is retried): only a fatal
        # one is news here
        if error.fatal():
            self._fatal = WorkerFatal(f"fatal Kafka error: {error.str()}")
            log.error("kafka: %s", error.str())

    # -- rebalances (callbacks, run inside consume: between batches) -------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._ready = False
        self._rebalances += 1
        mine = {tp.partition for tp in partitions}
        by_partition = {p: {tp.topic for tp in partitions if tp.partition == p} for p in mine}
        for p, topics in by_partition.items():
            if topics != set(self._inputs):
                self._fatal = WorkerFatal(
                    f"partition {p} was assigned for {len(topics)} of {len(self._inputs)} input "
                    "topics: the worker needs the range assignor and equal partition counts")
        # Under read_committed this waits while a previous owner's transactional offset
        # commit is pending, so the committed offsets and the changelogs agree.
        committed = self._committed_offsets(consumer, partitions)
        start = []
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self._committed[(tp.topic, tp.partition)] = offset
            self._next[(tp.topic, tp.partition)] = max(0, offset)
            start.append(TopicPartition(tp.topic, tp.partition, offset))
        consumer.assign(start)
        consumer.pause(start)  # until the changelogs are restored (in the loop)
        self._assigned = mine
        self._restoring |= mine
        self.aligner.assign(mine)

    def _committed_offsets(self, consumer: Consumer, partitions: list[TopicPartition]
                           ) -> list[TopicPartition]:
        """The group's committed offsets of ``partitions`` (stable: read_committed waits
        for a pending transactional commit). Asked of the worker's consumer, then, after a
        timeout, of a fresh client: after a broker restart librdkafka may keep a stale
        route to the group coordinator, and every call of the old client timed out for
        minutes (librdkafka #5511; seen in tests/faults/test_broker_restart.py)."""
        deadline = time.monotonic() + 5 * KAFKA_TIMEOUT_S
        client, fresh = consumer, None
        try:
            while True:
                try:
                    found: list[TopicPartition] = client.committed(partitions,
                                                                   TXN_CALL_TIMEOUT_S)
                    return found
                except KafkaException as exc:
                    if time.monotonic() > deadline:
                        raise
                    log.info("waiting for the committed offsets: %s; asking a new client",
                             exc.args[0].str())
                # A new client each time: one made while the broker was still coming back
                # timed out for minutes as well (CI of 1fd8af9), as if it had cached the
                # same stale route.
                if fresh is not None:
                    fresh.close()
                client = fresh = Consumer(self._offsets_reader_config())
        finally:
            if fresh is not None:
                fresh.close()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget({tp.partition for tp in partitions}, "revoked")

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget({tp.partition for tp in partitions}, "lost")

    def _forget(self, partitions: set[int], how: str) -> None:
        """Drop what this worker held of partitions it no longer owns (the local store
        keeps their data with its changelog offsets, for a later restore of the tail)."""
        self._ready = False
        self._rebalances += 1
        self.processor.drop_partitions(partitions)
        self.aligner.revoke(partitions)
        self._assigned -= partitions
        self.metrics.owned_partitions = [
            p for p in self.metrics.owned_partitions if p not in partitions]
        self._restoring -= partitions
        self._paused = {tp for tp in self._paused if tp[1] not in partitions}
        for held in (self._committed, self._next, self._ends):
            for key in [k for k in held if k[1] in partitions]:
                del held[key]
        if partitions:
            log.info("partitions %s %s", sorted(partitions), how)

    # -- the loop ----------------------------------------------------------------------

    def _step(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        if self._restoring:
            self._restore_assigned()
        limit = self.settings.worker_batch_max
        self._intake_fresh(lambda: consumer.consume(limit, 0))
        now = time.monotonic()
        batch = self.aligner.take(limit, now, self._lagging)
        if not batch:
            wait = WAITING_POLL_S if self.aligner.waiting() else IDLE_POLL_S
            wait = max(0.0, min(wait, self._heartbeat_due - now))
            self._intake_fresh(lambda: drain(consumer, limit, wait))
            batch = self.aligner.take(limit, time.monotonic(), self._lagging)
        if self._fatal is not None:
            raise self._fatal
        self._resume_drained()
        if batch or time.monotonic() >= self._heartbeat_due:
            self._run_batch(batch)
        if time.monotonic() >= self._gauges_due:
            self._refresh_gauges()

    def _intake_fresh(self, consume: Callable[[], list[Message]]) -> None:
        """Queue what ``consume`` returns, unless the assignment changed during the call:
        then its messages were fetched for the old assignment (the new partitions are
        paused until restored, so none is new), and queued they would be applied twice
        once the partitions are read again from their committed offsets."""
        rebalances = self._rebalances
        messages = consume()
        if self._rebalances == rebalances:
            self._intake(messages)

    def _intake(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        now_ms = int(time.time() * 1000)
        aligner = self.aligner
        base = self._base
        for msg in messages:
            error = msg.error()
            topic = str(msg.topic())
            partition = int(msg.partition() or 0)
            if error is not None:
                self._consumer_error(error, topic, partition)
                continue
            offset = int(msg.offset() or 0)
            self._next[(topic, partition)] = offset + 1
            rec = decode_incoming(base[topic], partition, offset, msg.key(), msg.value(), now_ms)
            if aligner.add(rec) and aligner.over_limit(rec.topic, partition) \
                    and (topic, partition) not in self._paused:
                assert self._consumer is not None
                self._consumer.pause([TopicPartition(topic, partition)])
                self._paused.add((topic, partition))

    def _consumer_error(self, error: KafkaError, topic: str, partition: int) -> None:
        code = error.code()
        if code == KafkaError._PARTITION_EOF:
            self.aligner.mark_end(self._base.get(topic, topic), partition)
        elif code == KafkaError._AUTO_OFFSET_RESET:
            # The committed offset is gone (retention deleted it): those events can no
            # longer be read. Said loudly, then the partition goes on from its start.
            log.error("%s[%d]: the committed offset is out of range (%s); the events before "
                      "the partition's earliest offset were deleted by retention and are "
                      "not counted; going on from the earliest offset", topic, partition,
                      error.str())
            assert self._consumer is not None
            self._consumer.seek(TopicPartition(topic, partition, OFFSET_BEGINNING))
        elif error.fatal():
            self._fatal = WorkerFatal(f"fatal consumer error: {error.str()}")
        else:
            log.warning("consumer: %s[%d]: %s", topic, partition, error.str())

    def _lagging(self, topic: str, partition: int) -> bool:
        """The broker holds records of (topic, partition) not yet handed to the worker."""
        key = (self.settings.topic(topic), partition)
        return self._ends.get(key, 0) > self._next.get(key, 0)

    def _resume_drained(self) -> None:
        drained = [tp for tp in self._paused if self.aligner.drained(self._base[tp[0]], tp[1])]
        if drained:
            assert self._consumer is not None
            self._consumer.resume([TopicPartition(t, p) for t, p in drained])
            self._paused.difference_update(drained)

    # -- one batch, one transaction ----------------------------------------------------

    def _run_batch(self, batch: list[Any]) -> None:
        result = self.processor.process(batch)
        outputs = result.outputs
        if time.monotonic() >= self._heartbeat_due:
            outputs.append(self._heartbeat())
        offsets = [TopicPartition(self.settings.topic(t), p, offset)
                   for (t, p), offset in result.offsets.items()]
        try:
            self._transact(outputs, offsets)
        except TransactionAborted:
            self.processor.abort()
            self.metrics.transactions_aborted += 1
            self._rewind()
            return
        except ProducerFailed as failed:
            self.processor.abort()
            self.metrics.transactions_aborted += 1
            self._restart_producer(failed.error)
            return
        self._write_committed(result)
        for tp in offsets:
            self._committed[(tp.topic, tp.partition)] = tp.offset
        self.metrics.add(result.counts)
        if result.events:
            self.metrics.batches += 1
        if result.fenced:
            self._wipe_and_restore(result.fenced)

    def _heartbeat(self) -> Output:
        """The check API measures staleness from the newest record or heartbeat it saw."""
        self._heartbeat_seq += 1
        self._heartbeat_due = time.monotonic() + HEARTBEAT_INTERVAL_S
        key = HEARTBEAT_KEY_PREFIX + self.instance.encode()
        record = heartbeat_record(self.instance, self._heartbeat_seq, int(time.time() * 1000))
        return Output("quota.state", partition_for(key, self._partitions), key,
                      encode_record("quota.state", record))

    def _transact(self, outputs: list[Output], offsets: list[TopicPartition]) -> None:
        producer = self._producer
        consumer = self._consumer
        assert producer is not None and consumer is not None
        self._delivered = {}
        last = {(out.topic, out.partition): i for i, out in enumerate(outputs)
                if out.topic in CHANGELOGS}
        report = {i for i in last.values()}
        try:
            self._transaction_began = time.monotonic()
            producer.begin_transaction()
            for i, out in enumerate(outputs):
                self._produce(producer, out, self._on_changelog if i in report else None)
            if offsets:
                # fresh group metadata each time: a stale generation's commit is fenced
                self._send_offsets(producer, offsets, consumer.consumer_group_metadata())
        except KafkaException as exc:
            self._abort(exc)
        self._commit()

    def _send_offsets(self, producer: Producer, offsets: list[TopicPartition],
                      group: Any) -> None:
        """``send_offsets_to_transaction``, with a deadline of our own: librdkafka's call can
        block past its timeout when the group coordinator went away (librdkafka #5456,
        #5511; seen here after a broker restart, for 70 s). Past the deadline the producer
        is given up as failed (a new one under the same transactional.id fences it)."""
        outcome: list[BaseException | None] = []

        def call() -> None:
            try:
                producer.send_offsets_to_transaction(offsets, group, TXN_CALL_TIMEOUT_S)
                outcome.append(None)
            except BaseException as exc:  # handed to the caller's thread
                outcome.append(exc)

        thread = threading.Thread(target=call, name="send-offsets", daemon=True)
        thread.start()
        thread.join(TXN_CALL_TIMEOUT_S + 5)
        if not outcome:
            raise ProducerFailed(KafkaError(KafkaError._TIMED_OUT,
                                            "send_offsets_to_transaction did not return"))
        failed = outcome[0]
        if (isinstance(failed, KafkaException)
                and failed.args[0].code() == KafkaError._TIMED_OUT):
            # The coordinator did not answer in time: librdkafka may keep a stale route to
            # it, and then the next transaction's call hangs (after every broker restart
            # here, 20-70 s). A new producer starts with a fresh route.
            raise ProducerFailed(failed.args[0])
        if failed is not None:
            raise failed

    def _produce(self, producer: Producer, out: Output,
                 on_delivery: Callable[[KafkaError | None, Message], None] | None) -> None:
        topic = self.settings.topic(out.topic)
        while True:
            try:
                if on_delivery is None:
                    producer.produce(topic, out.value, out.key, partition=out.partition)
                else:
                    producer.produce(topic, out.value, out.key, partition=out.partition,
                                     on_delivery=on_delivery)
                return
            except BufferError:
                producer.poll(0.05)  # the local queue is full: let it drain
            except KafkaException as exc:
                error = exc.args[0]
                if error.txn_requires_abort() or error.retriable():
                    raise
                # e.g. a record over the size limit: retrying would loop forever
                raise WorkerFatal(
                    f"cannot produce a {len(out.value or b'')}-byte record to {topic} "
                    f"[{out.partition}]: {error.str()}") from None

    def _on_changelog(self, error: KafkaError | None, msg: Message) -> None:
        if error is None:
            key = (self._base[str(msg.topic())], int(msg.partition() or 0))
            self._delivered[key] = max(self._delivered.get(key, 0), int(msg.offset() or 0) + 1)

    def _commit(self) -> None:
        producer = self._producer
        assert producer is not None
        refused = self._end_transaction(producer.commit_transaction, "committing")
        if refused is not None:
            self._abort(refused)

    def _end_transaction(self, end: Callable[[float], None], doing: str
                         ) -> KafkaException | None:
        """Commit or abort the open transaction (``end``); the error that refused it, if
        any. A retriable one is retried: the outcome is unknown (a timed-out commit may
        still complete), so nothing is rewound meanwhile. Past ``TXN_OUTCOME_DEADLINE_S``
        the producer is given up (``ProducerFailed``): a new one settles the transaction."""
        deadline = time.monotonic() + TXN_OUTCOME_DEADLINE_S
        while True:
            try:
                end(TXN_CALL_TIMEOUT_S)
                return None
            except KafkaException as exc:
                error = exc.args[0]
                if not error.retriable() or error.txn_requires_abort():
                    return exc
                if time.monotonic() > deadline:
                    raise ProducerFailed(KafkaError(
                        KafkaError._TIMED_OUT, f"{doing} the transaction did not complete in "
                        f"{TXN_OUTCOME_DEADLINE_S:.0f} s (last: {error.str()})")) from None
                log.warning("%s the transaction: %s; retrying", doing, error.str())

    def _abort(self, exc: KafkaException) -> None:
        error = exc.args[0]
        if error.fatal():
            raise ProducerFailed(error) from None
        log.warning("transaction aborted%s: %s; the batch is read again from the last "
                    "committed offsets", self._why_aborted(error), error.str())
        producer = self._producer
        assert producer is not None
        refused = self._end_transaction(producer.abort_transaction, "aborting")
        if refused is not None:
            if refused.args[0].fatal():
                raise ProducerFailed(refused.args[0]) from None
            raise refused
        raise TransactionAborted(error.str())

    def _fatal_text(self, error: KafkaError) -> str:
        if error.code() in _FENCING:
            return (f"this worker ({self.instance}) was fenced twice within "
                    f"{FENCED_AGAIN_S:.0f} s ({error.str()}): another worker runs with the same "
                    "METER_WORKER_INSTANCE (or data directory name); give each worker its own")
        return f"fatal Kafka error in a transaction: {error.str()}"

    def _why_aborted(self, error: KafkaError) -> str:
        """Why the open transaction ends, for the log: fenced, or not said."""
        if error.code() in _FENCING:
            return " (fenced: another owner took over)"
        if (time.monotonic() - self._transaction_began
                > self.settings.worker_transaction_timeout_ms / 1000):
            # the coordinator aborted it and bumped the epoch: whatever error surfaced,
            # nothing of it commits, and its partitions may have moved on
            return (" (fenced: it outlived the transaction timeout, so the coordinator "
                    "aborted it; this worker was paused or stalled, or the broker was away)")
        return ""

    def _restart_producer(self, error: KafkaError) -> None:
        """After a fatal producer error: a new producer under the same transactional.id
        (its ``init_transactions`` settles the old one's transaction, whatever its
        outcome), then every owned partition is restored from its changelogs and read
        again from its committed offsets, as fetched from Kafka."""
        fenced = error.code() in _FENCING
        if fenced:
            if time.monotonic() - self._fenced_at < FENCED_AGAIN_S:
                raise WorkerFatal(self._fatal_text(error))
            self._fenced_at = time.monotonic()
        log.warning("the transactional producer failed (%s)%s; starting a new one, then "
                    "restoring partitions %s", error.str(), self._why_aborted(error),
                    sorted(self._assigned))
        self._producer = None
        self._producer = self._make_producer()
        self._read_again(self._assigned, ask_kafka=True)

    def _read_again(self, partitions: set[int], *, ask_kafka: bool) -> None:
        """Forget what is held in memory of ``partitions``, restore them from their
        changelogs and read their inputs again from the committed offsets (as last
        committed by this worker, or fetched from Kafka when the outcome is unknown)."""
        consumer = self._consumer
        assert consumer is not None
        tps = [TopicPartition(t, p) for t in self._inputs for p in sorted(partitions)]
        if ask_kafka and tps:
            for tp in self._committed_offsets(consumer, tps):
                self._committed[(tp.topic, tp.partition)] = (
                    tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
        self.processor.drop_partitions(partitions)
        self.aligner.revoke(partitions)
        self.aligner.assign(partitions)
        targets = [TopicPartition(tp.topic, tp.partition,
                                  self._committed.get((tp.topic, tp.partition), OFFSET_BEGINNING))
                   for tp in tps]
        if targets:
            consumer.pause(targets)
            for tp in targets:
                consumer.seek(tp)
                self._next[(tp.topic, tp.partition)] = max(0, tp.offset)
        self._paused = {tp for tp in self._paused if tp[1] not in partitions}
        self._restoring |= partitions

    def _rewind(self) -> None:
        """After an abort: read the owned partitions again from the last committed offsets."""
        consumer = self._consumer
        assert consumer is not None
        for (topic, partition), offset in self._committed.items():
            if partition in self._restoring:
                continue  # still paused at its committed offset
            self._next[(topic, partition)] = max(0, offset)
            try:
                consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:  # revoked meanwhile: its next owner reads it
                log.info("not sought back: %s[%d]: %s", topic, partition, exc.args[0].str())
        self.aligner.clear()
        if self._paused:
            consumer.resume([TopicPartition(t, p) for t, p in self._paused])
            self._paused.clear()

    def _write_committed(self, result: BatchResult) -> None:
        batch = self.store.batch()
        self.processor.write_committed(result, batch)
        for (changelog, partition), offset in self._delivered.items():
            self.store.set_changelog_offset(batch, partition, changelog, offset)
        self.store.write(batch)

    # -- restore -----------------------------------------------------------------------

    def _restore_assigned(self) -> None:
        """Bring the local store of newly assigned partitions up to their changelogs'
        end, then let their inputs flow."""
        started = time.monotonic()
        parts = sorted(self._restoring)
        assert self._restore is not None
        wiped = self._restore.wiped
        try:
            records = self._restore.restore(parts)
        except RestoreFailed as exc:
            raise WorkerFatal(f"restoring partitions {parts}: {exc}") from None
        self.metrics.restored_records += records
        self.metrics.partitions_wiped += self._restore.wiped - wiped
        consumer = self._consumer
        assert consumer is not None
        inputs = [TopicPartition(t, p) for t in self._inputs for p in parts]
        for tp in inputs:  # so alignment knows from the start which topics have more
            end = consumer.get_watermark_offsets(tp, KAFKA_TIMEOUT_S)[1]
            self._ends[(tp.topic, tp.partition)] = end
        consumer.resume(inputs)
        self._restoring.clear()
        self._ready = True
        log.info("restored %d changelog records of partitions %s in %.1f s", records, parts,
                 time.monotonic() - started)
        log.info("worker %s owns partitions %s of %d input topics", self.instance,
                 sorted(self._assigned), len(INPUT_TOPICS))
        self.metrics.owned_partitions = sorted(self._assigned)

    def _wipe_and_restore(self, partitions: set[int]) -> None:
        """The offset fence saw the store ahead of Kafka: drop those partitions' local
        state and restore it whole from the changelogs (the truth)."""
        log.error("partitions %s: the local store disagreed with the committed offsets; "
                  "wiping and restoring them from the changelogs", sorted(partitions))
        for p in partitions:
            self.store.wipe(p)
            self.metrics.partitions_wiped += 1
        self._read_again(partitions, ask_kafka=False)

    # -- gauges ------------------------------------------------------------------------

    def _refresh_gauges(self) -> None:
        now = time.monotonic()
        self._gauges_due = now + GAUGE_INTERVAL_S
        self._heap.tick(now)
        self.metrics.workspaces_cached = self.processor.workspaces_cached()
        self.metrics.store_keys = self.store.estimated_keys()
        self.metrics.queued = self.aligner.total_queued()
        self.metrics.alignment_timeouts = self.aligner.timeouts


def run_worker(settings: Settings) -> None:
    """``meter worker``: run until SIGTERM or SIGINT (a batch in progress commits first)."""
    worker = Worker(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    worker.run()
