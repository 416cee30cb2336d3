"""Producer compression: the batches a Producer writes with each codec are read by kafka-python's
own fetch-response reader (MemoryRecords over the segment file) and by logq's Consumer; batches
kafka-python compressed are served by logq; a topic's compression_type is the default, an
explicit producer setting wins; a missing cramjam fails the Producer's construction.

Every test runs with the pure and the compiled codec (the ``codec`` fixture)."""

from __future__ import annotations

import glob
import os
import sys

import pytest
from logq import Admin, ConfigError, Consumer, PartitionLog, Producer, TopicPartition
from logq.codec.compression import CODECS, missing_library

from tests.support.clients import make_topic

memory_records = pytest.importorskip("kafka.record.memory_records")
default_records = pytest.importorskip("kafka.record.default_records")
kafka_codec = pytest.importorskip("kafka.codec")

NAMES = ["none", "gzip", "snappy", "lz4", "zstd"]
T0 = 1_700_000_000_000


def _need(name: str) -> None:
    if missing_library(CODECS[name]):
        pytest.skip("cramjam is not installed")
    checker = {"none": "has_gzip", "gzip": "has_gzip", "snappy": "has_snappy", "lz4": "has_lz4", "zstd": "has_zstd"}
    if not getattr(kafka_codec, checker[name])():
        pytest.skip(f"kafka-python cannot read {name} here (python-snappy, lz4, zstandard)")


def kafka_python_reads(root: str, topic: str, p: int) -> tuple[list[int], list[tuple]]:
    """Every batch of partition ``p`` as kafka-python reads a fetch response: codecs, records."""
    codecs: list[int] = []
    records: list[tuple] = []
    for path in sorted(glob.glob(os.path.join(root, f"{topic}-{p}", "*.log"))):
        with open(path, "rb") as f:
            mr = memory_records.MemoryRecords(f.read())
        while (batch := mr.next_batch()) is not None:
            assert batch.validate_crc()
            codecs.append(batch.compression_type)
            records.extend((r.offset, r.key, r.value, tuple(tuple(h) for h in r.headers), r.timestamp) for r in batch)
    return codecs, records


def logq_reads(root: str, topic: str, p: int, count: int) -> list[tuple]:
    out: list[tuple] = []
    with Consumer(root, auto_offset_reset="earliest") as c:
        c.assign([TopicPartition(topic, p)])
        while len(out) < count:
            got = c.poll(5.0)
            assert got, "the consumer stopped early"
            out.extend((r.offset, r.key, r.value, tuple(r.headers), r.timestamp) for r in got)
    return out


def sent_records(n: int) -> list[tuple]:
    return [
        (i, b"user-%d" % (i % 7), b"event %d: " % i + b"payload " * (i % 30), (("h", b"%d" % i),), T0 + i)
        for i in range(n)
    ]


@pytest.mark.parametrize("name", NAMES)
def test_batches_of_each_codec_are_read_by_kafka_python_and_by_logq(root: str, codec: str, name: str) -> None:
    _need(name)
    make_topic(root, "t")
    want = sent_records(3000)
    with Producer(root, compression_type=name, batch_size=64 * 1024, linger_ms=60_000) as prod:
        for _, k, v, hs, ts in want:
            prod.send("t", v, key=k, headers=list(hs), partition=0, timestamp_ms=ts)
    codecs, theirs = kafka_python_reads(root, "t", 0)
    assert len(codecs) > 1 and set(codecs) == {CODECS[name]}
    assert theirs == want
    assert logq_reads(root, "t", 0, len(want)) == want


@pytest.mark.parametrize("name", NAMES[1:])
def test_send_batch_compresses_too(root: str, codec: str, name: str) -> None:
    _need(name)
    make_topic(root, "t")
    values = [b"value %d " % i * 10 for i in range(5000)]
    with Producer(root, compression_type=name) as prod:
        prod.send_batch("t", values, key=b"k", timestamp_ms=T0)
    codecs, theirs = kafka_python_reads(root, "t", 0)
    assert set(codecs) == {CODECS[name]}
    assert [r[2] for r in theirs] == values
    assert [r[2] for r in logq_reads(root, "t", 0, len(values))] == values


@pytest.mark.parametrize("name", NAMES[1:])
def test_batches_kafka_python_compressed_are_stored_and_served_by_logq(root: str, codec: str, name: str) -> None:
    _need(name)
    make_topic(root, "t")
    b = default_records.DefaultRecordBatchBuilder(
        magic=2,
        compression_type=CODECS[name],
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 24,
    )
    want = sent_records(500)
    for i, k, v, hs, ts in want:
        b.append(i, timestamp=ts, key=k, value=v, headers=list(hs))
    with Admin(root) as admin:
        cfg = admin.topic_config("t")
    with PartitionLog(os.path.join(root, "t-0"), cfg) as lg:
        lg.append_batch(bytes(b.build()))  # untrusted: decoded once before it is accepted
    assert kafka_python_reads(root, "t", 0) == ([CODECS[name]], want)
    assert logq_reads(root, "t", 0, len(want)) == want


def _codecs_written(root: str, topic: str, **producer: object) -> set[int]:
    with Producer(root, **producer) as prod:  # type: ignore[arg-type]
        for i in range(200):
            prod.send(topic, b"compressible value " * 10, partition=0)
    return set(kafka_python_reads(root, topic, 0)[0])


def test_a_producer_that_sets_no_codec_uses_the_topics_compression_type(root: str, codec: str) -> None:
    make_topic(root, "gz", compression_type="gzip")
    make_topic(root, "plain")  # compression_type "producer": what the producer sets, none here
    make_topic(root, "unc", compression_type="uncompressed")
    assert _codecs_written(root, "gz") == {1}
    assert _codecs_written(root, "plain") == {0}
    assert _codecs_written(root, "unc") == {0}


def test_an_explicit_producer_codec_wins_over_the_topics(root: str, codec: str) -> None:
    _need("zstd")
    make_topic(root, "gz", compression_type="gzip")
    assert _codecs_written(root, "gz", compression_type="zstd") == {4}


def test_compression_type_none_writes_uncompressed_batches_to_a_gzip_topic(root: str, codec: str) -> None:
    make_topic(root, "gz", compression_type="gzip")
    assert _codecs_written(root, "gz", compression_type="none") == {0}


def test_an_incompressible_record_at_the_topic_limit_is_written_uncompressed(root: str, codec: str) -> None:
    _need("lz4")
    make_topic(root, "small", max_batch_bytes=4096)
    value = os.urandom(4096 - 61 - 30)
    with Producer(root, compression_type="lz4") as prod:
        md = prod.send("small", value).get(timeout=10)
    assert md.offset == 0
    assert kafka_python_reads(root, "small", 0)[0] == [0]


@pytest.mark.parametrize("bad", ["brotli", "GZIP", "", 1, True])
def test_an_unknown_compression_type_fails_the_producers_construction(root: str, bad: object) -> None:
    with pytest.raises(ConfigError, match="compression_type"):
        Producer(root, compression_type=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["snappy", "lz4", "zstd"])
def test_without_cramjam_the_producer_refuses_to_be_built_and_says_what_to_install(
    root: str, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setitem(sys.modules, "cramjam", None)  # import cramjam -> ImportError
    with pytest.raises(ConfigError) as e:
        Producer(root, compression_type=name)
    assert "pip install logq[compression]" in str(e.value)
    make_topic(root, "t", compression_type=name)
    with Producer(root) as prod:  # the topic's codec: refused at the first send, nothing queued
        with pytest.raises(ConfigError, match="cramjam"):
            prod.send("t", b"v")
        assert prod.metrics()["record-send-total"] == 0
    with Producer(root, compression_type="gzip") as prod:  # gzip needs only the standard library
        prod.send("t", b"v" * 500).get(timeout=10)


def test_compressed_batches_keep_group_commit_with_fsync_always(root: str, codec: str) -> None:
    make_topic(root, "t", 2)
    with Producer(root, compression_type="gzip", fsync="always", linger_ms=60_000) as prod:
        futs = [prod.send("t", b"durable %d " % i * 10, partition=i % 2) for i in range(400)]
        prod.flush()
        assert [f.get(timeout=0).offset for f in futs[:4]] == [0, 0, 1, 1]
    for p in (0, 1):
        codecs, records = kafka_python_reads(root, "t", p)
        assert set(codecs) == {1} and len(records) == 200


@pytest.mark.parametrize(("name", "low", "high"), [("gzip", 1, 9), ("zstd", 1, 19)])
def test_a_higher_compression_level_stores_no_more_and_every_level_reads_back(
    root: str, codec: str, name: str, low: int, high: int
) -> None:
    _need(name)
    want = sent_records(2000)
    sizes = []
    for level in (low, high):
        topic = f"{name}-{level}"
        make_topic(root, topic)
        with Producer(root, compression_type=name, compression_level=level, batch_size=256 * 1024) as prod:
            for _, k, v, hs, ts in want:
                prod.send(topic, v, key=k, headers=list(hs), partition=0, timestamp_ms=ts)
            prod.flush()  # byte-total counts written batches; the linger thread may not have written yet
            sizes.append(prod.metrics()["byte-total"])
        codecs, theirs = kafka_python_reads(root, topic, 0)
        assert set(codecs) == {CODECS[name]} and theirs == want
    assert sizes[1] <= sizes[0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"compression_type": "gzip", "compression_level": 10}, r"\[1, 9\]"),
        ({"compression_type": "gzip", "compression_level": 0}, r"\[1, 9\]"),
        ({"compression_type": "gzip", "compression_level": "6"}, r"\[1, 9\]"),
        ({"compression_type": "zstd", "compression_level": 23}, r"\[-131072, 22\]"),
        ({"compression_type": "snappy", "compression_level": 1}, "takes no level"),
        ({"compression_type": "lz4", "compression_level": 9}, "takes no level"),
        ({"compression_type": "none", "compression_level": 1}, "takes no level"),
        ({"compression_level": 6}, "needs a compression_type"),
    ],
)
def test_a_compression_level_the_codec_does_not_take_fails_the_construction(
    root: str, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Producer(root, **kwargs)  # type: ignore[arg-type]
