"""Real Kafka clients read what a logq Producer compressed: librdkafka (confluent-kafka) and
kafka-python consume each codec's batches from ``logq serve`` (an in-process ``logq.Server``
on a free loopback port). Batches of 200 KB of records span several LZ4 (64 KiB) and
snappy (32 KiB) blocks."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from logq import Producer, Server
from logq.codec.compression import CODECS, missing_library

from tests.support.clients import make_topic

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")

NAMES = ["gzip", "snappy", "lz4", "zstd"]
COUNT = 3000


def _values() -> list[bytes]:
    return [b'{"event": %d, "msg": "request handled, cache hit"}' % i * 3 for i in range(COUNT)]


@pytest.fixture
def bootstrap(root: str) -> Iterator[str]:
    with Server(root, port=0) as s:
        yield f"127.0.0.1:{s.port}"


def _produce(root: str, name: str) -> list[bytes]:
    if missing_library(CODECS[name]):
        pytest.skip("cramjam is not installed")
    make_topic(root, name)
    vals = _values()
    with Producer(root, compression_type=name, batch_size=200_000) as prod:
        for v in vals:
            prod.send(name, v, key=b"k")
    return vals


@pytest.mark.parametrize("name", NAMES)
def test_librdkafka_consumes_the_batches_a_logq_producer_compressed(root: str, bootstrap: str, name: str) -> None:
    want = _produce(root, name)
    c = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "g", "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    )
    try:
        c.assign([confluent_kafka.TopicPartition(name, 0, 0)])
        got: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(got) < COUNT and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            assert m.error() is None, m.error()
            got.append(m.value())
    finally:
        c.close()
    assert got == want


@pytest.mark.parametrize("name", NAMES)
def test_kafka_python_consumes_the_batches_a_logq_producer_compressed(root: str, bootstrap: str, name: str) -> None:
    if name != "gzip" and not getattr(kafka.codec, f"has_{name}")():
        pytest.skip(f"kafka-python's {name} library is not installed")
    want = _produce(root, name)
    c = kafka.KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        c.assign([kafka.TopicPartition(name, 0)])
        c.seek_to_beginning()
        got: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(got) < COUNT and time.monotonic() < deadline:
            for records in c.poll(timeout_ms=1000).values():
                got.extend(r.value for r in records)
    finally:
        c.close()
    assert got == want
