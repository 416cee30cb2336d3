"""Kafka RecordBatch v2 (magic 2) codec: a sans-IO core over bytes and memoryviews.

No files, no clock: every function takes bytes in and gives bytes or values out, so it can
be tested exhaustively and fuzzed. Anything malformed raises :class:`CorruptRecordError`
(never ``IndexError`` or ``struct.error``), and no length read from the input is trusted
before it is checked against the bytes actually present.

Batch layout (all integers big-endian, signed, except the CRC)::

    offset  size  field
     0      8     baseOffset            first offset of the batch
     8      4     batchLength           bytes that follow this field (batch size - 12)
    12      4     partitionLeaderEpoch  not covered by the CRC
    16      1     magic                 2
    17      4     crc                   CRC-32C (Castagnoli) of bytes [21, end), unsigned
    21      2     attributes            bits 0-2 codec, 3 timestamp type, 4 txn, 5 control
    23      4     lastOffsetDelta       lastOffset - baseOffset
    27      8     baseTimestamp         timestamp of the first record
    35      8     maxTimestamp          largest record timestamp
    43      8     producerId            -1 when not idempotent
    51      2     producerEpoch         -1 when not idempotent
    53      4     baseSequence          -1 when not idempotent
    57      4     recordsCount
    61      ...   records (or one compressed blob of them)

Record layout (varint = zigzag + LEB128, as in protobuf's sint32/sint64)::

    length varint | attributes int8 | timestampDelta varlong | offsetDelta varint |
    keyLength varint (-1 = null) | key | valueLength varint (-1 = null) | value |
    headerCount varint | headers: keyLength varint, key utf-8, valueLength varint, value
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from enum import IntEnum
from types import ModuleType
from typing import Any, NamedTuple

from crc32c import crc32c

from logq.errors import CorruptRecordError, InvalidRecordError

__all__ = [
    "MAGIC",
    "BATCH_OVERHEAD",
    "LOG_OVERHEAD",
    "CRC_OFFSET",
    "CRC_START",
    "Compression",
    "BatchHeader",
    "BatchRecord",
    "encode_batch",
    "encode_values",
    "read_header",
    "validate_batch",
    "decode_records",
    "decode_batch",
    "iter_batches",
    "peek_batch_size",
    "stamp_base_offset",
    "encode_varint",
    "decode_varint",
    "walk_records",
    "IMPLEMENTATION",
    "implementations",
    "use_implementation",
    "describe_implementation",
]

MAGIC = 2
BATCH_OVERHEAD = 61  # header bytes before the first record
LOG_OVERHEAD = 12  # baseOffset + batchLength: all a reader needs to skip a batch
CRC_OFFSET = 17  # where the 4-byte CRC sits
CRC_START = 21  # the CRC covers attributes .. end of batch
MIN_RECORD_BYTES = 7  # length, attrs, ts, offset, key, value, header count: 1 byte each
DEFAULT_MAX_DECOMPRESSED_BYTES = 16 * 1024 * 1024

_HEADER = struct.Struct(">qiibIhiqqqhii")
_PREFIX = struct.Struct(">qi")  # baseOffset, batchLength
_Q = struct.Struct(">q")
assert _HEADER.size == BATCH_OVERHEAD

ATTR_CODEC_MASK = 0x07
ATTR_LOG_APPEND_TIME = 0x08
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20
ATTR_DELETE_HORIZON = 0x40
ATTR_KNOWN = 0x7F

Headers = tuple[tuple[str, bytes | None], ...]
HeaderInput = Sequence[tuple[str | bytes, bytes | None]] | dict
Buffer = bytes | bytearray | memoryview


class Compression(IntEnum):
    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


class BatchHeader(NamedTuple):
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        """Bytes the whole batch occupies in the log."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> Compression:
        return Compression(self.attributes & ATTR_CODEC_MASK)

    @property
    def timestamp_type(self) -> str:
        return "LogAppendTime" if self.attributes & ATTR_LOG_APPEND_TIME else "CreateTime"

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & ATTR_TRANSACTIONAL)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & ATTR_CONTROL)


class BatchRecord(NamedTuple):
    """One decoded record. ``headers`` is a tuple of (key, value) pairs; keys may repeat."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()


# --------------------------------------------------------------------------- varints


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def encode_varint(n: int) -> bytes:
    """Zigzag + LEB128 encoding of a signed 64-bit integer (Kafka varint/varlong)."""
    if not -(1 << 63) <= n < (1 << 63):
        raise OverflowError(f"{n} does not fit a varlong")
    z = _zigzag(n) & 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


# Cached encodings of 0 .. _CACHE-1: the hot encode path does a list lookup, not a loop.
_CACHE = 1 << 14
_V = [encode_varint(i) for i in range(_CACHE)]
_V_NULL = encode_varint(-1)


def _v(n: int) -> bytes:
    return _V[n] if 0 <= n < _CACHE else encode_varint(n)


def decode_varint(buf: Buffer, pos: int, limit: int, max_bytes: int = 10) -> tuple[int, int]:
    """Decode one varint at ``pos`` (not past ``limit``). Returns (value, next position).

    ``max_bytes`` is 5 for a varint (the value must fit an int32) and 10 for a varlong
    (int64); a final byte carrying bits beyond that width is rejected.
    """
    result = 0
    shift = 0
    for i in range(max_bytes):
        p = pos + i
        if p >= limit:
            raise CorruptRecordError(f"varint truncated at byte {pos}", position=pos)
        b = buf[p]
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if i == max_bytes - 1 and result >> (32 if max_bytes <= 5 else 64):
                break  # only the last allowed byte can overflow the width
            return (result >> 1) ^ -(result & 1), p + 1
        shift += 7
    else:
        raise CorruptRecordError(f"varint longer than {max_bytes} bytes at byte {pos}", position=pos)
    raise CorruptRecordError(f"varint at byte {pos} does not fit {32 if max_bytes <= 5 else 64} bits", position=pos)


# --------------------------------------------------------------------------- encoding


def _header_bytes(key: str | bytes) -> bytes:
    return key.encode("utf-8") if isinstance(key, str) else bytes(key)


def _encode_headers(headers: HeaderInput | None) -> bytes:
    if not headers:
        return b"\x00"
    items = headers.items() if isinstance(headers, dict) else headers
    parts = [b""]
    n = 0
    for hk, hv in items:
        kb = _header_bytes(hk)
        parts.append(_v(len(kb)))
        parts.append(kb)
        if hv is None:
            parts.append(_V_NULL)
        else:
            parts.append(_v(len(hv)))
            parts.append(hv)
        n += 1
    parts[0] = _v(n)
    return b"".join(parts)


RecordInput = tuple[bytes | None, bytes | None, HeaderInput | None, int]


def _encode_records_py(records: Sequence[RecordInput], base_ts: int) -> bytes:
    parts: list = []
    app = parts.append
    V = _V
    for i, (key, value, headers, ts) in enumerate(records):
        d = ts - base_ts
        tsd = V[d] if 0 <= d < _CACHE else encode_varint(d)
        od = V[i] if i < _CACHE else encode_varint(i)
        if key is None:
            kb = _V_NULL
        else:
            kl = len(key)
            kb = (V[kl] if kl < _CACHE else encode_varint(kl)) + key
        if value is None:
            vb = _V_NULL
            vlen_total = 1
        else:
            vl = len(value)
            vh = V[vl] if vl < _CACHE else encode_varint(vl)
            vb = vh + value
            vlen_total = len(vh) + vl
        hb = _encode_headers(headers) if headers else b"\x00"
        n = 1 + len(tsd) + len(od) + len(kb) + vlen_total + len(hb)
        app(b"%b\x00%b%b%b%b%b" % (V[n] if n < _CACHE else encode_varint(n), tsd, od, kb, vb, hb))
    return b"".join(parts)


def _finish_batch(
    records_blob: bytes,
    count: int,
    base_offset: int,
    base_ts: int,
    max_ts: int,
    attributes: int,
    partition_leader_epoch: int,
    producer_id: int,
    producer_epoch: int,
    base_sequence: int,
) -> bytes:
    body = _HEADER.pack(
        base_offset,
        BATCH_OVERHEAD - LOG_OVERHEAD + len(records_blob),
        partition_leader_epoch,
        MAGIC,
        0,
        attributes,
        count - 1,
        base_ts,
        max_ts,
        producer_id,
        producer_epoch,
        base_sequence,
        count,
    )
    crc = crc32c(records_blob, crc32c(body[CRC_START:]))
    return body[:CRC_OFFSET] + crc.to_bytes(4, "big") + body[CRC_START:] + records_blob


def encode_batch(
    records: Sequence[RecordInput],
    base_offset: int = 0,
    *,
    compression: Compression = Compression.NONE,
    partition_leader_epoch: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
) -> bytes:
    """Encode ``(key, value, headers, timestamp_ms)`` tuples as one v2 batch.

    Offsets are ``base_offset + i``; the batch is never empty. Only gzip is written here;
    every codec Kafka defines can be read (see :func:`decode_records`).
    """
    if not records:
        raise InvalidRecordError("a batch holds at least one record")
    if compression not in (Compression.NONE, Compression.GZIP):
        name = compression.name if isinstance(compression, Compression) else repr(compression)
        raise InvalidRecordError(f"writing {name} batches is not supported; use gzip")
    try:
        base_ts = records[0][3]
        max_ts = max(r[3] for r in records)
        blob: bytes = _encode_records(records, base_ts)
        attributes = 0
        if compression == Compression.GZIP:
            blob = zlib.compress(blob, 6, wbits=31)
            attributes = int(Compression.GZIP)
        return _finish_batch(
            blob,
            len(records),
            base_offset,
            base_ts,
            max_ts,
            attributes,
            partition_leader_epoch,
            producer_id,
            producer_epoch,
            base_sequence,
        )
    except (TypeError, ValueError, OverflowError, IndexError, struct.error) as e:
        # Only the input can cause these here: a field of the wrong type or out of range.
        raise InvalidRecordError(f"records cannot be encoded: {e}") from None


def encode_values(
    values: Sequence[bytes],
    timestamp: int,
    base_offset: int = 0,
    *,
    key: bytes | None = None,
    partition_leader_epoch: int = 0,
) -> bytes:
    """Fast path: many values sharing one key (None by default), one timestamp, no headers."""
    if not values:
        raise InvalidRecordError("a batch holds at least one record")
    try:
        out: bytes = _encode_values(values, timestamp, base_offset, key, partition_leader_epoch)
        return out
    except (TypeError, ValueError, OverflowError, struct.error) as e:
        # Only the input can cause these here: a value that is not bytes, or out of range.
        raise InvalidRecordError(f"values cannot be encoded: {e}") from None


def _encode_values_py(
    values: Sequence[bytes], timestamp: int, base_offset: int, key: bytes | None, partition_leader_epoch: int
) -> bytes:
    V = _V
    if key is None:
        kb = _V_NULL
    else:
        kb = _v(len(key)) + key
    fixed = 2 + len(kb) + 1  # attributes, timestampDelta (0), key, header count
    parts: list[bytes] = []
    app = parts.append
    for i, value in enumerate(values):
        vl = len(value)
        od = V[i] if i < _CACHE else encode_varint(i)
        vh = V[vl] if vl < _CACHE else encode_varint(vl)
        n = fixed + len(od) + len(vh) + vl
        app(b"%b\x00\x00%b%b%b%b\x00" % (V[n] if n < _CACHE else encode_varint(n), od, kb, vh, value))
    return _finish_batch(
        b"".join(parts),
        len(values),
        base_offset,
        timestamp,
        timestamp,
        0,
        partition_leader_epoch,
        -1,
        -1,
        -1,
    )


def stamp_base_offset(batch: bytearray | memoryview, base_offset: int, pos: int = 0) -> None:
    """Set baseOffset in place. It lies outside the CRC, so the CRC stays valid."""
    _Q.pack_into(batch, pos, base_offset)


# --------------------------------------------------------------------------- decoding


def read_header(buf: Buffer, pos: int = 0) -> BatchHeader:
    """Parse the 61-byte header at ``pos`` without checking the CRC."""
    if len(buf) - pos < BATCH_OVERHEAD:
        raise CorruptRecordError(f"{len(buf) - pos} bytes is too short for a batch header", position=pos)
    return BatchHeader._make(_HEADER.unpack_from(buf, pos))


def validate_batch(
    buf: Buffer,
    pos: int = 0,
    end: int | None = None,
    *,
    max_batch_bytes: int | None = None,
    expected_offset: int | None = None,
) -> BatchHeader:
    """Check structure and CRC of the batch at ``pos``; return its header.

    The checks are the ones the CRC cannot make (it does not cover the first 17 bytes):
    magic, a length inside the buffer and the limit, a sane count, and optionally the
    expected base offset.
    """
    h: BatchHeader = _validate_batch(buf, pos, end, max_batch_bytes, expected_offset)
    return h


def _validate_batch_py(
    buf: Buffer,
    pos: int = 0,
    end: int | None = None,
    max_batch_bytes: int | None = None,
    expected_offset: int | None = None,
) -> BatchHeader:
    if end is None:
        end = len(buf)
    if end - pos < LOG_OVERHEAD:
        raise CorruptRecordError("truncated batch prefix", position=pos)
    base_offset, batch_length = _PREFIX.unpack_from(buf, pos)
    size = batch_length + LOG_OVERHEAD
    if batch_length < BATCH_OVERHEAD - LOG_OVERHEAD:
        raise CorruptRecordError(f"batch length {batch_length} below the minimum", position=pos)
    if max_batch_bytes is not None and size > max_batch_bytes:
        raise CorruptRecordError(f"batch size {size} exceeds the limit {max_batch_bytes}", position=pos)
    if pos + size > end:
        raise CorruptRecordError(
            f"batch of {size} bytes runs past the end of the data ({end - pos} left)",
            position=pos,
        )
    h = BatchHeader._make(_HEADER.unpack_from(buf, pos))
    if h.magic != MAGIC:
        raise CorruptRecordError(f"unsupported magic {h.magic}", position=pos)
    if h.attributes & ~ATTR_KNOWN or (h.attributes & ATTR_CODEC_MASK) > 4:
        raise CorruptRecordError(f"unknown attributes 0x{h.attributes:04x}", position=pos)
    if h.records_count < 0 or h.last_offset_delta < 0:
        raise CorruptRecordError("negative record count or offset delta", position=pos)
    if base_offset < 0 or base_offset + h.last_offset_delta >= 1 << 63:
        raise CorruptRecordError(f"base offset {base_offset} out of range", position=pos)
    if expected_offset is not None and base_offset != expected_offset:
        raise CorruptRecordError(f"base offset {base_offset} where {expected_offset} was expected", position=pos)
    actual = crc32c(memoryview(buf)[pos + CRC_START : pos + size])
    if actual != h.crc:
        raise CorruptRecordError(f"CRC mismatch: stored 0x{h.crc:08x}, computed 0x{actual:08x}", position=pos)
    return h


def peek_batch_size(buf: Buffer, pos: int = 0) -> int | None:
    """Bytes the batch at ``pos`` claims to occupy (from its 12-byte prefix, unchecked);
    None when fewer than 12 bytes are left. All a reader needs to skip or size a read."""
    if len(buf) - pos < LOG_OVERHEAD:
        return None
    return int(_PREFIX.unpack_from(buf, pos)[1]) + LOG_OVERHEAD


def iter_batches(
    buf: Buffer,
    pos: int = 0,
    end: int | None = None,
    *,
    max_batch_bytes: int | None = None,
    expected_offset: int | None = None,
    contiguous: bool = False,
    partial_ok: bool = False,
) -> Iterator[tuple[int, BatchHeader]]:
    """Yield (position, header) of each valid batch in ``buf[pos:end]``; raise
    CorruptRecordError at the first bad one. This is the one batch walker: the codec's
    callers, segment scans, log reads and recovery all walk batches through it.

    ``expected_offset`` is the first batch's base offset; with ``contiguous`` every later
    batch must start where the previous one ended (the CRC does not cover baseOffset).
    With ``partial_ok`` a batch cut short by ``end`` (a sane length whose bytes are not all
    in the buffer, or fewer than 12 bytes left) ends the walk quietly: the caller reads more
    and resumes after the last batch yielded. Lengths that cannot be right still raise.
    """
    if end is None:
        end = len(buf)
    expected = expected_offset
    while pos < end:
        if partial_ok:
            if end - pos < LOG_OVERHEAD:
                return
            size = int(_PREFIX.unpack_from(buf, pos)[1]) + LOG_OVERHEAD
            if BATCH_OVERHEAD <= size <= (max_batch_bytes or size) and pos + size > end:
                return
        h = validate_batch(buf, pos, end, max_batch_bytes=max_batch_bytes, expected_offset=expected)
        yield pos, h
        pos += h.size
        if contiguous:
            expected = h.next_offset


def _decompress(codec: int, data: bytes, cap: int) -> bytes:
    if codec == Compression.GZIP:
        d = zlib.decompressobj(wbits=47)  # gzip or zlib header
        try:
            out = d.decompress(data, cap + 1)
        except zlib.error as e:
            raise CorruptRecordError(f"gzip: {e}") from None
        if len(out) > cap:
            raise CorruptRecordError(f"decompressed records exceed {cap} bytes")
        if not d.eof:  # all input consumed, no trailer seen: its CRC-32 was never checked
            raise CorruptRecordError("gzip stream is truncated")
        return out
    from logq.codec import compression as _codecs

    return _codecs.decompress(codec, data, cap)


def decode_records(
    buf: Buffer,
    header: BatchHeader,
    pos: int = 0,
    *,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
    min_offset: int = 0,
    origin: tuple[type, str, int] | None = None,
) -> list:
    """Decode the records of a batch already checked by :func:`validate_batch`.

    Records below ``min_offset`` are parsed (to check them) but not returned. With
    ``origin=(cls, topic, partition)`` each record is built as
    ``cls(topic, partition, offset, timestamp, key, value, headers)`` in one step, which
    saves the consumer a second object per record.
    """
    data = _records_section(buf, header, pos, max_decompressed_bytes)
    try:
        out: list = _decode_records(data, header, min_offset, origin)
        return out
    except CorruptRecordError as e:
        raise CorruptRecordError(e.reason, position=pos) from None
    except (IndexError, UnicodeDecodeError) as e:
        raise CorruptRecordError(f"malformed record: {e}", position=pos) from None


def walk_records(
    buf: Buffer,
    header: BatchHeader,
    pos: int = 0,
    *,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
    min_offset: int = 0,
) -> int:
    """Check every record of a batch exactly as :func:`decode_records` does, without building
    them; return how many are at or above ``min_offset``. For batches that arrive from
    outside (a server checking a produce request) and any caller that only needs to know
    that the records parse."""
    data = _records_section(buf, header, pos, max_decompressed_bytes)
    try:
        n: int = _walk_records(data, header, min_offset)
        return n
    except CorruptRecordError as e:
        raise CorruptRecordError(e.reason, position=pos) from None
    except (IndexError, UnicodeDecodeError) as e:
        raise CorruptRecordError(f"malformed record: {e}", position=pos) from None


def _records_section(buf: Buffer, header: BatchHeader, pos: int, max_decompressed_bytes: int) -> Buffer:
    """The records of the batch at ``pos``: a view into ``buf`` or, compressed, the inflated bytes."""
    data = memoryview(buf)[pos + BATCH_OVERHEAD : pos + header.size]
    codec = header.attributes & ATTR_CODEC_MASK
    if codec:
        try:
            return _decompress(codec, bytes(data), max_decompressed_bytes)
        except CorruptRecordError as e:
            raise CorruptRecordError(e.reason, position=pos) from None
    return data


def _walk_records_py(data: Buffer, h: BatchHeader, min_offset: int = 0) -> int:
    return len(_decode_records_py(data, h, min_offset, None))


def _decode_records_py(
    data: Buffer, h: BatchHeader, min_offset: int = 0, origin: tuple[type, str, int] | None = None
) -> list:
    if not isinstance(data, bytes):
        data = bytes(data)
    count = h.records_count
    limit = len(data)
    if count * MIN_RECORD_BYTES > limit:
        raise CorruptRecordError(f"{count} records cannot fit in {limit} bytes")
    base_offset = h.base_offset
    base_ts = h.base_timestamp
    log_append = h.attributes & ATTR_LOG_APPEND_TIME
    max_ts = h.max_timestamp
    last_delta = h.last_offset_delta
    out: list[Any] = []
    app = out.append
    p = 0
    new = tuple.__new__
    R = BatchRecord
    if origin is not None:
        C, topic, part = origin
    for _ in range(count):
        b = data[p]
        if b < 0x80:
            ln = (b >> 1) ^ -(b & 1)
            p += 1
        elif data[p + 1] < 0x80:  # two-byte varint: lengths and deltas up to 8191
            z = (b & 0x7F) | (data[p + 1] << 7)
            ln = (z >> 1) ^ -(z & 1)
            p += 2
        else:
            ln, p = decode_varint(data, p, limit, 5)
        end = p + ln
        if ln < 6 or end > limit:
            raise CorruptRecordError(f"record length {ln} does not fit the batch")
        p += 1  # record attributes: unused
        b = data[p]
        if b < 0x80:
            tsd = (b >> 1) ^ -(b & 1)
            p += 1
        elif data[p + 1] < 0x80:  # two-byte varint: lengths and deltas up to 8191
            z = (b & 0x7F) | (data[p + 1] << 7)
            tsd = (z >> 1) ^ -(z & 1)
            p += 2
        else:
            tsd, p = decode_varint(data, p, end, 10)
        b = data[p]
        if b < 0x80:
            od = (b >> 1) ^ -(b & 1)
            p += 1
        elif data[p + 1] < 0x80:  # two-byte varint: lengths and deltas up to 8191
            z = (b & 0x7F) | (data[p + 1] << 7)
            od = (z >> 1) ^ -(z & 1)
            p += 2
        else:
            od, p = decode_varint(data, p, end, 5)
        b = data[p]
        if b == 1:
            key = None
            p += 1
        else:
            if b < 0x80:
                kl = (b >> 1) ^ -(b & 1)
                p += 1
            else:
                kl, p = decode_varint(data, p, end, 5)
            if kl < -1 or p + kl > end:
                raise CorruptRecordError(f"key length {kl} does not fit the record")
            key = None if kl == -1 else data[p : p + kl]
            if kl > 0:
                p += kl
        b = data[p]
        if b < 0x80:
            vl = (b >> 1) ^ -(b & 1)
            p += 1
        elif data[p + 1] < 0x80:  # two-byte varint: lengths and deltas up to 8191
            z = (b & 0x7F) | (data[p + 1] << 7)
            vl = (z >> 1) ^ -(z & 1)
            p += 2
        else:
            vl, p = decode_varint(data, p, end, 5)
        if vl == -1:
            value = None
        elif vl < 0 or p + vl > end:
            raise CorruptRecordError(f"value length {vl} does not fit the record")
        else:
            value = data[p : p + vl]
            p += vl
        b = data[p]
        if b == 0:
            headers: Headers = ()
            p += 1
        else:
            headers, p = _decode_headers(data, p, end)
        if p != end:
            raise CorruptRecordError(f"record body is {ln} bytes but its fields use {ln - end + p}")
        ts = max_ts if log_append else base_ts + tsd
        if not 0 <= od <= last_delta:
            raise CorruptRecordError(f"record offset delta {od} outside the batch's 0..{last_delta}")
        off = base_offset + od
        if off < min_offset:
            continue
        if origin is None:
            app(new(R, (off, ts, key, value, headers)))
        else:
            app(new(C, (topic, part, off, ts, key, value, headers)))
    if p != limit:
        raise CorruptRecordError(f"{limit - p} bytes left over after {count} records")
    return out


def _decode_headers(data: bytes, p: int, end: int) -> tuple[Headers, int]:
    n, p = decode_varint(data, p, end, 5)
    if n < 0 or n * 2 > end - p:
        raise CorruptRecordError(f"header count {n} does not fit the record")
    items = []
    for _ in range(n):
        kl, p = decode_varint(data, p, end, 5)
        if kl < 0 or p + kl > end:
            raise CorruptRecordError(f"header key length {kl} is invalid")
        hk = data[p : p + kl].decode("utf-8")
        p += kl
        vl, p = decode_varint(data, p, end, 5)
        if vl == -1:
            hv = None
        elif vl < 0 or p + vl > end:
            raise CorruptRecordError(f"header value length {vl} is invalid")
        else:
            hv = data[p : p + vl]
            p += vl
        items.append((hk, hv))
    return tuple(items), p


def decode_batch(
    buf: Buffer, pos: int = 0, max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES
) -> tuple[BatchHeader, list]:
    """Validate and decode the batch at ``pos``: (header, records)."""
    h = validate_batch(buf, pos)
    return h, decode_records(buf, h, pos, max_decompressed_bytes=max_decompressed_bytes)


# --------------------------------------------------------------------------- implementations
#
# The functions above are the one public seam. Each hands its per-record work to one of the
# module globals below, which hold either this module's pure-Python functions or their
# compiled twins from logq/codec/compiled.pyx (built by ``pip install`` when a C compiler is
# there). Twins take the same arguments, accept the same input and raise the same errors
# with the same messages; tests/codec runs its whole suite against each.

PURE_ENV = "LOGQ_PURE_PYTHON"

_PURE: dict[str, Any] = {
    "_validate_batch": _validate_batch_py,
    "_decode_records": _decode_records_py,
    "_walk_records": _walk_records_py,
    "_encode_records": _encode_records_py,
    "_encode_values": _encode_values_py,
}
_compiled_error: str | None = None
_compiled_module: ModuleType | None = None


def _load_compiled() -> ModuleType | None:
    global _compiled_error, _compiled_module
    if _compiled_module is None and _compiled_error is None:
        try:
            from logq.codec import compiled
        except ImportError as e:
            _compiled_error = f"the compiled codec is not built: {e}"
            return None
        compiled.bind(BatchHeader, BatchRecord, CorruptRecordError, crc32c, _validate_batch_py)
        _compiled_module = compiled
    return _compiled_module


def _functions(name: str) -> dict[str, Any]:
    if name == "pure":
        return _PURE
    if name == "compiled":
        mod = _load_compiled()
        if mod is None:
            raise RuntimeError(_compiled_error)
        return {
            "_validate_batch": mod.validate_batch,
            "_decode_records": mod.decode_records,
            "_walk_records": mod.walk_records,
            "_encode_records": mod.encode_records,
            "_encode_values": mod.encode_values,
        }
    raise ValueError(f"unknown codec implementation {name!r}: 'pure' or 'compiled'")


def implementations() -> dict[str, str | None]:
    """Each implementation's name and why it cannot be used here (None when it can)."""
    _load_compiled()
    return {"pure": None, "compiled": _compiled_error}


def use_implementation(name: str) -> str:
    """Switch this process to the ``"pure"`` or ``"compiled"`` codec and return the previous
    one; RuntimeError when the compiled codec is not built. For tests and measurements: the
    choice made at import is the right one otherwise."""
    global IMPLEMENTATION
    previous = IMPLEMENTATION
    globals().update(_functions(name))
    IMPLEMENTATION = name
    return previous


def describe_implementation() -> str:
    """The codec in use, and why when it is the pure one (``logq --version``, ``logq perf``)."""
    if IMPLEMENTATION == "compiled":
        return "compiled (Cython)"
    if os.environ.get(PURE_ENV) == "1":
        return f"pure Python ({PURE_ENV}=1)"
    _load_compiled()
    return f"pure Python ({_compiled_error})" if _compiled_error else "pure Python"


#: "compiled" or "pure": the codec this process uses. The compiled one when it is built
#: and LOGQ_PURE_PYTHON is not 1.
IMPLEMENTATION = "pure"
_validate_batch: Any = _validate_batch_py
_decode_records: Any = _decode_records_py
_walk_records: Any = _walk_records_py
_encode_records: Any = _encode_records_py
_encode_values: Any = _encode_values_py
if os.environ.get(PURE_ENV) != "1" and _load_compiled() is not None:
    use_implementation("compiled")
