"""Real Kafka clients against logq.Server: kafka-python, confluent-kafka (librdkafka) and
aiokafka produce keyed records with headers under every codec, idempotence on, consume from
the beginning, seek, look offsets up by time, create and delete topics; records cross between
the network and embedded logq producers and consumers in both directions."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from logq import Admin, Consumer, Producer, Server

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
N = 20


def _expected(tag: str) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    return [(f"{tag}-k{i}".encode(), f"{tag}-v{i}".encode(), [("h", str(i).encode())]) for i in range(N)]


def _embedded_read(root: str, topic: str, count: int) -> list[Any]:
    with Consumer(root, topic, group_id=None, auto_offset_reset="earliest") as c:
        got: list[Any] = []
        deadline = time.monotonic() + 30
        while len(got) < count and time.monotonic() < deadline:
            got += c.poll(timeout=0.5)
    return got


# ----------------------------------------------------------------------------- kafka-python
@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_produces_every_codec_idempotently_and_reads_it_back(
    server: Server, bootstrap: str, root: str, codec: str
) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    topic = f"kp-{codec}"
    p = KafkaProducer(
        bootstrap_servers=bootstrap,
        compression_type=None if codec == "none" else codec,
        enable_idempotence=True,
        acks="all",
    )
    futures = [p.send(topic, key=k, value=v, headers=h) for k, v, h in _expected(codec)]
    offsets = [f.get(timeout=30).offset for f in futures]
    p.close()
    assert offsets == list(range(N))
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=30_000)
    got = []
    for m in c:
        got.append((m.key, m.value, list(m.headers)))
        if len(got) == N:
            break
    c.close()
    assert got == _expected(codec)
    embedded = _embedded_read(root, topic, N)
    assert [(r.key, r.value) for r in embedded] == [(k, v) for k, v, _ in _expected(codec)]


def test_kafka_python_seeks_and_finds_offsets_by_time(bootstrap: str) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    p = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(10):
        p.send("times", value=b"%d" % i, timestamp_ms=10_000 + 100 * i)
    p.flush()
    p.close()
    tp = TopicPartition("times", 0)
    c = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=3000)
    c.assign([tp])
    found = c.offsets_for_times({tp: 10_250})[tp]
    assert (found.offset, found.timestamp) == (3, 10_300)
    assert c.offsets_for_times({tp: 99_999})[tp] is None
    assert c.beginning_offsets([tp])[tp] == 0 and c.end_offsets([tp])[tp] == 10
    c.seek(tp, 7)
    got = []
    for m in c:
        got.append(m.value)
        if len(got) == 3:
            break
    assert got == [b"7", b"8", b"9"]
    c.close()


def test_kafka_python_admin_creates_describes_and_deletes_topics(bootstrap: str, root: str) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    a = KafkaAdminClient(bootstrap_servers=bootstrap)
    a.create_topics([NewTopic("made", 3, 1, topic_configs={"retention.ms": "60000"})])
    assert "made" in a.list_topics()
    with Admin(root) as embedded:
        assert len(embedded.describe_topic("made").partitions) == 3
    configs = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "made")])
    assert configs["topic"]["made"]["retention.ms"]["value"] == "60000"
    with pytest.raises(TopicAlreadyExistsError):
        a.create_topics([NewTopic("made", 1, 1)])
    a.delete_topics(["made"])
    assert "made" not in a.list_topics()
    a.close()


# ----------------------------------------------------------------------------- confluent-kafka
@pytest.mark.parametrize("codec", CODECS)
def test_confluent_kafka_produces_every_codec_idempotently_and_reads_it_back(
    bootstrap: str, root: str, codec: str
) -> None:
    import confluent_kafka as ck

    topic = f"ck-{codec}"
    p = ck.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "compression.type": codec})
    acked: list[int] = []
    for k, v, h in _expected(codec):
        p.produce(topic, key=k, value=v, headers=h, on_delivery=lambda err, msg: acked.append(msg.offset()))
    assert p.flush(30) == 0
    assert sorted(acked) == list(range(N))
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    c.assign([ck.TopicPartition(topic, 0, ck.OFFSET_BEGINNING)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < N and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append((m.key(), m.value(), list(m.headers() or [])))
    c.close()
    assert got == _expected(codec)
    assert [r.value for r in _embedded_read(root, topic, N)] == [v for _, v, _ in _expected(codec)]


def test_confluent_kafka_reads_what_an_embedded_producer_wrote_while_it_waits(bootstrap: str, root: str) -> None:
    import confluent_kafka as ck

    with Admin(root) as a:
        a.create_topic("embedded", partitions=1)
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "fetch.wait.max.ms": 5000})
    c.assign([ck.TopicPartition("embedded", 0, 0)])
    assert c.poll(0.5) is None or c.poll(0.1) is None  # nothing yet: the fetch long-polls
    with Producer(root) as p:
        for i in range(5):
            p.send("embedded", value=b"e%d" % i, key=b"k")
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 5 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    assert got == [b"e%d" % i for i in range(5)]


def test_confluent_kafka_admin_creates_and_deletes_topics(bootstrap: str) -> None:
    import confluent_kafka.admin as ca

    a = ca.AdminClient({"bootstrap.servers": bootstrap})
    for f in a.create_topics([ca.NewTopic("ck-made", 2, 1)]).values():
        f.result(30)
    assert a.list_topics(timeout=10).topics["ck-made"].partitions.keys() == {0, 1}
    for f in a.delete_topics(["ck-made"]).values():
        f.result(30)
    assert "ck-made" not in a.list_topics(timeout=10).topics


# ----------------------------------------------------------------------------- aiokafka
@pytest.mark.parametrize("codec", CODECS)
def test_aiokafka_produces_every_codec_idempotently_and_reads_it_back(bootstrap: str, root: str, codec: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    topic = f"aio-{codec}"

    async def run() -> list[Any]:
        p = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            compression_type=None if codec == "none" else codec,
            enable_idempotence=True,
        )
        await p.start()
        try:
            for k, v, h in _expected(codec):
                await p.send_and_wait(topic, key=k, value=v, headers=h)
        finally:
            await p.stop()
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await c.start()
        try:
            tp = TopicPartition(topic, 0)
            c.assign([tp])
            await c.seek_to_beginning(tp)
            got: list[Any] = []
            while len(got) < N:
                batch = await asyncio.wait_for(c.getmany(tp, timeout_ms=1000), 30)
                got += batch.get(tp, [])
            found = await c.offsets_for_times({tp: got[5].timestamp})
            assert found[tp] is not None and found[tp].offset <= 5
            return got
        finally:
            await c.stop()

    got = asyncio.run(run())
    assert [(m.key, m.value, list(m.headers)) for m in got] == _expected(codec)
    assert [r.value for r in _embedded_read(root, topic, N)] == [v for _, v, _ in _expected(codec)]


def _embedded_write(root: str, topic: str) -> list[bytes]:
    with Admin(root) as a:
        a.create_topic(topic, partitions=1)
    values = [b"emb-%d" % i for i in range(5)]
    with Producer(root) as p:
        for v in values:
            p.send(topic, value=v, key=b"k", headers=[("from", b"embedded")])
    return values


def test_kafka_python_reads_what_an_embedded_producer_wrote(bootstrap: str, root: str) -> None:
    from kafka import KafkaConsumer

    values = _embedded_write(root, "emb-kp")
    c = KafkaConsumer("emb-kp", bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=30_000)
    got = []
    for m in c:
        got.append((m.value, list(m.headers)))
        if len(got) == len(values):
            break
    c.close()
    assert got == [(v, [("from", b"embedded")]) for v in values]


def test_aiokafka_reads_what_an_embedded_producer_wrote(bootstrap: str, root: str) -> None:
    from aiokafka import AIOKafkaConsumer

    values = _embedded_write(root, "emb-aio")

    async def run() -> list[bytes]:
        c = AIOKafkaConsumer("emb-aio", bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await c.start()
        try:
            got: list[bytes] = []
            while len(got) < len(values):
                msg = await asyncio.wait_for(c.getone(), 30)
                got.append(msg.value)
            return got
        finally:
            await c.stop()

    assert asyncio.run(run()) == values
