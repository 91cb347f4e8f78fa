"""The stream's S6 id store (streams/idstore.py) on a real local RocksDB store: the same
answers as the in-memory windows, ids out of the workspace's state, expiry by bucket,
and a restore from its changelog records."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.events import TokensEvent
from streams.core.dedup import K_COMMAND, K_TOKENS, WINDOW_MS, IdWindows
from streams.core.meter import WorkspaceMeter
from streams.core.state_codec import encode_meter
from streams.idstore import BUCKET_MS, IdChanges, IdStore, StoredIds
from streams.localstore import ID_TIME, LocalStore, partition_prefix

T0 = 1_772_532_000_000
WS = b"w1"


def tokens(at: int, event_id: str) -> TokensEvent:
    return TokensEvent(event_id, "w1", at, "kim", None, None, "openai", "gpt-4o", 1, 0, "chat")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    s = LocalStore(tmp_path / "store")
    yield s
    s.close()


@pytest.fixture
def ids(store: LocalStore) -> IdStore:
    """The worker's S6 id store on the local store."""
    return IdStore(store)


@pytest.fixture
def stored(ids: IdStore) -> StoredIds:
    """Workspace WS's ids, on partition 0."""
    return ids.of(0, WS)


def commit(store: LocalStore, ids: IdStore, seq: int) -> IdChanges:
    """What the worker does after a transaction commits."""
    changes = ids.take_changes({WS: seq})
    batch = store.batch()
    ids.write(changes, batch)
    store.write(batch)
    return changes


def stored_ids(store: LocalStore) -> int:
    prefix = partition_prefix(ID_TIME, 0)
    return sum(1 for _ in store.scan(prefix, partition_prefix(ID_TIME, 1)))


def test_answers_equal_the_in_memory_windows_over_random_batches(
        store: LocalStore, ids: IdStore, stored: StoredIds) -> None:
    rng = random.Random(5)
    memory = IdWindows()
    pool = [f"e{i}" for i in range(300)]
    t = T0
    for batch in range(60):
        for _ in range(50):
            kind = rng.choice((K_TOKENS, K_COMMAND))
            event_id = rng.choice(pool)
            # mostly forward in time, sometimes late, sometimes a jump past the window
            t += rng.choice((1000, 60_000, 3_600_000, -7_200_000, WINDOW_MS // 3))
            occurred = t - rng.randrange(0, 2 * WINDOW_MS) if rng.random() < 0.1 else t
            assert stored.seen(kind, event_id) == memory.seen(kind, event_id), (batch, event_id)
            if not memory.seen(kind, event_id):
                stored.remember(kind, event_id, occurred)
                memory.remember(kind, event_id, occurred)
        assert stored.latest_time() == memory.latest_time()
        commit(store, ids, seq=batch + 1)


def test_ids_stay_out_of_the_workspace_state_and_expire_a_bucket_at_a_time(
    store: LocalStore, ids: IdStore
) -> None:
    meter = WorkspaceMeter("w1", ids=ids.of(0, WS))
    start = T0 // BUCKET_MS * BUCKET_MS
    step = BUCKET_MS // 2
    per_step = 40_000
    sizes = []
    for k in range(8):  # 320,000 ids over 24 h of event time, two steps per bucket
        for i in range(per_step):
            meter.apply(tokens(start + k * step + i, f"s{k}-{i}"))
        commit(store, ids, seq=k + 1)
        sizes.append(len(encode_meter(meter)))
    assert stored_ids(store) == 8 * per_step
    assert max(sizes) - min(sizes) < 64  # the state does not grow with the ids
    assert len(meter.ids) == 0  # nothing held in memory either
    # a bucket later than a day, the first bucket is wholly outside the window: dropped
    meter.apply(tokens(start + WINDOW_MS + BUCKET_MS, "next-day"))
    changes = commit(store, ids, seq=9)
    assert [r for r in changes.records if r[2] is None], "no tombstone for the expired bucket"
    assert stored_ids(store) == 6 * per_step + 1
    assert not meter.ids.seen(K_TOKENS, "s1-5") and meter.ids.seen(K_TOKENS, "s2-5")


def test_an_id_exactly_24_hours_behind_is_remembered_and_its_bucket_kept(
    store: LocalStore, ids: IdStore, stored: StoredIds
) -> None:
    stored.remember(K_TOKENS, "a", T0)
    commit(store, ids, 1)
    stored.remember(K_TOKENS, "b", T0 + WINDOW_MS)
    commit(store, ids, 2)
    assert stored.seen(K_TOKENS, "a")
    stored.remember(K_TOKENS, "c", T0 + WINDOW_MS + 1)
    commit(store, ids, 3)
    assert not stored.seen(K_TOKENS, "a")


def test_an_id_remembered_again_after_it_expired_survives_its_old_bucket(
    store: LocalStore, ids: IdStore, stored: StoredIds
) -> None:
    stored.remember(K_TOKENS, "again", T0)
    commit(store, ids, 1)
    later = T0 + WINDOW_MS + 2 * BUCKET_MS
    stored.remember(K_TOKENS, "newer", later)  # its bucket expires in this batch ...
    assert not stored.seen(K_TOKENS, "again")
    stored.remember(K_TOKENS, "again", later)  # ... and it counts again (S6)
    commit(store, ids, 2)
    assert stored.seen(K_TOKENS, "again")


def test_the_changelog_records_restore_the_same_answers(
        tmp_path: Path, store: LocalStore, ids: IdStore, stored: StoredIds) -> None:
    log: list[tuple[bytes, bytes | None]] = []
    for step in range(40):
        t = T0 + step * 3 * BUCKET_MS  # 5 days: early buckets expire on the way
        stored.remember(K_COMMAND, f"c{step}", t)
        stored.remember(K_COMMAND, f"d{step}", t - BUCKET_MS)
        log += [(key, value) for _, key, value in commit(store, ids, step + 1).records]
    restored_store = LocalStore(tmp_path / "restored")
    restored = IdStore(restored_store)
    for key, value in log:  # what the worker's restore does with each record
        batch = restored_store.batch()
        if value is None:
            restored.delete_set_bucket(batch, 0, key)
        else:
            restored.put_set(batch, 0, key, value)
        restored_store.write(batch)
    twin = restored.of(0, WS, stored.to_state())
    for step in range(40):
        for event_id in (f"c{step}", f"d{step}"):
            assert twin.seen(K_COMMAND, event_id) == stored.seen(K_COMMAND, event_id)
    assert stored_ids(restored_store) == stored_ids(store)
    restored_store.close()


def test_a_batch_that_aborts_leaves_nothing_behind(
        store: LocalStore, ids: IdStore, stored: StoredIds) -> None:
    stored.remember(K_TOKENS, "kept", T0)
    commit(store, ids, 1)
    stored.remember(K_TOKENS, "lost", T0 + 1)
    assert stored.seen(K_TOKENS, "lost")
    ids.discard()
    assert not stored.seen(K_TOKENS, "lost") and stored.seen(K_TOKENS, "kept")
    assert isinstance(stored, StoredIds)
