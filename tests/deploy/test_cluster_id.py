"""KRaft cluster ids: never a leading '-', which ``kafka-storage format -t`` would take
for an option (about 1 start in 64 failed that way before)."""

from __future__ import annotations

import base64
import re
import uuid

import pytest

from deploy import kafka_local

URL_SAFE_22 = re.compile(r"[A-Za-z0-9_-]{22}")


def test_cluster_ids_never_start_with_a_dash_and_encode_16_bytes() -> None:
    ids = [kafka_local.new_cluster_id() for _ in range(10_000)]
    # 10,000 draws hold about 156 ids that would start with '-' (1 in 64): none is left.
    assert not [i for i in ids if i.startswith("-")]
    for cluster_id in ids:
        assert URL_SAFE_22.fullmatch(cluster_id), cluster_id
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
    assert len(set(ids)) == len(ids)


def test_a_draw_that_would_start_with_a_dash_is_drawn_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A first byte of 0xF8-0xFB encodes to a leading '-' (base64 index 62).
    draws = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x01" * 16)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    assert kafka_local.new_cluster_id() == base64.urlsafe_b64encode(
        b"\x01" * 16).rstrip(b"=").decode()
