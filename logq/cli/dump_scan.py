"""Reading segment files for ``logq dump``: options, bounded reads, and the batch scan.

A ``.log`` is read with ``os.pread`` through one window of ``read_chunk_bytes`` (grown only
to hold a single batch whose bytes are all in the file, itself capped by
``max_batch_bytes``), so memory stays bounded however large the file. The scan yields every
structurally complete batch from position 0 (a batch whose only fault is its CRC is still
yielded, marked invalid, as kafka-dump-log does) and then a :class:`Tail` for the bytes
that do not form one; it stops there, as recovery would.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from crc32c import crc32c

from logq.codec.batch import (
    BATCH_OVERHEAD,
    CRC_OFFSET,
    CRC_START,
    LOG_OVERHEAD,
    BatchHeader,
    peek_batch_size,
    read_header,
    validate_batch,
)
from logq.errors import CorruptRecordError, storage_error
from logq.storage import files as _fs
from logq.storage.segment import INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX

__all__ = [
    "DEFAULT_MAX_BATCH_BYTES",
    "READ_CHUNK_BYTES",
    "SUFFIXES",
    "DumpOptions",
    "Event",
    "ProgressFn",
    "ScannedBatch",
    "Tail",
    "Window",
    "open_file",
    "pread_file",
    "problem",
    "scan_log",
    "segment_base_offset",
    "stat_size",
]

Event = dict[str, Any]
ProgressFn = Callable[[str, int, int], None]  # (path, bytes done, file size)

READ_CHUNK_BYTES = 1 << 20  # one pread of a .log or index file (the window size)
# A batch claiming more is treated as corruption. The default is the largest max_batch_bytes a
# topic may be configured with, so dump never calls a batch that storage accepted invalid; a
# claim larger than the bytes left in the file is a torn tail and is never read.
DEFAULT_MAX_BATCH_BYTES = (1 << 31) - 1
SUFFIXES = (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX)  # also the order within a segment


@dataclass(frozen=True)
class DumpOptions:
    deep: bool = False  # one line per record
    print_data: bool = False  # key and payload too (implies deep)
    verify_index: bool = False  # check .index/.timeindex entries against the .log
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    read_chunk_bytes: int = READ_CHUNK_BYTES
    progress: ProgressFn | None = None


def segment_base_offset(path: str) -> int:
    """Base offset from a segment file name (``00000000000000001000.log`` -> 1000).

    A name that is not a number (a copied file, say) is taken to have base offset 0.
    """
    stem = os.path.basename(path).split(".", 1)[0]
    return int(stem) if stem.isdigit() else 0


def open_file(path: str) -> tuple[int, int]:
    """Open for reading (symlinks are fine here: dump never writes); return (fd, size)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise storage_error("open", path, e) from None
    try:
        return fd, os.fstat(fd).st_size
    except OSError as e:
        os.close(fd)
        raise storage_error("stat", path, e) from None


def pread_file(fd: int, n: int, pos: int, path: str) -> bytes:
    """Up to ``n`` bytes at ``pos``; shorter only at end of file."""
    try:
        return _fs.pread_exact(fd, n, pos)
    except OSError as e:
        raise storage_error("read", path, e) from None


def stat_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError as e:
        raise storage_error("stat", path, e) from None


def problem(kind: str, path: str, message: str, **facts: Any) -> Event:
    return {"type": "problem", "kind": kind, "path": path, "message": message, **facts}


# ----------------------------------------------------------------------------- .log scan


class Window:
    """Serves byte ranges of one file from a single buffer refilled by ``os.pread``."""

    def __init__(self, fd: int, path: str, size: int, chunk_bytes: int, progress: ProgressFn | None) -> None:
        self._fd, self._path, self._size = fd, path, size
        self._chunk_bytes = max(chunk_bytes, LOG_OVERHEAD)
        self._progress = progress
        self._buf = b""
        self._start = 0

    def get(self, pos: int, n: int) -> tuple[bytes, int]:
        """``(buf, off)`` with the bytes at ``pos`` starting at ``buf[off]``; at least ``n``
        of them unless the file ends (or shrank) first."""
        if self._start <= pos and pos + n <= self._start + len(self._buf):
            return self._buf, pos - self._start
        want = min(max(n, self._chunk_bytes), max(self._size - pos, n))
        self._buf = b""  # drop the old window before reading the new one
        self._buf = pread_file(self._fd, want, pos, self._path)
        self._start = pos
        if self._progress is not None:
            self._progress(self._path, pos, self._size)
        return self._buf, 0


@dataclass
class ScannedBatch:
    position: int
    header: BatchHeader
    crc_ok: bool
    buf: bytes  # holds the whole batch ...
    off: int  # ... starting here

    @property
    def end(self) -> int:
        return self.position + self.header.size


@dataclass
class Tail:
    position: int
    count: int
    reason: str


def _crc_is_the_only_fault(buf: bytes, off: int, end: int, **checks: Any) -> BatchHeader | None:
    """Header of a batch that is complete and sane except for its CRC; None otherwise."""
    try:
        h = read_header(buf, off)
        if off + h.size > end or h.size < BATCH_OVERHEAD:
            return None
        actual = crc32c(memoryview(buf)[off + CRC_START : off + h.size])
        if actual == h.crc:
            return None
        fixed = bytearray(buf[off : off + h.size])
        fixed[CRC_OFFSET:CRC_START] = actual.to_bytes(4, "big")
        validate_batch(fixed, **checks)  # the codec stays the single judge of structure
        return h
    except CorruptRecordError:
        return None


def scan_log(path: str, opts: DumpOptions) -> Generator[ScannedBatch | Tail, None, None]:
    """Every structurally complete batch from position 0, then a Tail if bytes remain
    that do not form one (the scan stops there, as recovery would)."""
    fd, size = open_file(path)
    try:
        win = Window(fd, path, size, opts.read_chunk_bytes, opts.progress)
        pos = 0
        while pos < size:
            left = size - pos
            if left < LOG_OVERHEAD:
                yield Tail(pos, left, f"{left} bytes are too few for a batch")
                return
            buf, off = win.get(pos, LOG_OVERHEAD)
            need = peek_batch_size(buf, off) or LOG_OVERHEAD
            # Never read more than one sane batch: a garbage length stops here, unread.
            read = min(need, left) if BATCH_OVERHEAD <= need <= opts.max_batch_bytes else LOG_OVERHEAD
            buf, off = win.get(pos, read)
            end = off + min(len(buf) - off, left)
            try:
                h = validate_batch(buf, off, end, max_batch_bytes=opts.max_batch_bytes)
                crc_ok = True
            except CorruptRecordError as e:
                bad = _crc_is_the_only_fault(buf, off, end, max_batch_bytes=opts.max_batch_bytes)
                if bad is None:
                    yield Tail(pos, left, e.reason)
                    return
                h, crc_ok = bad, False
            yield ScannedBatch(pos, h, crc_ok, buf, off)
            pos += h.size
        if opts.progress is not None:
            opts.progress(path, size, size)
    finally:
        os.close(fd)
