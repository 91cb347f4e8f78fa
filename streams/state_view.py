"""An in-memory view of the compacted ``quota.state`` topic, kept current by a thread.

The check API answers from this view alone, so it scales out (every replica reads
the whole topic) and keeps answering while the workers rebalance. Staleness is
measured from the newest record or worker heartbeat seen, not from one
workspace's ``as_of``: an idle workspace is not stale.

Heartbeats are ``quota.state`` records with an empty ``workspace_id`` (which no
valid event can carry) and the worker's id in ``plan``, keyed
``HEARTBEAT_KEY_PREFIX + worker id``; workers send one every few seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from groundwork.kafka import TopicPart, TopicReader
from groundwork.settings import Settings
from schemas.codec import decode_record

log = logging.getLogger("meter.api.view")

HEARTBEAT_KEY_PREFIX = b"\x00heartbeat/"


def heartbeat_record(worker_id: str, seq: int, now_ms: int) -> dict[str, Any]:
    """The ``quota.state`` record a worker sends to say it is alive."""
    return {
        "workspace_id": "", "version": seq, "as_of": now_ms, "event_time": now_ms,
        "plan": worker_id, "cycle_anchor": None, "timezone": "UTC", "cycle_start": 0,
        "cycle_ends_at": 0, "machine_ids": [], "quotas": [], "api_minute": None,
    }


class QuotaStateView:
    """Latest ``quota.state`` record per workspace, read from the beginning of the topic."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._records: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self.newest_seen_ms = 0  # newest as_of of any record or heartbeat
        self.records_read = 0
        self._thread = threading.Thread(target=self._run, name="quota-state-view", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def ready(self) -> bool:
        """True once the view has read every partition to its end (last stable offset)."""
        return self._caught_up.is_set()

    def wait_ready(self, timeout_s: float) -> bool:
        return self._caught_up.wait(timeout_s)

    def get(self, workspace_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._records.get(workspace_id)

    def __len__(self) -> int:
        return len(self._records)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Fold one ``quota.state`` message into the view (tests call it directly)."""
        if value is None:  # tombstone: the workspace was deleted
            if key and not key.startswith(HEARTBEAT_KEY_PREFIX):
                with self._lock:
                    self._records.pop(key.decode(errors="replace"), None)
            return
        try:
            _, record = decode_record(value)
        except Exception as exc:  # a record we cannot read must not stop the view
            log.warning("skipping an unreadable quota.state record: %s", exc)
            return
        self.records_read += 1
        self.newest_seen_ms = max(self.newest_seen_ms, int(record["as_of"]))
        workspace = record["workspace_id"]
        if not workspace:  # heartbeat
            return
        with self._lock:
            held = self._records.get(workspace)
            if held is None or int(held["version"]) <= int(record["version"]):
                self._records[workspace] = record

    def _run(self) -> None:
        # read_committed (workers write quota.state in transactions); never committed:
        # every replica reads everything
        reader = TopicReader(self._settings, "meter-api-view")
        try:
            parts = self._wait_for_partitions(reader, self._settings.topic("quota.state"))
            reader.assign(parts)
            ends: dict[TopicPart, int] | None = None
            while not self._stop.is_set():
                for msg in reader.poll(1000, 0.2):
                    self.apply(msg.key(), msg.value())
                if self._caught_up.is_set():
                    continue
                # Ready once caught up with where the topic ended when reading began:
                # trailing markers and compaction gaps do not hold it back.
                if ends is None:
                    ends = self._ends(reader)
                if ends is not None and reader.caught_up(ends):
                    self._caught_up.set()
        finally:
            reader.close()

    def _wait_for_partitions(self, reader: TopicReader, topic: str) -> list[TopicPart]:
        """The topic's partitions, once it exists; empty if the view stopped first."""
        while not self._stop.is_set():
            try:
                return reader.partitions([topic], timeout_s=5)
            except Exception as exc:
                log.warning("waiting for topic %s: %s", topic, exc)
                time.sleep(1)
        return []

    @staticmethod
    def _ends(reader: TopicReader) -> dict[TopicPart, int] | None:
        """Where the partitions end now; None (ask again) while the broker cannot say."""
        try:
            return reader.ends()
        except Exception as exc:
            log.warning("reading where quota.state ends: %s", exc)
            return None
