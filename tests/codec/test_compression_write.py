"""Compressed batches on write: every codec logq writes is read by kafka-python's own reader
(DefaultRecordBatch with python-snappy, lz4 and zstandard) and by logq, byte layouts are the
ones the Java client reads (xerial snappy, LZ4 frames of independent blocks), a batch never
grows by being compressed, and a missing cramjam is a ConfigError with the install hint.

Runs against the pure and the compiled codec (tests/codec/conftest.py)."""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logq import ConfigError, CorruptRecordError
from logq.codec.batch import BatchRecord as Record
from logq.codec.batch import decode_batch, encode_batch, encode_values, read_header, validate_batch
from logq.codec.compressed import compress_batch
from logq.codec.compression import CODECS, codec_id, compress, decompress, missing_library

kafka_codec = pytest.importorskip("kafka.codec")
default_records = pytest.importorskip("kafka.record.default_records")

T = 1_700_000_000_000
CAP = 16 << 20
NAMES = ["gzip", "snappy", "lz4", "zstd"]
InRecord = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]

FEWER = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

compressible_st = st.lists(
    st.tuples(
        st.none() | st.sampled_from([b"", b"user-1", b"user-2"]),
        st.sampled_from([b"payload " * 20, b"x" * 100]),
        st.lists(st.tuples(st.sampled_from(["a", "ключ"]), st.none() | st.just(b"1")), max_size=2),
        st.integers(min_value=T - 10**6, max_value=T + 10**6),
    ),
    min_size=10,
    max_size=100,
)


def _kafka_python_can_read(name: str) -> None:
    checker = {"gzip": "has_gzip", "snappy": "has_snappy", "lz4": "has_lz4", "zstd": "has_zstd"}[name]
    if not getattr(kafka_codec, checker)():
        pytest.skip(f"kafka-python's {name} library is not installed (python-snappy, lz4, zstandard)")
    if missing_library(CODECS[name]):
        pytest.skip(f"logq writes {name} through cramjam, which is not installed")


def kp_read(buf: bytes) -> tuple[Any, list[Record]]:
    kb = default_records.DefaultRecordBatch(buf)
    assert kb.validate_crc(), "kafka-python rejects the CRC"
    out = [Record(r.offset, r.timestamp, r.key, r.value, tuple(tuple(h) for h in r.headers)) for r in kb]
    return kb, out


def model(records: Sequence[InRecord]) -> list[Record]:
    return [Record(i, ts, k, v, tuple(hs)) for i, (k, v, hs, ts) in enumerate(records)]


@pytest.mark.parametrize("name", NAMES)
@given(records=compressible_st)
@FEWER
def test_each_codec_logq_writes_decodes_identically_in_kafka_python_and_logq(
    name: str, records: list[InRecord]
) -> None:
    _kafka_python_can_read(name)
    raw = encode_batch(records)
    buf = compress_batch(raw, CODECS[name], CAP)
    assert len(buf) < len(raw)
    kb, theirs = kp_read(buf)
    assert kb.compression_type == CODECS[name]
    assert theirs == model(records)
    h, ours = decode_batch(buf)
    assert h.compression == CODECS[name] and ours == model(records)
    assert (h.records_count, h.base_timestamp, h.max_timestamp) == (
        len(records),
        records[0][3],
        max(r[3] for r in records),
    )


@pytest.mark.parametrize("name", NAMES)
def test_a_batch_of_many_blocks_decodes_in_kafka_python(name: str) -> None:
    _kafka_python_can_read(name)
    records = [(b"k%d" % i, b"value %d " % i * 30, [("i", b"%d" % i)], T + i) for i in range(2000)]
    raw = encode_batch(records)
    assert len(raw) - 61 > 4 * 64 * 1024  # several lz4 (64 KiB) and snappy (32 KiB) blocks
    buf = compress_batch(raw, CODECS[name], CAP)
    kb, theirs = kp_read(buf)
    assert kb.compression_type == CODECS[name] and theirs == model(records)
    assert decode_batch(buf)[1] == model(records)


def test_lz4_frames_have_independent_blocks_and_no_checksums_as_javas_reader_needs() -> None:
    lz4_frame = pytest.importorskip("lz4.frame")
    if missing_library(3):
        pytest.skip("cramjam is not installed")
    data = b"".join(b"line %d of a log\n" % i for i in range(40_000))
    blob = compress(3, data)
    assert blob[:4] == b"\x04\x22\x4d\x18"  # the LZ4 frame magic, little-endian
    flg, bd = blob[4], blob[5]
    assert flg >> 6 == 1 and flg & 0x20  # version 01, block independence
    assert not flg & 0x1C  # no block checksum, no content size, no content checksum
    assert (bd >> 4) & 7 == 4  # 64 KiB blocks
    assert lz4_frame.decompress(blob) == data  # the reference library checks the header checksum
    assert blob.endswith(b"\x00\x00\x00\x00")


def test_snappy_uses_xerial_framing_with_32_kib_chunks() -> None:
    if missing_library(2):
        pytest.skip("cramjam is not installed")
    data = b"".join(b"record %d\n" % i for i in range(20_000))  # ~200 KiB
    blob = compress(2, data)
    assert blob[:16] == b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)
    chunks, p = 0, 16
    while p < len(blob):
        (n,) = struct.unpack_from(">i", blob, p)
        p += 4 + n
        chunks += 1
    assert p == len(blob) and chunks == -(-len(data) // (32 * 1024))
    assert kafka_codec.snappy_decode(blob) == data if kafka_codec.has_snappy() else True


@pytest.mark.parametrize("name", NAMES)
def test_incompressible_records_stay_uncompressed_so_a_batch_never_grows(name: str) -> None:
    if missing_library(CODECS[name]):
        pytest.skip("cramjam is not installed")
    rnd = os.urandom(5000)
    raw = encode_batch([(None, rnd, [], T)])
    assert compress_batch(raw, CODECS[name], CAP) == raw


@pytest.mark.parametrize("name", NAMES)
def test_records_over_the_readers_decompression_cap_stay_uncompressed(name: str) -> None:
    if missing_library(CODECS[name]):
        pytest.skip("cramjam is not installed")
    raw = encode_values([b"a" * 1000] * 50, T)  # ~50 KB of records
    assert compress_batch(raw, CODECS[name], 10_000) == raw
    assert read_header(compress_batch(raw, CODECS[name], 100_000)).compression == CODECS[name]


@pytest.mark.parametrize("name", NAMES)
def test_the_crc_covers_the_compressed_bytes_as_stored(name: str) -> None:
    if missing_library(CODECS[name]):
        pytest.skip("cramjam is not installed")
    buf = bytearray(compress_batch(encode_values([b"abc" * 100] * 20, T), CODECS[name], CAP))
    validate_batch(bytes(buf))
    buf[-3] ^= 0x01
    with pytest.raises(CorruptRecordError):
        validate_batch(bytes(buf))


@pytest.mark.parametrize("name", NAMES)
def test_compress_then_decompress_gives_the_input_back(name: str) -> None:
    if missing_library(CODECS[name]):
        pytest.skip("cramjam is not installed")
    for data in [b"a", b"hello " * 50_000, os.urandom(100_000), bytes(65536), bytes(2 * 65536 + 5)]:
        blob = compress(CODECS[name], data)
        if name == "gzip":
            assert kafka_codec.gzip_decode(blob) == data
        else:
            assert decompress(CODECS[name], blob, CAP) == data


def test_codec_none_and_an_already_compressed_batch_are_returned_as_they_are() -> None:
    raw = encode_values([b"abc" * 100] * 20, T)
    assert compress_batch(raw, 0, CAP) is raw
    gz = compress_batch(raw, 1, CAP)
    assert compress_batch(gz, 1, CAP) is gz


@pytest.mark.parametrize("bad", ["brotli", "GZIP", "", None, 1, b"gzip"])
def test_a_codec_name_that_is_not_kafkas_is_a_config_error_naming_the_choices(bad: object) -> None:
    with pytest.raises(ConfigError, match="none, gzip, snappy, lz4, zstd"):
        codec_id(bad)


def test_without_cramjam_gzip_still_writes_and_the_others_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cramjam", None)  # import cramjam -> ImportError
    assert kafka_codec.gzip_decode(compress(1, b"x" * 100)) == b"x" * 100
    for codec in (2, 3, 4):
        assert missing_library(codec) is not None
        with pytest.raises(ConfigError) as e:
            compress(codec, b"x" * 100)
        assert "logq[compression]" in str(e.value)


@pytest.mark.parametrize("name", NAMES)
@given(
    data=st.binary(min_size=1, max_size=200_000)
    | st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=50), st.integers(1, 5000))
)
@FEWER
def test_any_bytes_compress_and_decompress_back_to_themselves(name: str, data: bytes) -> None:
    if missing_library(CODECS[name]):
        pytest.skip("cramjam is not installed")
    blob = compress(CODECS[name], data)
    back = kafka_codec.gzip_decode(blob) if name == "gzip" else decompress(CODECS[name], blob, len(data) + 1024)
    assert back == data
