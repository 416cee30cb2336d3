"""Idempotent producers: the pure per-partition rules, then over the wire against a server,
including a server restart (the state is rebuilt from the log's batch headers) and producer
ids that never repeat across restarts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from logq import Consumer, Server
from logq.codec.batch import encode_batch
from logq.server.idempotence import (
    INVALID_PRODUCER_EPOCH,
    OUT_OF_ORDER_SEQUENCE_NUMBER,
    PartitionProducers,
    ProducerIds,
)

from tests.server import wire


def test_a_retry_of_one_of_the_last_five_batches_is_answered_with_its_first_offsets() -> None:
    st = PartitionProducers()
    for i in range(7):
        assert st.check(9, 0, i * 10, 9).duplicate_of is None
        st.observe(9, 0, i * 10, 9, 100 + i * 10)
    for i in range(2, 7):
        assert st.check(9, 0, i * 10, 9).duplicate_of == 100 + i * 10
    assert st.check(9, 0, 0, 9).error == OUT_OF_ORDER_SEQUENCE_NUMBER  # older than the last 5


def test_a_sequence_gap_is_out_of_order_and_an_older_epoch_is_fenced() -> None:
    st = PartitionProducers()
    st.observe(1, 3, 0, 4, 0)
    assert st.check(1, 3, 6, 0).error == OUT_OF_ORDER_SEQUENCE_NUMBER
    assert st.check(1, 3, 5, 0).error == 0
    assert st.check(1, 2, 5, 0).error == INVALID_PRODUCER_EPOCH
    assert st.check(1, 4, 0, 0).error == 0  # a new epoch starts at 0
    assert st.check(1, 4, 7, 0).error == OUT_OF_ORDER_SEQUENCE_NUMBER


def test_sequences_wrap_at_2_pow_31() -> None:
    st = PartitionProducers()
    st.observe(1, 0, 2**31 - 2, 1, 0)  # covers 2**31-2 and 2**31-1
    assert st.check(1, 0, 0, 3).error == 0


def test_non_idempotent_and_unknown_producers_are_appended() -> None:
    st = PartitionProducers()
    assert st.check(-1, -1, -1, 0).error == 0
    assert st.check(5, 0, 42, 0).error == 0  # no state (older than the rebuilt tail)


def test_producer_ids_never_repeat_across_restarts(tmp_path: Any) -> None:
    seen = set()
    for _ in range(3):
        ids = ProducerIds(str(tmp_path))
        for _ in range(5):
            pid = ids.next_id()
            assert pid not in seen
            seen.add(pid)


def _produce(port: int, topic: str, batch: bytes, corr: int = 1, partition: int = 0) -> tuple[int, int]:
    m = wire.request_class(0, 7)
    mod = __import__(m.__module__, fromlist=["x"])
    req = m(
        transactional_id=None,
        acks=-1,
        timeout=__import__("datetime").timedelta(seconds=5),
        topic_data=(
            mod.TopicProduceData(
                name=topic, partition_data=(mod.PartitionProduceData(index=partition, records=batch),)
            ),
        ),
    )
    with wire.connect(port) as s:
        s.sendall(wire.request_frame(0, 7, corr, req))
        _, resp = wire.decode_response(0, 7, wire.read_frame(s))
    part = resp.responses[0].partition_responses[0]
    return int(part.error_code), part.base_offset


def _batch(pid: int, epoch: int, seq: int, n: int, tag: str) -> bytes:
    recs = [(None, f"{tag}{i}".encode(), None, 1000) for i in range(n)]
    return bytes(encode_batch(recs, 0, producer_id=pid, producer_epoch=epoch, base_sequence=seq))


def test_over_the_wire_a_retried_batch_is_not_appended_again_even_after_a_restart(root: str) -> None:
    with Server(root, port=0) as srv:
        _metadata(srv.port, "idem")
        assert _produce(srv.port, "idem", _batch(7, 0, 0, 3, "a")) == (0, 0)
        assert _produce(srv.port, "idem", _batch(7, 0, 3, 2, "b")) == (0, 3)
        assert _produce(srv.port, "idem", _batch(7, 0, 3, 2, "b")) == (0, 3)  # retry
        assert _produce(srv.port, "idem", _batch(7, 0, 9, 1, "c"))[0] == OUT_OF_ORDER_SEQUENCE_NUMBER
    with Server(root, port=0) as srv:  # state rebuilt from the log tail
        assert _produce(srv.port, "idem", _batch(7, 0, 0, 3, "a")) == (0, 0)
        assert _produce(srv.port, "idem", _batch(7, 0, 5, 1, "d")) == (0, 5)
        assert _produce(srv.port, "idem", _batch(7, 0, 5, 1, "d")) == (0, 5)
    with Consumer(root, "idem", group_id=None, auto_offset_reset="earliest") as c:
        values = [r.value for r in c.poll(timeout=5)]
    assert values == [b"a0", b"a1", b"a2", b"b0", b"b1", b"d0"]


def _metadata(port: int, topic: str) -> None:
    m = wire.request_class(3, 5)
    mod = __import__(m.__module__, fromlist=["x"])
    with wire.connect(port) as s:
        s.sendall(wire.request_frame(3, 5, 1, m(topics=(mod.MetadataRequestTopic(name=topic),))))
        wire.read_frame(s)


@pytest.mark.parametrize(
    ("records", "code"),
    [(b"", 2), (b"\x00" * 70, 2), (None, 2)],
)
def test_a_bad_batch_is_corrupt_message_and_writes_nothing(root: str, records: Any, code: int) -> None:
    with Server(root, port=0) as srv:
        _metadata(srv.port, "bad")
        assert _produce(srv.port, "bad", records)[0] == code
        assert _produce(srv.port, "nope-never-created", _batch(-1, -1, -1, 1, "x"))[0] == 3
        assert _produce(srv.port, "bad", _batch(-1, -1, -1, 1, "x")) == (0, 0)


def test_partitions_closed_past_max_open_partitions_keep_their_data_and_dedup_state(root: str) -> None:
    from logq import Admin

    with Admin(root) as a:
        a.create_topic("many", partitions=5)
    with Server(root, port=0, max_open_partitions=2) as srv:
        for p in range(5):
            assert _produce(srv.port, "many", _batch(11, 0, 0, 2, f"p{p}-"), partition=p) == (0, 0)
        for p in range(5):  # every partition was closed and reopened since: retries still deduplicated
            assert _produce(srv.port, "many", _batch(11, 0, 0, 2, f"p{p}-"), partition=p) == (0, 0)
            assert _produce(srv.port, "many", _batch(11, 0, 2, 1, f"q{p}-"), partition=p) == (0, 2)
        assert srv.stats()["open_logs"] <= 2
    with Consumer(root, "many", group_id=None, auto_offset_reset="earliest") as c:
        got = []
        while len(got) < 15:
            batch = c.poll(timeout=5)
            assert batch
            got += batch
    assert sorted(r.value for r in got) == sorted(
        v for p in range(5) for v in (f"p{p}-0".encode(), f"p{p}-1".encode(), f"q{p}-0".encode())
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["next", "retry", "gap"]), st.integers(0, 8), st.integers(1, 4)), max_size=40)
)
def test_the_dedup_rules_match_a_model_of_one_producer(ops: list[tuple[str, int, int]]) -> None:
    """Model: the broker knows every batch it appended; a retry of one of the last 5 is a
    duplicate (its first offset), of an older one or a gap is OUT_OF_ORDER_SEQUENCE_NUMBER."""
    st_ = PartitionProducers()
    sent: list[tuple[int, int, int]] = []  # (first seq, count, base offset) appended so far
    next_seq = next_offset = 0
    for op, back, n in ops:
        if op == "retry" and sent:
            first, count, base = sent[-1 - min(back, len(sent) - 1)]
            verdict = st_.check(1, 0, first, count - 1)
            if sent.index((first, count, base)) >= len(sent) - 5:
                assert verdict.duplicate_of == base
            else:
                assert verdict.error == OUT_OF_ORDER_SEQUENCE_NUMBER
            continue
        seq = next_seq + (back + 1 if op == "gap" else 0)
        verdict = st_.check(1, 0, seq, n - 1)
        if op == "gap" and sent:
            assert verdict.error == OUT_OF_ORDER_SEQUENCE_NUMBER
            continue
        assert verdict.error == 0 and verdict.duplicate_of is None
        st_.observe(1, 0, seq, n - 1, next_offset)
        sent.append((seq, n, next_offset))
        next_seq, next_offset = seq + n, next_offset + n
