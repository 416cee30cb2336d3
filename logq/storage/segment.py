"""One segment of a partition: ``<base>.log`` plus its ``.index`` and ``.timeindex``.

The ``.log`` holds RecordBatch v2 batches back to back (logq/codec/batch.py has the bytes). Its
file length is its logical length: logq appends with ``pwrite`` and never preallocates, so
a full disk is an ``OSError`` (ENOSPC) from the write, never a SIGBUS through a mapping.

Who touches a segment, and how (the rules that keep every process safe from SIGBUS):

- The writer appends with ``pwrite`` while holding the partition lock.
- Every segment is read with ``pread`` by everyone. The last one is the only file recovery
  may ever shorten in place (cutting a torn tail after a crash); a sealed segment (one with a
  later segment after it) is immutable, is never shortened in place (a repair writes a new
  file and renames it over), and retention unlinks it, which leaves open descriptors valid.
- No ``.log`` is ever mapped: pages a mapping touched stay in the reader's resident set until
  it is unmapped, so a reader streaming a 2 GB log grew to 2 GB RSS (issue 9 item 12). A
  ``pread`` copies the bytes as slicing a mapping did, at the same throughput, and leaves the
  pages in the kernel's page cache, where they do not count against the process.

Index entries follow Kafka's rule (see index.py): before appending a batch, if more than
``index_interval_bytes`` were written since the last entry, add an entry for this batch.
Recovery rebuilds with the same rule, so a rebuilt index is byte-identical to the original.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from logq.codec.batch import (
    BATCH_OVERHEAD,
    LOG_OVERHEAD,
    BatchHeader,
    decode_records,
    iter_batches,
    peek_batch_size,
    read_header,
    validate_batch,
)
from logq.errors import CorruptIndexError, CorruptRecordError, DiskFullError, storage_error
from logq.storage import files as _fs
from logq.storage.index import OFFSET_ENTRY_BYTES, TIME_ENTRY_BYTES, OffsetIndex, TimeIndex

__all__ = [
    "Segment",
    "ScanResult",
    "segment_name",
    "LOG_SUFFIX",
    "INDEX_SUFFIX",
    "TIME_INDEX_SUFFIX",
    "QUARANTINE_SUFFIX",
    "list_quarantined",
]

SCAN_CHUNK_BYTES = 1 << 20  # recovery and tail scans read this much at a time


# A segment's files: <base offset as 20 digits><suffix>.
LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX = ".log", ".index", ".timeindex"


def segment_name(base_offset: int) -> str:
    """The file name stem of the segment starting at ``base_offset``."""
    return f"{base_offset:020d}"


@dataclass
class ScanResult:
    """Where a validating scan stopped and why."""

    valid_bytes: int  # position after the last valid batch
    next_offset: int
    batches: int
    error: CorruptRecordError | None  # None when the scan reached the end cleanly
    file_bytes: int


class Segment:
    def __init__(
        self,
        directory: str,
        base_offset: int,
        *,
        index_interval_bytes: int,
        segment_index_bytes: int,
        max_batch_bytes: int,
        persist_indexes: bool = True,
    ) -> None:
        self.dir = directory
        self.base_offset = base_offset
        stem = os.path.join(directory, segment_name(base_offset))
        self.log_path = stem + LOG_SUFFIX
        self.index = OffsetIndex(stem + INDEX_SUFFIX, base_offset, segment_index_bytes // OFFSET_ENTRY_BYTES)
        self.timeindex = TimeIndex(stem + TIME_INDEX_SUFFIX, base_offset, segment_index_bytes // TIME_ENTRY_BYTES)
        self.index.persist = self.timeindex.persist = persist_indexes
        self.index_interval_bytes = index_interval_bytes
        self.max_batch_bytes = max_batch_bytes
        self.size = 0
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = base_offset
        self.first_batch_timestamp: int | None = None
        self.created_ms = time.time() * 1000.0
        self.sealed = False
        self.indexes_loaded = False
        self._fd: int | None = None
        self._writable = False

    # ------------------------------------------------------------------ files
    def open(self, writable: bool) -> None:
        if self._fd is not None and (self._writable or not writable):
            return
        self.close_files()
        flags = (os.O_RDWR | os.O_CREAT) if writable else os.O_RDONLY
        self._fd = _fs.open_file(self.log_path, flags)
        self._writable = writable

    def file_size(self) -> int:
        if self._fd is None:
            self.open(False)
        assert self._fd is not None
        return os.fstat(self._fd).st_size

    def close_files(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.index.close()
        self.timeindex.close()

    def load_indexes(self) -> None:
        """Load both indexes from disk (CorruptIndexError if malformed)."""
        self.index.load()
        self.timeindex.load()
        self.indexes_loaded = True

    def verify_indexes(self, limit: int | None = None) -> None:
        """Check loaded indexes against the log; CorruptIndexError if they disagree.

        Structurally sane files can still be wrong (another segment's file, lost entries, a
        deleted file). Walking the batch headers from the offset entry at or before the time
        index's last entry (T, O) to the end must: find the batch ending at O with max
        timestamp T; reproduce exactly the offset entries after the walk's start (interval
        rule); and find no timestamp above T where an entry would have recorded it (anywhere
        once sealed: the final entry holds the segment's maximum). Cost: one header per batch
        walked, usually a short tail.
        """
        end = self.size if limit is None else limit
        idx, tix = self.index, self.timeindex
        ts, ts_off = tix.last_entry()  # (-1, base) when empty: then the walk covers everything
        entry_off, p0 = idx.lookup(ts_off)
        positions = idx.values()
        after = int(np.searchsorted(positions, p0, side="right"))
        last_entry_pos = int(positions[-1]) if idx.entries else -1
        expected: list[tuple[int, int]] = []
        since, seen = 0, not tix.entries
        try:
            for pos, h in self.headers_from(p0, end):
                if pos == p0 and p0 and h.last_offset != entry_off:
                    raise CorruptIndexError(idx.path, f"entry at {p0} does not point at its batch")
                if pos > p0 and since > self.index_interval_bytes:
                    expected.append((h.last_offset - self.base_offset, pos))
                    since = 0
                since += h.size
                if tix.entries and h.last_offset == ts_off:
                    if h.max_timestamp != ts:
                        raise CorruptIndexError(tix.path, f"last entry says {ts}, its batch {h.max_timestamp}")
                    seen = True
                elif h.max_timestamp > ts and (h.last_offset < ts_off or self.sealed or pos <= last_entry_pos):
                    raise CorruptIndexError(tix.path, f"timestamp {h.max_timestamp} above the last entry {ts}")
        except CorruptRecordError:
            pass  # damaged or torn log: the entries past it cannot match, so they fail below
        if not seen:
            raise CorruptIndexError(tix.path, f"last entry's offset {ts_off} is not a batch's last offset")
        actual = list(zip((idx.keys()[after:]).tolist(), positions[after:].tolist()))
        if actual != expected:
            raise CorruptIndexError(idx.path, "entries do not match the log")

    # ------------------------------------------------------------------ reading
    def read(self, position: int, max_bytes: int, limit: int | None = None) -> bytes:
        """Bytes [position, min(position + max_bytes, limit or size))."""
        end = min(position + max_bytes, self.size if limit is None else limit)
        if end <= position:
            return b""
        if self._fd is None:
            self.open(False)
        assert self._fd is not None
        return _fs.pread_exact(self._fd, end - position, position)

    def headers_from(self, position: int, limit: int | None = None) -> Iterator[tuple[int, BatchHeader]]:
        """Batch headers from ``position`` (not CRC-checked; readers validate what they use)."""
        end = self.size if limit is None else limit
        expected = self.base_offset if position == 0 else None  # baseOffset is not CRC-covered
        while position + BATCH_OVERHEAD <= end:
            h = read_header(self.read(position, BATCH_OVERHEAD, end))
            if h.batch_length < BATCH_OVERHEAD - LOG_OVERHEAD or position + h.size > end:
                raise CorruptRecordError(
                    f"batch length {h.batch_length} is invalid", path=self.log_path, position=position
                )
            if expected is not None and h.base_offset != expected:
                raise CorruptRecordError(
                    f"base offset {h.base_offset} where {expected} was expected", path=self.log_path, position=position
                )
            yield position, h
            expected = h.next_offset
            position += h.size

    def find_position(self, offset: int) -> tuple[int, BatchHeader | None]:
        """Position of the first batch whose last offset >= ``offset`` (Kafka's rule)."""
        entry, pos = self.index.lookup(offset) if self.indexes_loaded else (self.base_offset, 0)
        for p, h in self.headers_from(pos):
            if p == pos and pos and h.last_offset != entry:
                raise CorruptRecordError(
                    f"batch ends at offset {h.last_offset}, its index entry says {entry}",
                    path=self.log_path,
                    position=p,
                )
            if h.last_offset >= offset:
                return p, h
        return self.size, None

    def find_offset_by_timestamp(self, timestamp: int, starting_offset: int) -> int | None:
        """First offset >= starting_offset whose record timestamp >= ``timestamp``."""
        _, ts_offset = self.timeindex.lookup(timestamp) if self.indexes_loaded else (-1, self.base_offset)
        pos, _ = self.find_position(max(ts_offset, starting_offset))
        for p, h in self.headers_from(pos):
            if h.max_timestamp < timestamp:
                continue
            first_ts_known = not h.attributes & 0x40  # else baseTimestamp holds a delete horizon
            if (
                h.base_offset >= starting_offset
                and first_ts_known
                and (h.base_timestamp >= timestamp or h.timestamp_type == "LogAppendTime")
            ):
                return h.base_offset  # the batch's first record already qualifies: no decode
            data = self.read(p, h.size)
            hv = validate_batch(data, 0)
            for rec in decode_records(data, hv):
                if rec.timestamp >= timestamp and rec.offset >= starting_offset:
                    return rec.offset
        return None

    def largest_timestamp(self) -> int:
        """Max record timestamp (from the time index once sealed), else the file's mtime."""
        ts = self.max_timestamp
        if ts < 0 and self.indexes_loaded:
            ts = self.timeindex.last_entry()[0]
        if ts < 0:
            try:
                ts = int(os.stat(self.log_path).st_mtime * 1000)
            except FileNotFoundError:
                ts = -1
        return ts

    # ------------------------------------------------------------------ scanning
    def scan(
        self, start: int = 0, start_offset: int | None = None, rebuild: bool = False, track: bool = False
    ) -> ScanResult:
        """Validate batches from ``start`` to the end of the file; stop at the first bad one.

        With ``rebuild`` the indexes and timestamps are rebuilt from ``start`` = 0.
        Offsets must be contiguous: a batch whose base offset is not the expected next one
        is as invalid as a bad CRC (the CRC does not cover the base offset).
        """
        expected = self.base_offset if start_offset is None else start_offset
        if rebuild:
            assert start == 0
            # Rebuilt entries stay in memory; write_indexes() replaces the files whole.
            self.index.close()
            self.timeindex.close()
            persist = self.index.persist
            self.index.persist = self.timeindex.persist = False
            self.index.reset()
            self.timeindex.reset()
            self.max_timestamp, self.offset_of_max_timestamp = -1, self.base_offset
            self.first_batch_timestamp = None
        file_bytes = self.file_size()
        pos, batches, error = start, 0, None
        want = SCAN_CHUNK_BYTES
        assert self._fd is not None
        while pos < file_bytes and error is None:
            chunk_at = pos
            buf = _fs.pread_exact(self._fd, min(want, file_bytes - pos), pos)
            at_end = pos + len(buf) >= file_bytes  # a batch cut off here is a torn tail
            try:
                for p, h in iter_batches(
                    buf,
                    max_batch_bytes=self.max_batch_bytes,
                    expected_offset=expected,
                    contiguous=True,
                    partial_ok=not at_end,
                ):
                    if h.last_offset - self.base_offset >= 2**31:
                        raise CorruptRecordError("offset does not fit the segment's relative index")
                    if rebuild:
                        self._track(h, chunk_at + p)
                    elif track:
                        self._track_time(h)
                    pos = chunk_at + p + h.size
                    expected = h.next_offset
                    batches += 1
            except CorruptRecordError as e:
                error = CorruptRecordError(e.reason, path=self.log_path, position=pos)
            # The walk stopped at a batch the chunk cut off: the next read holds it whole.
            want = max(SCAN_CHUNK_BYTES, peek_batch_size(buf, pos - chunk_at) or 0)
        if rebuild:
            self.index.persist = self.timeindex.persist = persist
        return ScanResult(pos, expected, batches, error, file_bytes)

    def _track_time(self, h: BatchHeader) -> None:
        if h.max_timestamp > self.max_timestamp:
            self.max_timestamp, self.offset_of_max_timestamp = h.max_timestamp, h.last_offset
        if self.first_batch_timestamp is None:
            self.first_batch_timestamp = h.base_timestamp

    def _track(self, h: BatchHeader, pos: int) -> None:
        """Index bookkeeping for a batch at ``pos`` (shared by append and rebuild)."""
        self._track_time(h)
        # Kafka counts bytes since the last entry; with one batch per append that is
        # exactly (this position - last entry's position), so any writer derives it.
        if pos - self.index.last_position() > self.index_interval_bytes:
            try:
                self.index.append(h.last_offset, pos)
                self.timeindex.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
            except DiskFullError:
                pass  # the batch is written; a sparse index missing an entry only scans longer

    # ------------------------------------------------------------------ writing
    def append(self, batch: bytes | bytearray, h: BatchHeader) -> int:
        """Write a validated batch at the end; return its position."""
        assert not self.sealed and self._writable, "append to a sealed or read-only segment"
        assert h.base_offset == self.next_offset, (h.base_offset, self.next_offset)
        pos = self.size
        assert self._fd is not None
        _fs.pwrite_all(self._fd, batch, pos, self.log_path)
        _fs.crash_point("append-after-write")
        self._track(h, pos)
        self.size = pos + len(batch)
        self.next_offset = h.next_offset
        return pos

    def should_roll(self, batch_bytes: int, h: BatchHeader, segment_bytes: int, segment_ms: int) -> bool:
        if self.size == 0:
            return False
        if self.size > segment_bytes - batch_bytes:
            return True
        first = self.first_batch_timestamp
        waited = (
            (h.max_timestamp - first) if first is not None and first >= 0 else (time.time() * 1000 - self.created_ms)
        )
        return (
            waited > segment_ms
            or self.index.is_full
            or self.timeindex.is_full
            or h.last_offset - self.base_offset >= 2**31 - 1
        )

    def flush(self, data_only: bool = False) -> None:
        """fdatasync the log, and unless ``data_only`` its indexes.

        Acknowledging an append needs only the .log durable: indexes are rebuilt from it by
        recovery after a power cut, so fsync="always" syncs them at roll and close only.
        """
        try:
            if self._fd is not None and self._writable:
                os.fdatasync(self._fd)
            if not data_only:
                self.index.fsync()
                self.timeindex.fsync()
        except OSError as e:
            raise storage_error("fsync", self.log_path, e) from None

    def seal(self) -> None:
        """Stop appending: write the final time-index entry (Kafka's onBecomeInactiveSegment)."""
        if self.size:
            self.timeindex.maybe_append(self.max_timestamp, self.offset_of_max_timestamp, final=True)
        self.sealed = True

    def write_indexes(self) -> None:
        """Persist rebuilt indexes by atomic replace."""
        self.index.write_all()
        self.timeindex.write_all()

    def truncate_to(self, position: int, in_place: bool) -> None:
        """Cut the log at ``position`` (a batch boundary) and make the cut durable.

        ``in_place`` only for the last segment (read with pread by everyone); a sealed
        segment is rewritten to a temporary file and renamed over, so no process that maps
        it can fault on a page that vanished.
        """
        if in_place:
            self.open(True)
            assert self._fd is not None
            try:
                os.ftruncate(self._fd, position)
                os.fsync(self._fd)
            except OSError as e:
                raise storage_error("truncate", self.log_path, e) from None
        else:
            data = self.read(0, position, limit=position) if self.size >= position else b""
            self.close_files()
            _fs.atomic_write(self.log_path, data)
        self.size = position

    def delete_files(self) -> None:
        self.close_files()
        for p in (self.log_path, self.index.path, self.timeindex.path):
            _fs.unlink_if_exists(p)


STRAY_SUFFIXES = (".tmp", ".deleted", ".cleaned", ".swap")
# A file named like a segment that logq did not write is renamed "<name>.stray" (never
# deleted: it is not logq's) so that it can neither move offsets nor be appended to.
QUARANTINE_SUFFIX = ".stray"


def list_quarantined(directory: str) -> list[str]:
    """Names of the files set aside as stray segments, sorted."""
    try:
        return sorted(n for n in os.listdir(directory) if n.endswith(QUARANTINE_SUFFIX))
    except FileNotFoundError:
        return []


def list_segment_files(directory: str) -> tuple[list[int], list[str], list[str]]:
    """(sorted base offsets of .log files, stray temporary files, orphan index files)."""
    bases, stray, indexes = [], [], []
    for name in os.listdir(directory):
        stem, _, ext = name.partition(".")
        if len(stem) != 20 or not stem.isdigit():
            continue
        if name.endswith(STRAY_SUFFIXES):
            stray.append(name)
        elif ext == "log":
            bases.append(int(stem))
        elif ext in ("index", "timeindex"):
            indexes.append(name)
    bases.sort()
    have = {segment_name(b) for b in bases}
    orphans = [n for n in indexes if n.partition(".")[0] not in have]
    return bases, stray, orphans
