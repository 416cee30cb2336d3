"""Fuzz against a live server: random frames and mutated valid requests (ApiVersions,
Metadata, Produce, Fetch, ListOffsets). Each is answered or closes its connection; the
server stays up, and nothing is written (auto-create is off and the produce targets a topic
that does not exist, so any write would be a bug)."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logq import Server
from logq.codec.batch import encode_batch
from logq.server.framing import frame

from tests.server import wire


def _mod(key: int, version: int) -> Any:
    return __import__(wire.request_class(key, version).__module__, fromlist=["x"])


def _valid_payloads() -> list[bytes]:
    batch = bytes(
        encode_batch([(b"k", b"v", [("h", b"1")], 1000)], 0, producer_id=3, producer_epoch=0, base_sequence=0)
    )
    pm, fm, lm, mm = _mod(0, 7), _mod(1, 11), _mod(2, 3), _mod(3, 5)
    produce = pm.ProduceRequest(
        transactional_id=None,
        acks=1,
        timeout=datetime.timedelta(seconds=1),
        topic_data=(
            pm.TopicProduceData(name="fuzz", partition_data=(pm.PartitionProduceData(index=0, records=batch),)),
        ),
    )
    fetch = fm.FetchRequest(
        max_wait=datetime.timedelta(milliseconds=10),
        min_bytes=1,
        topics=(
            fm.FetchTopic(
                topic="fuzz", partitions=(fm.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1024),)
            ),
        ),
        forgotten_topics_data=(),
    )
    offsets = lm.ListOffsetsRequest(
        replica_id=-1,
        isolation_level=0,
        topics=(
            lm.ListOffsetsTopic(name="fuzz", partitions=(lm.ListOffsetsPartition(partition_index=0, timestamp=-1),)),
        ),
    )
    metadata = mm.MetadataRequest(topics=(mm.MetadataRequestTopic(name="fuzz"),), allow_auto_topic_creation=True)
    av = _mod(18, 3).ApiVersionsRequest(client_software_name="f", client_software_version="1")
    reqs = [(0, 7, produce), (1, 11, fetch), (2, 3, offsets), (3, 5, metadata), (18, 3, av)]
    return [wire.request_frame(k, v, 1, r)[4:] for k, v, r in reqs]


VALID = _valid_payloads()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    root = str(tmp_path_factory.mktemp("fuzz") / "data")
    with Server(root, port=0, auto_create_topics=False, max_fetch_wait_ms=50) as srv:
        yield srv, root


def _exchange(port: int, payload: bytes) -> None:
    with wire.connect(port, timeout_s=10) as s:
        s.sendall(frame(payload))
        try:
            wire.read_frame(s)  # an answer (an error code inside is fine)
        except ConnectionError:
            pass  # closed by the server
        # a TimeoutError (neither answered nor closed) fails the test


def _nothing_written(root: str) -> None:
    entries = [e for e in os.listdir(root) if not e.startswith("__")]
    assert entries == [], entries


def test_the_valid_requests_are_answered(live: tuple[Server, str]) -> None:
    for payload in VALID:
        _exchange(live[0].port, payload)
    _nothing_written(live[1])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data())
def test_mutated_valid_requests_are_answered_or_closed_and_write_nothing(
    live: tuple[Server, str], data: st.DataObject
) -> None:
    payload = bytearray(data.draw(st.sampled_from(VALID)))
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(payload) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            payload[pos] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del payload[pos:]
        else:
            payload[pos:pos] = data.draw(st.binary(min_size=1, max_size=6))
        if not payload:
            break
    _exchange(live[0].port, bytes(payload))
    _nothing_written(live[1])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(max_size=200))
def test_random_frames_are_answered_or_closed(live: tuple[Server, str], payload: bytes) -> None:
    _exchange(live[0].port, payload)
    _nothing_written(live[1])


def test_the_server_is_still_up_after_the_fuzzing(live: tuple[Server, str]) -> None:
    _exchange(live[0].port, VALID[-1])
