"""Kafka's compression codecs: gzip (standard library), snappy, lz4 and zstd (``cramjam``).

Reading: Kafka clients write these codecs, so logq must read them. Output is always written
into a buffer of at most ``cap`` bytes: a decompression bomb fails with CorruptRecordError and
never allocates more than the cap (CVE-2023-34455 was an unchecked snappy chunk length).

Writing (:func:`compress`) produces the framing every Kafka client reads, the Java client's:

- gzip (1): one standard gzip stream (RFC 1952), deflate level 6 (Java's default).
- snappy (2): xerial's framing, as the Java client writes it: the 8-byte magic
  ``\\x82SNAPPY\\x00``, int32 version 1, int32 compatible version 1, then per 32 KiB of input an
  int32 length and one raw snappy block. Readers also accept one raw snappy block; xerial is
  what kafka-python, librdkafka and Java all read.
- lz4 (3): the LZ4 frame format with independent 64 KiB blocks, no block or content checksum
  and no content size: ``04 22 4D 18 60 40 82``, then per block an int32 little-endian size
  (high bit set: stored uncompressed) and the block, then a zero end mark. Java's reader
  refuses linked blocks, which is what a default LZ4 frame compressor writes.
- zstd (4): one zstd frame, level 3 (Java's default).

All integers are big-endian except lz4's, which are little-endian as its format says.
"""

from __future__ import annotations

import struct
import zlib
from types import ModuleType

from logq.errors import ConfigError, CorruptRecordError

__all__ = ["CODECS", "EXTRA_HINT", "LEVELS", "check_level", "codec_id", "compress", "decompress", "missing_library"]

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = 16
_XERIAL_BLOCK_BYTES = 32 * 1024  # xerial's default block: input bytes per snappy chunk
_LZ4_FRAME_HEADER = b"\x04\x22\x4d\x18\x60\x40\x82"  # magic, FLG, BD (64 KiB), header checksum
_LZ4_BLOCK_BYTES = 64 * 1024
_LZ4_UNCOMPRESSED = 0x80000000
_GZIP_LEVEL = 6
_ZSTD_LEVEL = 3
_NAMES = {2: "snappy", 3: "lz4", 4: "zstd"}

#: Kafka's compression.type names and their codec ids (attributes bits 0-2).
CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
#: Codecs that take a level: codec id -> (lowest, highest, default), Kafka's ranges
#: (compression.gzip.level, compression.zstd.level). logq's lz4 is the fast mode, no level.
LEVELS = {1: (1, 9, _GZIP_LEVEL), 4: (-131072, 22, _ZSTD_LEVEL)}
EXTRA_HINT = "pip install logq[compression] (it installs cramjam)"


def _cramjam() -> ModuleType | None:
    try:
        import cramjam
    except ImportError:
        return None
    return cramjam


def decompress(codec: int, data: bytes, cap: int) -> bytes:
    name = _NAMES.get(codec)
    if name is None:
        raise CorruptRecordError(f"unknown compression codec {codec}")
    cj = _cramjam()
    if cj is None:
        raise CorruptRecordError(f"batch is {name}-compressed; install logq[compression] (cramjam) to read it")
    try:
        if codec == 2:
            return _snappy(cj, data, cap)
        return _into(cj.lz4 if codec == 3 else cj.zstd, data, cap)
    except CorruptRecordError:
        raise
    except Exception as e:  # cramjam raises its own DecompressionError and ValueError
        raise CorruptRecordError(f"{name}: {e} (or output over {cap} bytes)") from None


_FIRST_TRY = 64 * 1024


def _into(mod: ModuleType, data: bytes, cap: int) -> bytes:
    """Decompress into a bounded buffer: first one sized from the input, then 4x larger each
    time it is too small, up to the cap.

    Zeroing a cap-sized buffer (16 MiB by default) for every batch cost ~1 ms each, and a
    well-compressed large batch (a 256 KiB batch of JSON shrinks 8x) does not fit the first
    guess; growing by 4 costs at most a third more decompression work. Too small a buffer
    raises, and so does a bad frame: only the cap-sized attempt's error is final.
    """
    size = min(cap, max(_FIRST_TRY, 8 * len(data)))
    while True:
        out = bytearray(size)
        try:
            n = mod.decompress_into(data, out)
        except Exception:
            if size >= cap:
                raise
            size = min(cap, size * 4)  # too small, or corrupt: a larger attempt decides
            continue
        return bytes(memoryview(out)[:n])


def _snappy_block(cj: ModuleType, block: bytes, cap: int) -> bytes:
    n = cj.snappy.decompress_raw_len(block)
    if n > cap:
        raise CorruptRecordError(f"snappy block claims {n} bytes, over the cap {cap}")
    return bytes(cj.snappy.decompress_raw(block))


def _snappy(cj: ModuleType, data: bytes, cap: int) -> bytes:
    if not data.startswith(_XERIAL_MAGIC):
        return _snappy_block(cj, data, cap)
    parts = []
    total = 0
    p = _XERIAL_HEADER
    while p < len(data):
        if p + 4 > len(data):
            raise CorruptRecordError("truncated xerial snappy chunk length")
        (n,) = struct.unpack_from(">i", data, p)
        p += 4
        if n < 0 or p + n > len(data):
            raise CorruptRecordError(f"xerial snappy chunk of {n} bytes does not fit")
        chunk = _snappy_block(cj, data[p : p + n], cap - total)
        total += len(chunk)
        parts.append(chunk)
        p += n
    return b"".join(parts)


# --------------------------------------------------------------------------- writing


def codec_id(name: object, setting: str = "compression_type") -> int:
    """The codec id of a compression.type name (``none|gzip|snappy|lz4|zstd``), else ConfigError."""
    if not isinstance(name, str) or name not in CODECS:
        raise ConfigError(f"{setting}={name!r} is invalid: one of {', '.join(CODECS)}")
    return CODECS[name]


def missing_library(codec: int) -> str | None:
    """Why ``codec`` cannot be written here (cramjam is not installed), or None when it can."""
    if codec in _NAMES and _cramjam() is None:
        return f"compression_type={_NAMES[codec]!r} needs the optional cramjam package"
    return None


def check_level(codec: int, level: object) -> int | None:
    """``level`` if ``codec`` takes it (None: the codec's default), else ConfigError."""
    if level is None:
        return None
    name = next(n for n, c in CODECS.items() if c == codec)
    if codec not in LEVELS:
        raise ConfigError(f"compression_level={level!r} is invalid: {name} takes no level (gzip and zstd do)")
    lo, hi, default = LEVELS[codec]
    if isinstance(level, bool) or not isinstance(level, int) or not lo <= level <= hi:
        raise ConfigError(
            f"compression_level={level!r} is invalid for {name}: an int in [{lo}, {hi}] ({default} by default)"
        )
    return level


def compress(codec: int, data: bytes, level: int | None = None) -> bytes:
    """``data`` compressed with ``codec`` (1-4) in the framing described in the module docstring,
    at ``level`` (gzip, zstd; None: the codec's default, see LEVELS; check it with check_level).

    ConfigError when the codec needs cramjam and it is not installed (the producer checks
    this when it is built, so a send never meets it).
    """
    if codec == 1:
        return zlib.compress(data, _GZIP_LEVEL if level is None else level, wbits=31)
    why = missing_library(codec) if codec in _NAMES else f"unknown compression codec {codec}"
    if why is not None:
        raise ConfigError(why, hint=EXTRA_HINT)
    cj = _cramjam()
    assert cj is not None
    if codec == 2:
        return _xerial_snappy(cj, data)
    if codec == 3:
        return _lz4_frame(cj, data)
    return bytes(cj.zstd.compress(data, level=_ZSTD_LEVEL if level is None else level))


def _xerial_snappy(cj: ModuleType, data: bytes) -> bytes:
    parts = [_XERIAL_MAGIC, struct.pack(">ii", 1, 1)]
    view = memoryview(data)
    for p in range(0, len(data), _XERIAL_BLOCK_BYTES):
        block = bytes(cj.snappy.compress_raw(view[p : p + _XERIAL_BLOCK_BYTES]))
        parts.append(struct.pack(">i", len(block)))
        parts.append(block)
    return b"".join(parts)


def _lz4_frame(cj: ModuleType, data: bytes) -> bytes:
    parts = [_LZ4_FRAME_HEADER]
    view = memoryview(data)
    for p in range(0, len(data), _LZ4_BLOCK_BYTES):
        raw = view[p : p + _LZ4_BLOCK_BYTES]
        block = bytes(cj.lz4.compress_block(raw, store_size=False))
        if len(block) >= len(raw):  # incompressible: stored as it is, flagged by the high bit
            parts.append(struct.pack("<I", len(raw) | _LZ4_UNCOMPRESSED))
            parts.append(bytes(raw))
        else:
            parts.append(struct.pack("<I", len(block)))
            parts.append(block)
    parts.append(b"\x00\x00\x00\x00")  # end mark
    return b"".join(parts)
