"""Specification tests for the RecordBatch v2 codec (logq.codec).

Golden vectors A-D and the varint vectors come from the Kafka reference notes (section 1.5);
the corruption tests follow Kafka's own record-format checklist (DefaultRecordBatchTest /
DefaultRecordTest). Malformed batches are built with a small encoder written here, separate
from logq's, so that a mutation hits exactly the field it names.
"""

from __future__ import annotations

import random
import struct
import tracemalloc
import zlib
from collections.abc import Sequence

import pytest
from crc32c import crc32c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logq.codec import batch as codec
from logq.codec import compression as _codecs
from logq.codec.batch import (
    BATCH_OVERHEAD,
    LOG_OVERHEAD,
    BatchHeader,
    Compression,
    decode_batch,
    decode_records,
    decode_varint,
    encode_batch,
    encode_values,
    encode_varint,
    iter_batches,
    read_header,
    stamp_base_offset,
    validate_batch,
)
from logq.codec.batch import (
    BatchRecord as Record,
)
from logq.errors import CorruptRecordError, LogqError

try:
    import cramjam
except ImportError:  # pragma: no cover - cramjam is a test dependency
    cramjam = None

needs_cramjam = pytest.mark.skipif(cramjam is None, reason="cramjam is not installed")

T = 1_700_000_000_000  # 0x0000018BCFE56800

VECTOR_A = bytes.fromhex(
    "0000000000000000000000420000000002cdfe91db0000000000010000018bcfe568000000018bcfe56805"
    "ffffffffffffffffffffffffffff000000020e0000000102610010000a020104626300"
)
VECTOR_B = bytes.fromhex(
    "00000000000000000000003e00000000025e93538d0000000000000000018bcfe568000000018bcfe56800"
    "ffffffffffffffffffffffffffff0000000118000000026b02760202680278"
)
VECTOR_C = bytes.fromhex(
    "0000000000000000000000390000000002cfd5eff80000000000000000018bcfe568000000018bcfe56800"
    "ffffffffffffffffffffffffffff000000010e000000026b0100"
)
VECTOR_D = bytes.fromhex(
    "000000000000002a00000042ffffffff02cdfe91db0000000000010000018bcfe568000000018bcfe56805"
    "ffffffffffffffffffffffffffff000000020e0000000102610010000a020104626300"
)

FAST = settings(max_examples=60, deadline=None, database=None)
ROUND_TRIP = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --------------------------------------------------------------------------- test-side encoder

HEADER = struct.Struct(">qiibIhiqqqhii")


def zz(n: int, width: int = 0) -> bytes:
    """Zigzag + LEB128, written independently of logq; ``width`` pads to a longer encoding."""
    u = n * 2 if n >= 0 else -n * 2 - 1
    out = bytearray()
    while u >= 0x80 or len(out) + 1 < width:
        out.append(0x80 | (u & 0x7F))
        u >>= 7
    out.append(u)
    return bytes(out)


def rec(
    *,
    tsd: int = 0,
    od: int = 0,
    key: bytes | None = None,
    value: bytes | None = b"v",
    headers: Sequence[tuple[bytes, bytes | None]] = (),
    attrs: int = 0,
    key_len: bytes | None = None,
    value_len: bytes | None = None,
    header_count: bytes | None = None,
    length_delta: int = 0,
    tail: bytes = b"",
) -> bytes:
    """One record; the ``*_len`` / ``header_count`` overrides are raw varint bytes."""
    body = bytearray([attrs])
    body += zz(tsd) + zz(od)
    body += key_len if key_len is not None else zz(-1 if key is None else len(key))
    body += key or b""
    body += value_len if value_len is not None else zz(-1 if value is None else len(value))
    body += value or b""
    body += header_count if header_count is not None else zz(len(headers))
    for hk, hv in headers:
        body += zz(len(hk)) + hk + zz(-1 if hv is None else len(hv)) + (hv or b"")
    body += tail
    return zz(len(body) + length_delta) + bytes(body)


def batch(
    blob: bytes,
    count: int,
    *,
    base_offset: int = 0,
    epoch: int = 0,
    magic: int = 2,
    attributes: int = 0,
    last_offset_delta: int | None = None,
    base_ts: int = T,
    max_ts: int | None = None,
    batch_length: int | None = None,
    crc: int | None = None,
) -> bytes:
    """A whole batch around ``blob`` with a correct CRC unless ``crc`` is given."""
    head = HEADER.pack(
        base_offset,
        BATCH_OVERHEAD - LOG_OVERHEAD + len(blob) if batch_length is None else batch_length,
        epoch,
        magic,
        0,
        attributes,
        count - 1 if last_offset_delta is None else last_offset_delta,
        base_ts,
        base_ts if max_ts is None else max_ts,
        -1,
        -1,
        -1,
        count,
    )
    real = crc32c(blob, crc32c(head[21:]))
    return head[:17] + struct.pack(">I", real if crc is None else crc) + head[21:] + blob


def recrc(buf: bytes | bytearray) -> bytes:
    """Recompute the CRC after editing CRC-covered bytes."""
    out = bytearray(buf)
    struct.pack_into(">I", out, 17, crc32c(bytes(out[21:])))
    return bytes(out)


def gz(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def expect_corrupt(buf: bytes, match: str | None = None) -> CorruptRecordError:
    with pytest.raises(CorruptRecordError, match=match) as info:
        decode_batch(buf)
    return info.value


# --------------------------------------------------------------------------- golden vectors

A_RECORDS = [(None, b"a", None, T), (None, b"bc", None, T + 5)]


def test_golden_vector_a_encodes_byte_for_byte() -> None:
    assert encode_batch(A_RECORDS) == VECTOR_A


def test_golden_vector_a_decodes_field_by_field() -> None:
    h, records = decode_batch(VECTOR_A)
    assert h == BatchHeader(
        base_offset=0,
        batch_length=66,
        partition_leader_epoch=0,
        magic=2,
        crc=0xCDFE91DB,
        attributes=0,
        last_offset_delta=1,
        base_timestamp=T,
        max_timestamp=T + 5,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        records_count=2,
    )
    assert h.size == len(VECTOR_A) == 78
    assert (h.last_offset, h.next_offset) == (1, 2)
    assert h.compression is Compression.NONE
    assert h.timestamp_type == "CreateTime"
    assert not h.is_transactional and not h.is_control
    assert records == [Record(0, T, None, b"a", ()), Record(1, T + 5, None, b"bc", ())]


def test_golden_vector_b_encodes_byte_for_byte_with_any_header_spelling() -> None:
    for headers in ([("h", b"x")], [(b"h", b"x")], {"h": b"x"}, (("h", b"x"),)):
        assert encode_batch([(b"k", b"v", headers, T)]) == VECTOR_B, headers


def test_golden_vector_b_decodes_with_its_header() -> None:
    h, records = decode_batch(VECTOR_B)
    assert h.crc == 0x5E93538D and h.records_count == 1 and h.size == 74
    assert records == [Record(0, T, b"k", b"v", (("h", b"x"),))]


def test_golden_vector_c_tombstone_encodes_byte_for_byte() -> None:
    assert encode_batch([(b"k", None, None, T)]) == VECTOR_C


def test_golden_vector_c_decodes_to_a_null_value() -> None:
    h, records = decode_batch(VECTOR_C)
    assert h.crc == 0xCFD5EFF8 and h.size == 69
    assert records == [Record(0, T, b"k", None, ())]


def test_golden_vector_d_is_a_stamped_with_offset_42_and_epoch_minus_1() -> None:
    buf = bytearray(VECTOR_A)
    stamp_base_offset(buf, 42)
    struct.pack_into(">i", buf, 12, -1)
    assert bytes(buf) == VECTOR_D
    h = validate_batch(buf)
    assert h.crc == 0xCDFE91DB
    assert (h.base_offset, h.partition_leader_epoch) == (42, -1)


def test_golden_vector_d_decodes_as_offsets_42_and_43() -> None:
    h, records = decode_batch(VECTOR_D)
    assert [r.offset for r in records] == [42, 43]
    assert [r.value for r in records] == [b"a", b"bc"]
    assert h.next_offset == 44


def test_golden_vector_a_through_encode_values_needs_per_record_timestamps() -> None:
    # encode_values shares one timestamp: with T for both it differs from A only there.
    one_ts = encode_values([b"a", b"bc"], T)
    assert one_ts == encode_batch([(None, b"a", None, T), (None, b"bc", None, T)])
    assert one_ts != VECTOR_A


def test_test_side_encoder_reproduces_the_golden_vectors() -> None:
    # The corruption tests below rely on this encoder being exact.
    blob_a = rec(value=b"a") + rec(tsd=5, od=1, value=b"bc")
    assert batch(blob_a, 2, max_ts=T + 5) == VECTOR_A
    assert batch(rec(key=b"k", value=b"v", headers=[(b"h", b"x")]), 1) == VECTOR_B
    assert batch(rec(key=b"k", value=None), 1) == VECTOR_C


def test_golden_vectors_walk_back_to_back_with_iter_batches() -> None:
    log = VECTOR_A + VECTOR_B + VECTOR_C + VECTOR_D
    walked = [(pos, h.crc) for pos, h in iter_batches(log)]
    assert walked == [(0, 0xCDFE91DB), (78, 0x5E93538D), (152, 0xCFD5EFF8), (221, 0xCDFE91DB)]


# --------------------------------------------------------------------------- varints

VARINT_VECTORS = [(-1, "01"), (0, "00"), (1, "02"), (5, "0a"), (7, "0e"), (64, "8001")]


@pytest.mark.parametrize("n,hexed", VARINT_VECTORS)
def test_varint_reference_vectors_encode(n: int, hexed: str) -> None:
    assert encode_varint(n).hex() == hexed


@pytest.mark.parametrize("n,hexed", VARINT_VECTORS)
def test_varint_reference_vectors_decode(n: int, hexed: str) -> None:
    raw = bytes.fromhex(hexed)
    assert decode_varint(raw, 0, len(raw)) == (n, len(raw))


@pytest.mark.parametrize("n,size", [(-(2**63), 10), (2**63 - 1, 10), (-(2**31), 5), (2**31 - 1, 5), (-65, 2)])
def test_varint_extremes_round_trip_at_their_encoded_size(n: int, size: int) -> None:
    raw = encode_varint(n)
    assert len(raw) == size
    assert decode_varint(raw, 0, len(raw)) == (n, size)
    assert decode_varint(raw, 0, len(raw), 5 if size <= 5 else 10) == (n, size)


@pytest.mark.parametrize("n", [2**63, -(2**63) - 1, 2**70])
def test_varint_encoder_refuses_values_outside_int64(n: int) -> None:
    with pytest.raises(OverflowError):
        encode_varint(n)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
@settings(max_examples=300, deadline=None, database=None)
def test_varint_round_trips_every_int64_and_matches_the_independent_encoder(n: int) -> None:
    raw = encode_varint(n)
    assert raw == zz(n)
    assert decode_varint(b"\xff" + raw + b"\xff", 1, len(raw) + 1) == (n, len(raw) + 1)


def test_varint_decode_stops_at_the_limit_not_the_buffer_end() -> None:
    raw = encode_varint(300)  # 2 bytes
    with pytest.raises(CorruptRecordError, match="truncated"):
        decode_varint(raw, 0, 1)


def test_varint_truncated_at_the_end_of_the_buffer_is_rejected() -> None:
    for raw in (b"", b"\x80", b"\xff\xff\xff"):
        with pytest.raises(CorruptRecordError, match="truncated"):
            decode_varint(raw, 0, len(raw))


def test_varint_longer_than_its_cap_is_rejected() -> None:
    six = zz(1, width=6)
    assert decode_varint(six, 0, 6) == (1, 6)  # fine as a varlong
    with pytest.raises(CorruptRecordError, match="longer than 5"):
        decode_varint(six, 0, 6, 5)
    eleven = zz(1, width=11)
    with pytest.raises(CorruptRecordError, match="longer than 10"):
        decode_varint(eleven, 0, 11)


def test_varint_padded_to_exactly_five_bytes_is_accepted() -> None:
    assert decode_varint(zz(-1, width=5), 0, 5, 5) == (-1, 5)


def test_varint_with_bits_beyond_int32_is_rejected() -> None:
    # Regression: a 5-byte varint whose last byte used more than 4 bits decoded to
    # +-2**34, outside the int32 a Kafka varint holds (it became a record offset).
    assert decode_varint(b"\xff\xff\xff\xff\x0f", 0, 5, 5) == (-(2**31), 5)
    with pytest.raises(CorruptRecordError, match="32 bits"):
        decode_varint(b"\xff\xff\xff\xff\x1f", 0, 5, 5)
    with pytest.raises(CorruptRecordError, match="32 bits"):
        decode_varint(b"\x80\x80\x80\x80\x7f", 0, 5, 5)


def test_varlong_with_bits_beyond_int64_is_rejected() -> None:
    # Regression: the 10th byte of a varlong may only carry bit 63.
    assert decode_varint(b"\xff" * 9 + b"\x01", 0, 10) == (-(2**63), 10)
    with pytest.raises(CorruptRecordError, match="64 bits"):
        decode_varint(b"\xff" * 9 + b"\x7f", 0, 10)


def test_record_varints_are_capped_at_five_bytes() -> None:
    ok = batch(rec(key=b"k", key_len=zz(1, width=5)), 1)
    assert decode_batch(ok)[1][0].key == b"k"
    expect_corrupt(batch(rec(key=b"k", key_len=zz(1, width=6)), 1), "longer than 5")
    expect_corrupt(batch(rec(value=b"v", value_len=zz(1, width=6)), 1), "longer than 5")


def test_record_offset_delta_beyond_int32_is_rejected_not_returned() -> None:
    # Regression for the varint width bug, seen from a whole batch with a valid CRC.
    body = b"\x00" + zz(0) + b"\xff\xff\xff\xff\x1f" + zz(-1) + zz(1) + b"v" + zz(0)
    expect_corrupt(batch(zz(len(body)) + body, 1), "32 bits")


def test_record_timestamp_delta_is_a_full_varlong() -> None:
    blob = rec(tsd=-(2**62)) + rec(tsd=2**62, od=1)
    _, records = decode_batch(batch(blob, 2, base_ts=0, max_ts=2**62))
    assert [r.timestamp for r in records] == [-(2**62), 2**62]


# --------------------------------------------------------------------------- round trips

key_or_value = st.none() | st.binary(max_size=48)
header_keys = st.sampled_from(["", "h", "trace-id", "ключ", "😀"]) | st.text(max_size=12)
headers_st = st.none() | st.lists(st.tuples(header_keys, st.none() | st.binary(max_size=24)), max_size=4)
timestamps = st.integers(min_value=-(2**62), max_value=2**62 - 1)
small_ts = st.integers(min_value=T - 10**6, max_value=T + 10**6)
record_st = st.tuples(key_or_value, key_or_value, headers_st, timestamps)
HEADER_KEYS = ["", "h", "trace-id", "ключ", "😀"]


def rng_text(rnd: random.Random) -> str:
    """A short string mixing ASCII, BMP and astral code points (never surrogates)."""
    ranges = [(0x20, 0x7F), (0x80, 0xD800), (0xE000, 0x110000)]
    return "".join(chr(rnd.randrange(*rnd.choice(ranges))) for _ in range(rnd.randrange(6)))


def rng_records(rnd: random.Random, n: int) -> list:
    """``n`` records drawn from a seeded RNG: much faster than Hypothesis for big batches."""
    base = rnd.choice([T, 0, -(2**62), 2**62 - 1 - 10**6, rnd.randrange(-(2**62), 2**62 - 10**6)])

    def blob(limit: int) -> bytes | None:
        r = rnd.random()
        return None if r < 0.15 else b"" if r < 0.25 else rnd.randbytes(rnd.randrange(limit))

    out = []
    for _ in range(n):
        headers = [
            (rnd.choice(HEADER_KEYS) if rnd.random() < 0.7 else rng_text(rnd), blob(16))
            for _ in range(rnd.choice([0, 0, 0, 1, 2, 4]))
        ]
        r = rnd.random()
        ts = rnd.randrange(-(2**62), 2**62) if r < 0.05 else base + rnd.randrange(-(10**6), 10**6)
        out.append((blob(48), blob(200), headers or None, ts))
    return out


def expected(records: Sequence[tuple], base_offset: int) -> list[Record]:
    out = []
    for i, (k, v, hs, ts) in enumerate(records):
        hdrs = tuple((hk if isinstance(hk, str) else hk.decode(), hv) for hk, hv in (hs or ()))
        out.append(Record(base_offset + i, ts, k, v, hdrs))
    return out


@given(
    st.one_of(
        st.lists(record_st, min_size=1, max_size=20),
        st.builds(rng_records, st.randoms(use_true_random=False), st.integers(1, 300)),
    ),
    st.integers(min_value=0, max_value=2**62),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
)
@ROUND_TRIP
def test_arbitrary_records_round_trip(records: list, base_offset: int, epoch: int) -> None:
    buf = encode_batch(records, base_offset, partition_leader_epoch=epoch)
    h, decoded = decode_batch(buf)
    assert decoded == expected(records, base_offset)
    assert (h.base_offset, h.partition_leader_epoch) == (base_offset, epoch)
    assert h.records_count == len(records) and h.last_offset_delta == len(records) - 1
    assert h.base_timestamp == records[0][3]
    assert h.max_timestamp == max(r[3] for r in records)
    assert h.size == len(buf) and h.batch_length == len(buf) - LOG_OVERHEAD


@given(st.lists(st.tuples(key_or_value, st.binary(max_size=4096), headers_st, small_ts), min_size=1, max_size=8))
@ROUND_TRIP
def test_values_of_a_few_kilobytes_round_trip(records: list) -> None:
    assert decode_batch(encode_batch(records))[1] == expected(records, 0)


@given(
    st.lists(record_st, min_size=1, max_size=60),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-(2**15), max_value=2**15 - 1),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
)
@FAST
def test_producer_fields_round_trip(records: list, pid: int, pepoch: int, seq: int) -> None:
    h, _ = decode_batch(encode_batch(records, producer_id=pid, producer_epoch=pepoch, base_sequence=seq))
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (pid, pepoch, seq)


@given(
    st.one_of(
        st.lists(st.binary(max_size=300), min_size=1, max_size=10),
        st.builds(
            lambda rnd, n: [rnd.randbytes(rnd.randrange(300)) for _ in range(n)],
            st.randoms(use_true_random=False),
            st.integers(1, 300),
        ),
    ),
    timestamps,
    st.integers(min_value=0, max_value=2**62),
    key_or_value,
)
@ROUND_TRIP
def test_encode_values_round_trips(values: list, ts: int, base: int, key: bytes | None) -> None:
    buf = encode_values(values, ts, base, key=key)
    h, decoded = decode_batch(buf)
    assert decoded == [Record(base + i, ts, key, v, ()) for i, v in enumerate(values)]
    assert h.base_timestamp == h.max_timestamp == ts
    assert buf == encode_batch([(key, v, None, ts) for v in values], base)


@given(
    st.one_of(
        st.lists(record_st, min_size=1, max_size=10),
        st.builds(rng_records, st.randoms(use_true_random=False), st.integers(1, 100)),
    )
)
@FAST
def test_gzip_batches_round_trip(records: list) -> None:
    buf = encode_batch(records, 7, compression=Compression.GZIP)
    h, decoded = decode_batch(buf)
    assert h.compression is Compression.GZIP
    assert decoded == expected(records, 7)
    # The CRC covers the compressed bytes as stored.
    assert h.crc == crc32c(buf[21:])


def test_null_and_empty_keys_round_trip_distinctly() -> None:
    _, records = decode_batch(encode_batch([(None, b"x", None, T), (b"", b"x", None, T)]))
    assert records[0].key is None
    assert records[1].key == b"" and records[1].key is not None


def test_null_and_empty_values_round_trip_distinctly() -> None:
    _, records = decode_batch(encode_batch([(b"k", None, None, T), (b"k", b"", None, T)]))
    assert records[0].value is None
    assert records[1].value == b"" and records[1].value is not None


def test_header_keys_repeat_in_order_and_values_may_be_null() -> None:
    hs = [("a", b"1"), ("b", None), ("a", b""), ("a", b"3")]
    _, records = decode_batch(encode_batch([(None, b"v", hs, T)]))
    assert records[0].headers == (("a", b"1"), ("b", None), ("a", b""), ("a", b"3"))


def test_unicode_header_keys_round_trip_as_utf8() -> None:
    buf = encode_batch([(None, b"v", [("ключ-😀", b"x")], T)])
    assert "ключ-😀".encode() in buf
    assert decode_batch(buf)[1][0].headers == (("ключ-😀", b"x"),)


def test_empty_header_list_and_none_both_mean_no_headers() -> None:
    assert encode_batch([(None, b"v", [], T)]) == encode_batch([(None, b"v", None, T)])


def test_negative_timestamp_deltas_round_trip() -> None:
    buf = encode_batch([(None, b"a", None, T), (None, b"b", None, T - 1000), (None, b"c", None, 0)])
    h, records = decode_batch(buf)
    assert [r.timestamp for r in records] == [T, T - 1000, 0]
    assert (h.base_timestamp, h.max_timestamp) == (T, T)


@pytest.mark.parametrize("via", ["encode_values", "encode_batch"])
def test_offset_deltas_and_lengths_past_the_varint_cache_round_trip(via: str) -> None:
    n = (1 << 14) + 5  # the encoders cache varints below 2**14
    values = [b""] * (n - 1) + [b"z" * ((1 << 14) + 1)]
    if via == "encode_values":
        buf = encode_values(values, T)
    else:
        buf = encode_batch([(None, v, None, T + i) for i, v in enumerate(values)])
    _, records = decode_batch(buf)
    assert [r.offset for r in records] == list(range(n))
    assert records[-1].value == values[-1]
    if via == "encode_batch":
        assert [r.timestamp for r in records] == [T + i for i in range(n)]


def test_decoded_records_do_not_depend_on_the_input_buffer_type() -> None:
    ref = decode_batch(VECTOR_B)
    assert decode_batch(bytearray(VECTOR_B)) == ref
    assert decode_batch(memoryview(VECTOR_B)) == ref


def test_encoders_refuse_an_empty_batch() -> None:
    with pytest.raises(ValueError):
        encode_batch([])
    with pytest.raises(ValueError):
        encode_values([], T)


@pytest.mark.parametrize("c", [Compression.SNAPPY, Compression.LZ4, Compression.ZSTD])
def test_encoder_writes_only_gzip(c: Compression) -> None:
    with pytest.raises(ValueError, match="gzip"):
        encode_batch(A_RECORDS, compression=c)


# --------------------------------------------------------------------------- batch structure


def test_batch_without_records_decodes_to_an_empty_list() -> None:
    # Kafka's compactor can leave a batch whose records are all gone.
    h, records = decode_batch(batch(b"", 0, last_offset_delta=4))
    assert records == [] and h.records_count == 0 and h.next_offset == 5


def test_invalid_crc_is_detected() -> None:
    buf = bytearray(VECTOR_A)
    buf[17] ^= 0x01
    with pytest.raises(CorruptRecordError, match="CRC mismatch"):
        validate_batch(buf)
    with pytest.raises(CorruptRecordError, match="CRC mismatch"):
        decode_batch(bytes(buf))


def test_every_bit_flip_under_the_crc_is_detected() -> None:
    for i in range(21, len(VECTOR_A)):
        for bit in range(8):
            buf = bytearray(VECTOR_A)
            buf[i] ^= 1 << bit
            with pytest.raises(CorruptRecordError):
                validate_batch(buf)


@pytest.mark.parametrize("length", [-1, 0, 1, 48, -(2**31)])
def test_batch_length_below_the_header_size_is_rejected(length: int) -> None:
    buf = bytearray(VECTOR_A)
    struct.pack_into(">i", buf, 8, length)
    with pytest.raises(CorruptRecordError, match="below the minimum"):
        validate_batch(buf)


def test_batch_of_exactly_the_header_size_is_structurally_accepted() -> None:
    h = validate_batch(batch(b"", 0, last_offset_delta=0))
    assert h.batch_length == BATCH_OVERHEAD - LOG_OVERHEAD


@pytest.mark.parametrize("cut", [1, 10, 17])
def test_batch_running_past_the_end_of_the_data_is_rejected(cut: int) -> None:
    with pytest.raises(CorruptRecordError, match="past the end"):
        validate_batch(VECTOR_A[:-cut])


@pytest.mark.parametrize("length", [2**31 - 1, 67, 100])
def test_batch_length_larger_than_the_data_is_rejected(length: int) -> None:
    buf = bytearray(VECTOR_A)
    struct.pack_into(">i", buf, 8, length)
    with pytest.raises(CorruptRecordError, match="past the end"):
        validate_batch(buf)


@pytest.mark.parametrize("n", [0, 11])
def test_truncated_batch_prefix_is_rejected(n: int) -> None:
    with pytest.raises(CorruptRecordError, match="prefix"):
        validate_batch(VECTOR_A[:n])


def test_read_header_on_short_input_raises_corrupt() -> None:
    assert read_header(VECTOR_A).crc == 0xCDFE91DB
    with pytest.raises(CorruptRecordError, match="too short"):
        read_header(VECTOR_A[:60])


def test_batch_size_accessors_match_the_bytes_written() -> None:
    for buf in (VECTOR_A, VECTOR_B, VECTOR_C, encode_values([b"x" * 1000] * 50, T)):
        h = read_header(buf)
        assert h.size == len(buf) == h.batch_length + LOG_OVERHEAD


TWO = rec(value=b"a") + rec(od=1, value=b"b")


@pytest.mark.parametrize("compress", [False, True], ids=["none", "gzip"])
@pytest.mark.parametrize("count", [3, 4, 1000, 2**31 - 1])
def test_records_count_larger_than_records_present_is_rejected(compress: bool, count: int) -> None:
    blob, attrs = (gz(TWO), 1) if compress else (TWO, 0)
    assert len(decode_batch(batch(blob, 2, attributes=attrs))[1]) == 2
    expect_corrupt(batch(blob, count, attributes=attrs, last_offset_delta=1))


@pytest.mark.parametrize("compress", [False, True], ids=["none", "gzip"])
@pytest.mark.parametrize("count", [0, 1])
def test_records_count_smaller_than_records_present_is_rejected(compress: bool, count: int) -> None:
    blob, attrs = (gz(TWO), 1) if compress else (TWO, 0)
    expect_corrupt(batch(blob, count, attributes=attrs, last_offset_delta=1), "left over")


def test_records_count_larger_than_records_present_in_a_roomy_section_is_rejected() -> None:
    # Enough bytes for two minimal records, but only one record: reading runs off the end.
    one = rec(value=b"v" * 20)
    assert len(decode_batch(batch(one, 1))[1]) == 1
    expect_corrupt(batch(one, 2, last_offset_delta=1))
    expect_corrupt(batch(gz(one), 2, attributes=1, last_offset_delta=1))


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x00\x00\x04ab",  # key fills the record: the value length lies past the end
        b"\x00\x00\x00\x01\x04ab",  # value fills it: the header count lies past the end
        b"\x00\x00\x00\x01\x01",  # five bytes declared as six
    ],
    ids=["value-length", "header-count", "short-body"],
)
def test_last_record_fields_running_off_the_records_section_are_rejected(body: bytes) -> None:
    expect_corrupt(batch(zz(6) + body, 1))


@pytest.mark.parametrize("count", [-1, -(2**31)])
def test_negative_records_count_is_rejected(count: int) -> None:
    with pytest.raises(CorruptRecordError, match="negative"):
        validate_batch(batch(TWO, count, last_offset_delta=1))


def test_negative_last_offset_delta_is_rejected() -> None:
    with pytest.raises(CorruptRecordError, match="negative"):
        validate_batch(batch(TWO, 2, last_offset_delta=-1))


def test_records_count_of_int32_max_is_refused_before_allocating() -> None:
    buf = batch(TWO, 2**31 - 1, last_offset_delta=1)
    tracemalloc.start()
    try:
        with pytest.raises(CorruptRecordError, match="cannot fit"):
            decode_batch(buf)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_negative_base_offset_is_rejected() -> None:
    with pytest.raises(CorruptRecordError, match="out of range"):
        validate_batch(batch(TWO, 2, base_offset=-1))


def test_last_offset_overflowing_int64_is_rejected() -> None:
    assert validate_batch(batch(TWO, 2, base_offset=2**63 - 2)).last_offset == 2**63 - 1
    with pytest.raises(CorruptRecordError, match="out of range"):
        validate_batch(batch(TWO, 2, base_offset=2**63 - 1))


@pytest.mark.parametrize("magic", [0, 1, 3, -1, 127])
def test_magic_other_than_2_is_rejected(magic: int) -> None:
    with pytest.raises(CorruptRecordError, match="magic"):
        validate_batch(batch(TWO, 2, magic=magic))


@pytest.mark.parametrize("bit", range(7, 16))
def test_unknown_attribute_bits_are_rejected(bit: int) -> None:
    attrs = struct.unpack(">h", struct.pack(">H", 1 << bit))[0]
    with pytest.raises(CorruptRecordError, match="unknown attributes"):
        validate_batch(batch(TWO, 2, attributes=attrs))


@pytest.mark.parametrize("codec_id", [5, 6, 7])
def test_unknown_compression_codecs_are_rejected(codec_id: int) -> None:
    with pytest.raises(CorruptRecordError, match="unknown attributes"):
        validate_batch(batch(TWO, 2, attributes=codec_id))


def test_control_and_transactional_bits_are_readable() -> None:
    for attrs, txn, ctl in ((0x10, True, False), (0x20, False, True), (0x30, True, True)):
        h, records = decode_batch(batch(TWO, 2, attributes=attrs))
        assert (h.is_transactional, h.is_control) == (txn, ctl)
        assert [r.value for r in records] == [b"a", b"b"]


def test_control_batch_with_a_commit_marker_round_trips() -> None:
    # Control record: key = version int16 0 + type int16 (1 = commit), value = version + epoch.
    marker = rec(key=struct.pack(">hh", 0, 1), value=struct.pack(">hi", 0, 7))
    h, records = decode_batch(batch(marker, 1, attributes=0x30))
    assert h.is_control and h.is_transactional
    assert struct.unpack(">hh", records[0].key) == (0, 1)


def test_log_append_time_gives_every_record_the_max_timestamp() -> None:
    blob = rec(tsd=0, value=b"a") + rec(tsd=-99, od=1, value=b"b")
    h, records = decode_batch(batch(blob, 2, attributes=0x08, max_ts=T + 12345))
    assert h.timestamp_type == "LogAppendTime"
    assert [r.timestamp for r in records] == [T + 12345, T + 12345]
    _, create = decode_batch(batch(blob, 2, max_ts=T + 12345))
    assert [r.timestamp for r in create] == [T, T - 99]


def test_delete_horizon_bit_is_accepted_and_deltas_stay_relative() -> None:
    horizon = T + 10_000
    h, records = decode_batch(batch(rec(tsd=-10_000), 1, attributes=0x40, base_ts=horizon))
    assert h.attributes == 0x40 and records[0].timestamp == T


def test_changing_max_timestamp_without_a_new_crc_is_detected() -> None:
    # Kafka: switching to LogAppendTime rewrites attributes and maxTimestamp, so it needs a new CRC.
    buf = bytearray(VECTOR_A)
    struct.pack_into(">hiqq", buf, 21, 0x08, 1, T, T + 999)
    with pytest.raises(CorruptRecordError, match="CRC"):
        validate_batch(buf)
    assert decode_batch(recrc(buf))[0].timestamp_type == "LogAppendTime"


@given(
    st.integers(min_value=0, max_value=2**63 - 2),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
)
@settings(max_examples=200, deadline=None, database=None)
def test_changing_base_offset_and_leader_epoch_keeps_the_crc_valid(base: int, epoch: int) -> None:
    buf = bytearray(VECTOR_A)
    stamp_base_offset(buf, base)
    struct.pack_into(">i", buf, 12, epoch)
    h, records = decode_batch(bytes(buf))
    assert h.crc == 0xCDFE91DB
    assert (h.base_offset, h.partition_leader_epoch) == (base, epoch)
    assert [r.offset for r in records] == [base, base + 1]


def test_stamp_base_offset_at_a_position_touches_only_that_batch() -> None:
    log = bytearray(VECTOR_A + VECTOR_B)
    stamp_base_offset(log, 2, pos=len(VECTOR_A))
    assert log[: len(VECTOR_A)] == VECTOR_A
    assert [h.base_offset for _, h in iter_batches(log)] == [0, 2]
    assert decode_batch(log, len(VECTOR_A))[1][0].offset == 2


def test_expected_offset_mismatch_is_rejected() -> None:
    assert validate_batch(VECTOR_D, expected_offset=42).base_offset == 42
    with pytest.raises(CorruptRecordError, match="expected"):
        validate_batch(VECTOR_D, expected_offset=41)


def test_batch_over_max_batch_bytes_is_rejected() -> None:
    assert validate_batch(VECTOR_A, max_batch_bytes=78).size == 78
    with pytest.raises(CorruptRecordError, match="exceeds the limit"):
        validate_batch(VECTOR_A, max_batch_bytes=77)


def test_validate_batch_respects_an_end_inside_the_buffer() -> None:
    log = VECTOR_A + VECTOR_B
    assert validate_batch(log, 0, len(VECTOR_A)).size == 78
    with pytest.raises(CorruptRecordError, match="past the end"):
        validate_batch(log, 0, len(VECTOR_A) - 1)


def test_iter_batches_stops_at_the_first_corrupt_batch_after_yielding_the_good_ones() -> None:
    bad = bytearray(VECTOR_C)
    bad[-1] ^= 0xFF
    seen: list[int] = []
    with pytest.raises(CorruptRecordError) as info:
        for pos, _ in iter_batches(VECTOR_A + VECTOR_B + bytes(bad)):
            seen.append(pos)
    assert seen == [0, 78]
    assert info.value.position == 152


def test_iter_batches_passes_checks_through_to_validate_batch() -> None:
    with pytest.raises(CorruptRecordError, match="exceeds the limit"):
        list(iter_batches(VECTOR_A + VECTOR_B, max_batch_bytes=75))


def test_iter_batches_rejects_trailing_garbage_shorter_than_a_prefix() -> None:
    with pytest.raises(CorruptRecordError, match="prefix"):
        list(iter_batches(VECTOR_A + b"\x00" * 5))


def test_decode_errors_report_the_batch_position_and_are_logq_errors() -> None:
    bad = batch(rec(value=b"v", value_len=zz(9)), 1)
    with pytest.raises(CorruptRecordError) as info:
        decode_batch(VECTOR_A + bad, len(VECTOR_A))
    assert info.value.position == len(VECTOR_A)
    assert isinstance(info.value, LogqError)
    assert str(len(VECTOR_A)) in str(info.value)


# --------------------------------------------------------------------------- record fields


def test_valid_control_record_for_the_field_tests() -> None:
    # Every mutation below starts from this record, which decodes.
    blob = rec(key=b"key", value=b"value", headers=[(b"h", b"x")])
    assert decode_batch(batch(blob, 1))[1] == [Record(0, T, b"key", b"value", (("h", b"x"),))]


@pytest.mark.parametrize("kl", [-2, -3, -(2**31)])
def test_negative_key_length_other_than_minus_one_is_rejected(kl: int) -> None:
    expect_corrupt(batch(rec(key=b"key", key_len=zz(kl)), 1), "key length")


@pytest.mark.parametrize("kl", [7, 50, 2**31 - 1])
def test_key_length_past_the_record_end_is_rejected(kl: int) -> None:
    expect_corrupt(batch(rec(key=b"key", key_len=zz(kl)), 1), "key length")


@pytest.mark.parametrize("vl", [-2, -(2**31)])
def test_negative_value_length_other_than_minus_one_is_rejected(vl: int) -> None:
    expect_corrupt(batch(rec(value=b"value", value_len=zz(vl)), 1), "value length")


@pytest.mark.parametrize("vl", [7, 2**31 - 1])
def test_value_length_past_the_record_end_is_rejected(vl: int) -> None:
    expect_corrupt(batch(rec(value=b"value", value_len=zz(vl)), 1), "value length")


def test_value_length_running_into_the_next_record_is_rejected() -> None:
    blob = rec(value=b"ab", value_len=zz(3)) + rec(od=1, value=b"c")
    expect_corrupt(batch(blob, 2))


def test_non_canonical_null_key_is_still_null() -> None:
    _, records = decode_batch(batch(rec(key_len=zz(-1, width=3)), 1))
    assert records[0].key is None


@pytest.mark.parametrize("n", [2, 3, 2**31 - 1])
def test_header_count_too_high_is_rejected(n: int) -> None:
    blob = rec(headers=[(b"h", b"x")], header_count=zz(n))
    expect_corrupt(batch(blob, 1))


def test_header_count_too_low_is_rejected() -> None:
    blob = rec(headers=[(b"h", b"x"), (b"i", b"y")], header_count=zz(1))
    expect_corrupt(batch(blob, 1), "record body")
    expect_corrupt(batch(rec(headers=[(b"h", b"x")], header_count=zz(0)), 1), "record body")


@pytest.mark.parametrize("n", [-1, -2, -(2**31)])
def test_negative_header_count_is_rejected(n: int) -> None:
    expect_corrupt(batch(rec(headers=[(b"h", b"x")], header_count=zz(n)), 1), "header count")


def test_huge_header_count_is_refused_before_allocating() -> None:
    buf = batch(rec(headers=[(b"h", b"x")], header_count=zz(2**31 - 1)), 1)
    tracemalloc.start()
    try:
        with pytest.raises(CorruptRecordError, match="header count"):
            decode_batch(buf)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


@pytest.mark.parametrize("hkl", [-1, -2, -(2**31)])
def test_negative_or_null_header_key_length_is_rejected(hkl: int) -> None:
    tail = zz(hkl) + zz(1) + b"x"
    expect_corrupt(batch(rec(header_count=zz(1), tail=tail), 1), "header key length")


def test_header_key_length_past_the_record_end_is_rejected() -> None:
    tail = zz(40) + b"h" + zz(1) + b"x"
    expect_corrupt(batch(rec(header_count=zz(1), tail=tail), 1), "header key length")


@pytest.mark.parametrize("hvl", [-2, 5, 2**31 - 1])
def test_bad_header_value_length_is_rejected(hvl: int) -> None:
    tail = zz(1) + b"h" + zz(hvl) + b"x"
    expect_corrupt(batch(rec(header_count=zz(1), tail=tail), 1), "header value length")


def test_null_header_value_is_accepted() -> None:
    tail = zz(1) + b"h" + zz(-1)
    assert decode_batch(batch(rec(header_count=zz(1), tail=tail), 1))[1][0].headers == (("h", None),)


def test_invalid_utf8_header_key_is_rejected() -> None:
    expect_corrupt(batch(rec(headers=[(b"\xff\xfe", b"x")]), 1), "malformed")


def test_record_length_longer_than_its_fields_is_rejected() -> None:
    expect_corrupt(batch(rec(length_delta=1) + b"\x00", 1), "record body")


def test_record_length_shorter_than_its_fields_is_rejected() -> None:
    expect_corrupt(batch(rec(key=b"key", length_delta=-1), 1))
    blob = rec(value=b"a", length_delta=-1) + rec(od=1, value=b"b")
    expect_corrupt(batch(blob, 2))


@pytest.mark.parametrize("ln", [-1, 0, 5, -(2**31)])
def test_record_length_below_the_minimum_is_rejected(ln: int) -> None:
    blob = zz(ln) + b"\x00" * 6
    expect_corrupt(batch(blob, 1), "record length")


def test_record_length_past_the_records_section_is_rejected() -> None:
    expect_corrupt(batch(rec(length_delta=100), 1), "record length")
    expect_corrupt(batch(zz(2**31 - 1) + b"\x00" * 6, 1), "record length")


@pytest.mark.parametrize(
    "blob",
    [
        b"\x80",  # record length
        zz(6) + b"\x00\x80",  # timestamp delta
        zz(6) + b"\x00\x00\x80",  # offset delta
        zz(6) + b"\x00\x00\x00\x80",  # key length
        zz(6) + b"\x00\x00\x00\x01\x80",  # value length
        zz(6) + b"\x00\x00\x00\x01\x01\x80",  # header count
        zz(8) + b"\x00\x00\x00\x01\x01\x02\x80",  # header key length
    ],
    ids=["length", "timestamp", "offset", "key", "value", "headers", "header-key"],
)
def test_truncated_varints_are_rejected(blob: bytes) -> None:
    expect_corrupt(batch(blob, 1))


def test_truncated_varint_inside_a_gzip_records_section_is_rejected() -> None:
    expect_corrupt(batch(gz(rec(value=b"v") + b"\x80"), 1, attributes=1))


# --------------------------------------------------------------------------- compression


def test_gzip_written_by_the_zlib_module_with_zlib_header_is_read() -> None:
    h, records = decode_batch(batch(zlib.compress(TWO), 2, attributes=1))
    assert h.compression is Compression.GZIP and [r.value for r in records] == [b"a", b"b"]


def test_gzip_output_exactly_at_the_cap_is_accepted_and_one_byte_over_is_refused() -> None:
    buf = batch(gz(TWO), 2, attributes=1)
    h = validate_batch(buf)
    assert len(decode_records(buf, h, max_decompressed_bytes=len(TWO))) == 2
    with pytest.raises(CorruptRecordError, match="exceed"):
        decode_records(buf, h, max_decompressed_bytes=len(TWO) - 1)


def test_corrupt_gzip_stream_is_rejected() -> None:
    stream = bytearray(gz(TWO))
    stream[12] ^= 0xFF
    expect_corrupt(batch(bytes(stream), 2, attributes=1), "gzip")
    expect_corrupt(batch(b"not gzip at all", 2, attributes=1), "gzip")


def test_gzip_stream_with_a_wrong_inner_crc_is_rejected() -> None:
    stream = bytearray(gz(TWO))
    stream[-8] ^= 0x01  # gzip trailer CRC-32 of the uncompressed data
    expect_corrupt(batch(bytes(stream), 2, attributes=1), "gzip")


def test_truncated_gzip_stream_is_rejected_even_when_its_records_parse() -> None:
    # Regression: a gzip stream cut before its 8-byte trailer still inflated to the full
    # records section, so the gzip CRC-32 was never checked and the batch was accepted.
    full = gz(TWO)
    assert len(decode_batch(batch(full, 2, attributes=1))[1]) == 2
    expect_corrupt(batch(full[:-8], 2, attributes=1), "truncated")
    expect_corrupt(batch(full[:-1], 2, attributes=1), "truncated")


def _xerial(data: bytes, chunk: int) -> bytes:
    out = bytearray(b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1))
    for i in range(0, len(data), chunk):
        block = bytes(cramjam.snappy.compress_raw(data[i : i + chunk]))
        out += struct.pack(">i", len(block)) + block
    return bytes(out)


def _compressors() -> list[object]:
    if cramjam is None:
        return []
    cases = [
        ("snappy-raw", 2, lambda d: bytes(cramjam.snappy.compress_raw(d))),
        ("snappy-xerial", 2, lambda d: _xerial(d, 32 * 1024)),
        ("snappy-xerial-small-chunks", 2, lambda d: _xerial(d, 7)),
        ("lz4-frame", 3, lambda d: bytes(cramjam.lz4.compress(d))),
        ("zstd", 4, lambda d: bytes(cramjam.zstd.compress(d))),
        ("zstd-two-frames", 4, lambda d: bytes(cramjam.zstd.compress(d[:5])) + bytes(cramjam.zstd.compress(d[5:]))),
    ]
    return [pytest.param(*case, id=case[0]) for case in cases]


def _many_records(n: int) -> bytes:
    return b"".join(rec(od=i, key=b"k%d" % i, value=b"v" * (i % 50)) for i in range(n))


@needs_cramjam
@pytest.mark.parametrize("name,codec_id,compress", _compressors())
@pytest.mark.parametrize("n", [1, 2000])
def test_snappy_lz4_and_zstd_batches_are_read(name: str, codec_id: int, compress: object, n: int) -> None:
    raw = _many_records(n)
    blob = compress(raw)  # type: ignore[operator]
    h, records = decode_batch(batch(blob, n, attributes=codec_id))
    assert h.compression == codec_id
    assert [r.key for r in records] == [b"k%d" % i for i in range(n)]
    assert records[-1].value == b"v" * ((n - 1) % 50)


@needs_cramjam
@pytest.mark.parametrize("name,codec_id,compress", _compressors())
def test_snappy_lz4_and_zstd_respect_the_decompression_cap(name: str, codec_id: int, compress: object) -> None:
    raw = _many_records(300)
    buf = batch(compress(raw), 300, attributes=codec_id)  # type: ignore[operator]
    h = validate_batch(buf)
    assert len(decode_records(buf, h, max_decompressed_bytes=len(raw))) == 300
    with pytest.raises(CorruptRecordError):
        decode_records(buf, h, max_decompressed_bytes=len(raw) - 1)


@needs_cramjam
@pytest.mark.parametrize("codec_id", [2, 3, 4])
def test_garbage_in_a_snappy_lz4_or_zstd_batch_is_corrupt(codec_id: int) -> None:
    xerial_huge_chunk = b"\x82SNAPPY\x00" + b"\x00" * 8 + b"\x7f\xff\xff\xff"
    for junk in (b"", b"\x00", b"garbage" * 10, xerial_huge_chunk):
        expect_corrupt(batch(junk, 1, attributes=codec_id))


@needs_cramjam
@pytest.mark.parametrize("codec_id,mod", [(3, "lz4"), (4, "zstd")])
def test_small_lz4_and_zstd_batches_do_not_allocate_the_whole_decompression_cap(codec_id: int, mod: str) -> None:
    # Regression: every lz4/zstd batch allocated and zeroed a buffer of the full cap
    # (16 MiB by default), about 1 ms per batch however small it was.
    raw = _many_records(20)
    buf = batch(bytes(getattr(cramjam, mod).compress(raw)), 20, attributes=codec_id)
    tracemalloc.start()
    try:
        _, records = decode_batch(buf)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(records) == 20
    assert peak < codec.DEFAULT_MAX_DECOMPRESSED_BYTES // 8


def test_compressed_batch_without_cramjam_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_codecs, "_cramjam", lambda: None)
    err = expect_corrupt(batch(b"\x00" * 8, 1, attributes=4), "cramjam")
    assert "zstd" in err.reason
