"""Differential format tests (reliability plan T7.3): logq's codec against kafka-python's.

kafka-python's ``DefaultRecordBatchBuilder`` / ``DefaultRecordBatch`` are an independent
implementation of RecordBatch v2. Random batches go both ways and must agree on every
field, every record and the CRC; for uncompressed batches the two encoders must even agree
byte for byte (both write partitionLeaderEpoch 0 and baseOffset 0).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logq.codec.batch import BatchRecord as Record
from logq.codec.batch import Compression, decode_batch, encode_batch, stamp_base_offset

kafka_codec = pytest.importorskip("kafka.codec")
default_records = pytest.importorskip("kafka.record.default_records")
DefaultRecordBatch = default_records.DefaultRecordBatch
DefaultRecordBatchBuilder = default_records.DefaultRecordBatchBuilder

try:
    import cramjam
except ImportError:  # pragma: no cover - cramjam is a test dependency
    cramjam = None

DIFF = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEWER = settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

T = 1_700_000_000_000
InRecord = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]

key_or_value = st.none() | st.binary(max_size=64)
header_st = st.tuples(
    st.sampled_from(["", "h", "trace", "ключ"]) | st.text(max_size=10),
    st.none() | st.binary(max_size=20),
)
record_st = st.tuples(
    key_or_value,
    key_or_value,
    st.lists(header_st, max_size=3),
    st.integers(min_value=-(2**62), max_value=2**62 - 1),
)


def rng_records(rnd: random.Random, n: int) -> list[InRecord]:
    """``n`` records from a seeded RNG (Hypothesis is too slow to draw hundreds per case)."""
    keys = ["", "h", "trace", "ключ", "😀"]
    base = rnd.choice([T, 0, -(2**62), 2**62 - 1 - 10**6])

    def blob(limit: int) -> bytes | None:
        r = rnd.random()
        return None if r < 0.15 else b"" if r < 0.25 else rnd.randbytes(rnd.randrange(limit))

    def text() -> str:
        spans = [(0x20, 0x7F), (0x80, 0xD800), (0xE000, 0x110000)]
        return "".join(chr(rnd.randrange(*rnd.choice(spans))) for _ in range(rnd.randrange(5)))

    out: list[InRecord] = []
    for _ in range(n):
        headers = [
            (rnd.choice(keys) if rnd.random() < 0.7 else text(), blob(16))
            for _ in range(rnd.choice([0, 0, 0, 1, 2, 4]))
        ]
        r = rnd.random()
        ts = rnd.randrange(-(2**62), 2**62) if r < 0.05 else base + rnd.randrange(-(10**6), 10**6)
        out.append((blob(48), blob(200), headers, ts))
    return out


# Small batches drawn by Hypothesis (they shrink well) or 1..300 records from a seeded RNG.
records_st = st.one_of(
    st.lists(record_st, min_size=1, max_size=20),
    st.builds(rng_records, st.randoms(use_true_random=False), st.integers(1, 300)),
)
# Compressible: values repeat so kafka-python keeps the compressed form.
compressible_st = st.lists(
    st.tuples(
        st.none() | st.sampled_from([b"", b"user-1", b"user-2"]),
        st.sampled_from([b"payload " * 20, b"x" * 100, b""]),
        st.lists(st.tuples(st.sampled_from(["a", "b"]), st.none() | st.just(b"1")), max_size=2),
        st.integers(min_value=T - 10**6, max_value=T + 10**6),
    ),
    min_size=10,
    max_size=200,
)


def kp_build(
    records: Sequence[InRecord],
    compression_type: int = 0,
    *,
    producer: tuple[int, int, int] = (-1, -1, -1),
    transactional: bool = False,
) -> bytes:
    b = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=compression_type,
        is_transactional=transactional,
        producer_id=producer[0],
        producer_epoch=producer[1],
        base_sequence=producer[2],
        batch_size=1 << 30,
    )
    for i, (k, v, hs, ts) in enumerate(records):
        assert b.append(i, timestamp=ts, key=k, value=v, headers=list(hs)) is not None
    return bytes(b.build())


def kp_read(buf: bytes) -> tuple[Any, list[Record]]:
    kb = DefaultRecordBatch(buf)
    assert kb.validate_crc(), "kafka-python rejects the CRC"
    out = [Record(r.offset, r.timestamp, r.key, r.value, tuple(tuple(h) for h in r.headers)) for r in kb]
    return kb, out


def model(records: Sequence[InRecord], base: int = 0) -> list[Record]:
    return [Record(base + i, ts, k, v, tuple(hs)) for i, (k, v, hs, ts) in enumerate(records)]


# --------------------------------------------------------------------------- logq -> kafka-python


@given(
    records_st,
    st.integers(min_value=0, max_value=2**62),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
)
@DIFF
def test_logq_batches_decode_identically_in_kafka_python(records: list[InRecord], base: int, epoch: int) -> None:
    buf = encode_batch(records, base, partition_leader_epoch=epoch)
    kb, decoded = kp_read(buf)
    h, ours = decode_batch(buf)
    assert decoded == ours == model(records, base)
    assert (kb.base_offset, kb.leader_epoch, kb.magic, kb.crc) == (
        base,
        epoch,
        2,
        h.crc,
    )
    assert (kb.attributes, kb.last_offset_delta, kb.records_count) == (
        0,
        len(records) - 1,
        len(records),
    )
    assert (kb.first_timestamp, kb.max_timestamp) == (records[0][3], max(r[3] for r in records))
    assert (kb.producer_id, kb.producer_epoch, kb.base_sequence) == (-1, -1, -1)
    assert kb.size_in_bytes == len(buf)


@given(compressible_st)
@FEWER
def test_logq_gzip_batches_decode_identically_in_kafka_python(records: list[InRecord]) -> None:
    buf = encode_batch(records, compression=Compression.GZIP)
    kb, decoded = kp_read(buf)
    assert kb.compression_type == 1
    assert decoded == model(records)


@given(
    st.lists(record_st, min_size=1, max_size=20),
    st.integers(min_value=0, max_value=2**63 - 1),
    st.integers(min_value=0, max_value=2**15 - 1),
    st.integers(min_value=0, max_value=2**31 - 1),
)
@FEWER
def test_logq_producer_fields_read_back_in_kafka_python(
    records: list[InRecord], pid: int, pepoch: int, seq: int
) -> None:
    buf = encode_batch(records, producer_id=pid, producer_epoch=pepoch, base_sequence=seq)
    kb, _ = kp_read(buf)
    assert (kb.producer_id, kb.producer_epoch, kb.base_sequence) == (pid, pepoch, seq)


def test_stamped_base_offset_is_seen_by_kafka_python_with_the_crc_intact() -> None:
    buf = bytearray(encode_batch([(None, b"a", [], T), (None, b"b", [], T + 1)]))
    stamp_base_offset(buf, 1_000_000)
    kb, decoded = kp_read(bytes(buf))
    assert [r.offset for r in decoded] == [1_000_000, 1_000_001]


# --------------------------------------------------------------------------- kafka-python -> logq


@given(records_st)
@DIFF
def test_kafka_python_batches_decode_identically_in_logq(records: list[InRecord]) -> None:
    buf = kp_build(records)
    h, decoded = decode_batch(buf)
    assert decoded == model(records)
    kb = DefaultRecordBatch(buf)
    assert (h.crc, h.attributes, h.records_count, h.last_offset_delta) == (
        kb.crc,
        kb.attributes,
        kb.records_count,
        kb.last_offset_delta,
    )
    assert (h.base_timestamp, h.max_timestamp, h.size) == (
        kb.first_timestamp,
        kb.max_timestamp,
        kb.size_in_bytes,
    )


@given(records_st)
@DIFF
def test_uncompressed_encoders_agree_byte_for_byte(records: list[InRecord]) -> None:
    assert encode_batch(records) == kp_build(records)


@given(
    st.lists(record_st, min_size=1, max_size=20),
    st.integers(min_value=0, max_value=2**63 - 1),
    st.integers(min_value=0, max_value=2**15 - 1),
    st.integers(min_value=0, max_value=2**31 - 1),
)
@FEWER
def test_kafka_python_transactional_batches_are_read_by_logq(
    records: list[InRecord], pid: int, pepoch: int, seq: int
) -> None:
    buf = kp_build(records, producer=(pid, pepoch, seq), transactional=True)
    h, decoded = decode_batch(buf)
    assert h.is_transactional and not h.is_control
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (pid, pepoch, seq)
    assert decoded == model(records)


CODECS = [
    (1, "gzip", "has_gzip", "zlib"),
    (2, "snappy", "has_snappy", "python-snappy"),
    (3, "lz4", "has_lz4", "lz4"),
    (4, "zstd", "has_zstd", "zstandard"),
]


def _require_kafka_python_codec(name: str, checker: str, library: str) -> None:
    if not getattr(kafka_codec, checker)():
        pytest.skip(
            f"kafka-python cannot write {name} here: its compressor library '{library}' is "
            f"not installed (see test_kafka_python_framing_with_cramjam_compressors)"
        )
    if name != "gzip" and cramjam is None:
        pytest.skip(f"logq reads {name} through cramjam, which is not installed")


@pytest.mark.parametrize("codec_id,name,checker,library", CODECS, ids=[c[1] for c in CODECS])
@given(records=compressible_st)
@FEWER
def test_kafka_python_compressed_batches_decode_in_logq(
    codec_id: int, name: str, checker: str, library: str, records: list[InRecord]
) -> None:
    _require_kafka_python_codec(name, checker, library)
    buf = kp_build(records, codec_id)
    h, decoded = decode_batch(buf)
    assert h.compression == codec_id, "kafka-python fell back to uncompressed"
    assert decoded == model(records)


@pytest.mark.parametrize("codec_id,name,checker,library", CODECS, ids=[c[1] for c in CODECS])
def test_kafka_python_compressed_batch_larger_than_a_snappy_block_decodes_in_logq(
    codec_id: int, name: str, checker: str, library: str
) -> None:
    _require_kafka_python_codec(name, checker, library)
    records = [(b"k%d" % i, b"value %d " % i * 20, [("i", b"%d" % i)], T + i) for i in range(2000)]
    buf = kp_build(records, codec_id)
    h, decoded = decode_batch(buf)
    assert h.compression == codec_id and len(buf) < 100_000
    assert decoded == model(records)


# kafka-python's snappy writer has its own xerial framing (32 KiB blocks); when python-snappy,
# lz4 or zstandard are missing, stand-ins backed by cramjam let that framing and the batch
# assembly around it run. The compressed bytes then come from cramjam, not those libraries.


def _cramjam_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    snappy = SimpleNamespace(compress=lambda data: bytes(cramjam.snappy.compress_raw(data)))
    lz4 = SimpleNamespace(compress=lambda data, **_: bytes(cramjam.lz4.compress(data)))

    class ZstdCompressor:
        def compress(self, data: bytes) -> bytes:
            return bytes(cramjam.zstd.compress(data))

    zstd = SimpleNamespace(ZstdCompressor=ZstdCompressor)
    if not kafka_codec.has_snappy():
        monkeypatch.setattr(kafka_codec, "snappy", snappy)
    if not kafka_codec.has_lz4():
        monkeypatch.setattr(kafka_codec, "lz4", lz4)
        monkeypatch.setattr(default_records, "lz4_encode", lz4.compress)
    if not kafka_codec.has_zstd():
        monkeypatch.setattr(kafka_codec, "zstd", zstd)


@pytest.mark.skipif(cramjam is None, reason="cramjam is not installed")
@pytest.mark.parametrize("codec_id", [2, 3, 4], ids=["snappy", "lz4", "zstd"])
@pytest.mark.parametrize("n", [15, 3000])
def test_kafka_python_framing_with_cramjam_compressors(monkeypatch: pytest.MonkeyPatch, codec_id: int, n: int) -> None:
    _cramjam_backends(monkeypatch)
    records = [(b"k%d" % i, b"value %d " % i * 10, [("i", b"%d" % i)], T + i) for i in range(n)]
    buf = kp_build(records, codec_id)
    h, decoded = decode_batch(buf)
    assert h.compression == codec_id
    assert decoded == model(records)
    if codec_id == 2:
        # kafka-python writes xerial framing; 3000 records span several 32 KiB blocks.
        assert buf[61:69] == b"\x82SNAPPY\x00"
        blocks, p = 0, 61 + 16
        while p < len(buf):
            (size,) = struct.unpack_from(">i", buf, p)
            p += 4 + size
            blocks += 1
        assert p == len(buf) and (blocks > 1) == (n == 3000)
