"""Reading snappy, lz4 and zstd batches through the optional ``cramjam`` package.

Kafka clients write these codecs, so logq must read them. Output is always written into a
buffer of at most ``cap`` bytes: a decompression bomb fails with CorruptRecordError and never
allocates more than the cap (CVE-2023-34455 was an unchecked snappy chunk length).

Snappy in Kafka comes either raw or in xerial's framing: an 8-byte magic ``\\x82SNAPPY\\x00``,
two int32 versions, then chunks of int32 length + raw snappy block.
"""

from __future__ import annotations

import struct
from types import ModuleType

from logq.errors import CorruptRecordError

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = 16
_NAMES = {2: "snappy", 3: "lz4", 4: "zstd"}


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
    """Decompress into a bounded buffer: first one sized from the input, then the full cap.

    Zeroing a cap-sized buffer (16 MiB by default) for every small batch cost ~1 ms each;
    most batches fit the first guess. Too small a buffer raises, and so does a bad frame.
    """
    guess = min(cap, max(_FIRST_TRY, 8 * len(data)))
    if guess < cap:
        out = bytearray(guess)
        try:
            n = mod.decompress_into(data, out)
        except Exception:
            pass  # too small, or corrupt: the full-size attempt below decides
        else:
            return bytes(memoryview(out)[:n])
    out = bytearray(cap)
    n = mod.decompress_into(data, out)
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
