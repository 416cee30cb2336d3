"""Compressed RecordBatch v2 on write: an encoded batch in, the same batch compressed out.

``batch.py`` encodes the records uncompressed (pure or compiled); :func:`compress_batch`
then replaces the records section, bytes ``[61, end)``, by one compressed blob of it and
rewrites the three header fields that change:

- ``batchLength`` (offset 8): 49 + the compressed size;
- ``attributes`` (offset 21): bits 0-2 set to the codec id (1 gzip, 2 snappy, 3 lz4, 4 zstd);
- ``crc`` (offset 17): CRC-32C over bytes ``[21, end)`` *as stored*, i.e. over the
  compressed blob.

``recordsCount``, ``lastOffsetDelta`` and the timestamps stay as they were: Kafka keeps them
uncompressed in the header. The blob's framing per codec is in ``compression.py``.

The uncompressed batch is kept (returned as it was) when compressing does not make it
smaller, as kafka-python does, or when its records section is larger than the readers'
``max_decompressed_bytes`` cap (a reader would refuse to inflate it). So a batch never grows
by being compressed and always fits the limit its uncompressed form fit.
"""

from __future__ import annotations

import struct

from crc32c import crc32c

from logq.codec.batch import BATCH_OVERHEAD, CRC_OFFSET, CRC_START, LOG_OVERHEAD, read_header
from logq.codec.compression import compress

__all__ = ["compress_batch"]

_LENGTH = struct.Struct(">i")
_ATTRIBUTES = struct.Struct(">h")
_CRC = struct.Struct(">I")
_LENGTH_OFFSET = 8


def compress_batch(batch: bytes, codec: int, max_decompressed_bytes: int, level: int | None = None) -> bytes:
    """``batch`` (one uncompressed v2 batch) with its records compressed by ``codec`` (at
    ``level``, see compression.compress).

    ``codec`` 0 returns ``batch`` itself; so does a batch that compressing would not shrink
    or whose records exceed ``max_decompressed_bytes`` (see the module docstring). ConfigError
    when the codec needs cramjam and it is missing.
    """
    if codec == 0:
        return batch
    h = read_header(batch)
    raw_size = len(batch) - BATCH_OVERHEAD
    if h.attributes & 0x07 or raw_size > max_decompressed_bytes:
        return batch
    blob = compress(codec, bytes(memoryview(batch)[BATCH_OVERHEAD:]), level)
    if len(blob) >= raw_size:
        return batch
    head = bytearray(memoryview(batch)[:BATCH_OVERHEAD])
    _LENGTH.pack_into(head, _LENGTH_OFFSET, BATCH_OVERHEAD - LOG_OVERHEAD + len(blob))
    _ATTRIBUTES.pack_into(head, CRC_START, h.attributes | codec)
    _CRC.pack_into(head, CRC_OFFSET, crc32c(blob, crc32c(bytes(head[CRC_START:]))))
    return bytes(head) + blob
