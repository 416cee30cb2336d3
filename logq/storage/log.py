"""A partition log: an ordered list of segments in one directory ``<root>/<topic>-<p>/``.

Files in a partition directory::

    00000000000000000000.log / .index / .timeindex   segments, named by base offset
    logq.state (+ .bak)                              log start offset, recovery point,
                                                     clean-shutdown flag, boot id (_meta.py)
    .lock                                            flock held for each write operation
    .writers                                         flock held (shared) by every open writer

Processes: any number of processes may open the same partition. Writers serialise every
operation on ``.lock`` and, under it, first catch up with what other writers did (appended
batches, rolled segments, moved the log start). Readers (``readonly=True``) take no lock and
never modify a file; they see only complete, CRC-valid batches.

Durability (``LogConfig.fsync``): "never" returns once the batch is in the page cache, which
survives ``kill -9`` of any process; "always" fdatasyncs before returning; "interval"
flushes in the background every ``fsync_interval_ms``. A failed fsync puts the log in a
failed state: nothing is acknowledged again until it is reopened (never retry an fsync).
"""

from __future__ import annotations

import bisect
import errno
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from logq.codec.batch import (
    BatchHeader,
    BatchRecord,
    RecordInput,
    decode_records,
    encode_batch,
    encode_values,
    validate_batch,
)
from logq.config import LogConfig
from logq.errors import (
    CorruptIndexError,
    CorruptRecordError,
    LogClosedError,
    LogFailedError,
    LogqError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    StorageError,
)
from logq.storage import files as _fs
from logq.storage import loader as recovery
from logq.storage.segment import Segment

__all__ = ["PartitionLog", "AppendResult", "FetchResult", "RecoveryReport"]

STATE_FILE = "logq.state"
DEFAULT_FETCH_BYTES = 1 << 20
_CURSOR_CACHE_ENTRIES = 64


@dataclass(frozen=True)
class AppendResult:
    base_offset: int
    last_offset: int
    position: int
    segment: int  # base offset of the segment written
    timestamp: int  # max timestamp of the batch


@dataclass
class FetchResult:
    """Whole, CRC-valid batches starting with the one that holds ``offset``."""

    offset: int
    data: bytes
    headers: list[BatchHeader]
    next_offset: int  # first offset after the returned batches (== offset when empty)

    def records(self, max_decompressed_bytes: int = 16 << 20, origin: tuple | None = None) -> list[Any]:
        """Decoded records from ``offset`` on (earlier records of the first batch skipped)."""
        out: list[Any] = []
        pos = 0
        for h in self.headers:
            out.extend(
                decode_records(
                    self.data,
                    h,
                    pos,
                    max_decompressed_bytes=max_decompressed_bytes,
                    min_offset=self.offset,
                    origin=origin,
                )
            )
            pos += h.size
        return out


@dataclass
class RecoveryReport:
    clean: bool = True
    segments_recovered: int = 0
    bytes_truncated: int = 0
    segments_deleted: int = 0
    stray_files_deleted: list[str] = field(default_factory=list)
    indexes_rebuilt: int = 0
    corruption: str | None = None  # set when corrupt data below the durable point was kept
    notes: list[str] = field(default_factory=list)


class PartitionLog:
    def __init__(
        self,
        path: str,
        config: LogConfig | None = None,
        *,
        readonly: bool = False,
        create: bool = True,
        repair: bool = False,
    ) -> None:
        self.path = os.path.abspath(path)
        self.config = config or LogConfig()
        self.readonly = readonly
        self.repair = repair
        self._mutex = threading.RLock()
        self._closed = False
        self._failed: BaseException | None = None
        self.segments: list[Segment] = []
        self._bases: list[int] = []
        self.log_start_offset = 0
        self.recovery_point = 0
        self.corruption: CorruptRecordError | None = None
        self.report = RecoveryReport()
        self._state_stamp: object = None
        self._open_lru: OrderedDict[int, Segment] = OrderedDict()
        self._cursors: OrderedDict[int, tuple] = OrderedDict()
        self._oplock: _fs.FileLock | None = None
        self._writers: _fs.FileLock | None = None
        self._flusher: threading.Thread | None = None
        if create and not readonly:
            _fs.make_dir(self.path)
        _fs.check_dir(self.path)
        if readonly:
            recovery.load(self, first_writer=False)
            return
        self._oplock = _fs.FileLock(os.path.join(self.path, ".lock"))
        self._writers = _fs.FileLock(os.path.join(self.path, ".writers"))
        first = self._writers.acquire(shared=False, blocking=False)
        if not first:
            self._wait_for_writers_lock()
        try:
            with self._oplock:
                recovery.load(self, first_writer=first)
            if first:
                self._writers.acquire(shared=True)  # downgrade: other writers may join now
        except BaseException:
            self._release_locks()
            raise
        if self.config.fsync == "interval":
            recovery.start_interval_flusher(self)

    def _wait_for_writers_lock(self) -> None:
        assert self._writers is not None
        deadline = time.monotonic() + self.config.open_timeout_ms / 1000
        while not self._writers.acquire(shared=True, blocking=False):
            if time.monotonic() > deadline:
                raise LogqError(
                    f"timed out after {self.config.open_timeout_ms} ms waiting for another "
                    f"writer of {self.path} to finish recovery",
                    hint="check for a hung logq process",
                )
            time.sleep(0.005)

    # ------------------------------------------------------------------ properties
    @property
    def log_end_offset(self) -> int:
        if self.readonly:
            self.refresh()
        return self.segments[-1].next_offset if self.segments else self.log_start_offset

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    @property
    def num_segments(self) -> int:
        return len(self.segments)

    @property
    def active(self) -> Segment:
        return self.segments[-1]

    def _check_usable(self) -> None:
        if self._closed:
            raise LogClosedError(f"log {self.path}")
        if self._failed is not None:
            raise LogFailedError(self.path, self._failed)

    # ------------------------------------------------------------------ appending
    def append(self, records: Sequence[RecordInput]) -> AppendResult:
        """Append ``(key, value, headers, timestamp_ms)`` tuples as one batch."""
        batch = encode_batch(records, 0)
        return self.append_batch(batch, _trusted=True)

    def append_values(
        self, values: Sequence[bytes], timestamp_ms: int | None = None, key: bytes | None = None
    ) -> AppendResult:
        """Fast path: values with one key (None by default) and one timestamp, no headers."""
        ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        return self.append_batch(encode_values(values, ts, 0, key=key), _trusted=True)

    def append_batch(self, batch: bytes, _trusted: bool = False) -> AppendResult:
        """Append one encoded v2 batch (from any Kafka client); offsets are assigned here.

        A batch from outside is decoded once before it is accepted: every record must parse
        and carry offset delta i for its index i (a CRC only proves the bytes were not
        damaged, not that the client wrote them right). Batches logq encodes itself skip this.
        """
        if len(batch) > self.config.max_batch_bytes:
            raise RecordTooLargeError(len(batch), self.config.max_batch_bytes)
        h = validate_batch(batch, 0, max_batch_bytes=self.config.max_batch_bytes)
        if h.size != len(batch):
            raise CorruptRecordError(f"{len(batch) - h.size} bytes after the batch")
        if h.records_count != h.last_offset_delta + 1 or h.records_count == 0:
            raise CorruptRecordError(
                f"record count {h.records_count} does not match lastOffsetDelta {h.last_offset_delta}"
            )
        if h.is_control:
            raise CorruptRecordError("control batches cannot be produced")
        if not _trusted:
            recs = decode_records(batch, h, max_decompressed_bytes=self.config.max_decompressed_bytes)
            if any(r.offset != h.base_offset + i for i, r in enumerate(recs)):
                raise CorruptRecordError("record offset deltas are not 0, 1, 2, ... in order")
        with self._mutex:
            self._check_usable()
            if self.readonly:
                raise LogqError("log opened read-only", hint="open without readonly=True to append")
            assert self._oplock is not None
            with self._oplock:
                self._catch_up()
                if self.corruption is not None and self.corruption.path == self.active.log_path:
                    raise self.corruption
                seg = self.active
                if seg.should_roll(len(batch), h, self.config.segment_bytes, self.config.segment_ms):
                    seg = self._roll()
                base = seg.next_offset
                h = h._replace(base_offset=base)
                # baseOffset lies outside the CRC: stamping it is one copy, no new checksum.
                stamped = b"".join((base.to_bytes(8, "big"), memoryview(batch)[8:]))
                try:
                    pos = seg.append(stamped, h)
                    if self.config.fsync == "always":
                        self._sync(seg, data_only=True)
                except StorageError:
                    self._after_failed_write(seg)
                    raise
                self._note_cursor(h.next_offset, seg.base_offset, pos + h.size)
        return AppendResult(base, h.last_offset, pos, seg.base_offset, h.max_timestamp)

    def _after_failed_write(self, seg: Segment) -> None:
        """A write failed (ENOSPC...): cut whatever part of it landed, keep the log usable."""
        try:
            if seg.file_size() > seg.size:
                seg.truncate_to(seg.size, in_place=True)
        except LogqError as e:
            self._failed = e

    def _sync(self, seg: Segment, data_only: bool = False) -> None:
        try:
            seg.flush(data_only)
        except StorageError as e:
            self._failed = e  # never retry a failed fsync: the pages may already be dropped
            raise LogFailedError(self.path, e) from None
        self.recovery_point = max(self.recovery_point, seg.next_offset)

    def flush(self) -> None:
        """Make everything appended so far durable against power loss."""
        with self._mutex:
            self._check_usable()
            if self.readonly or not self.segments:
                return
            self._sync(self.active)

    def roll(self) -> None:
        with self._mutex:
            self._check_usable()
            assert self._oplock is not None
            with self._oplock:
                self._catch_up()
                if self.active.size:
                    self._roll()

    def _roll(self) -> Segment:
        old = self.active
        old.seal()
        _fs.crash_point("roll-after-seal")
        if self.config.fsync != "never":
            self._sync(old)
        new = self._new_segment(old.next_offset)
        recovery.flush_sealed_in_background(self, old)
        self.enforce_retention(_locked=True)
        return new

    def _new_segment(self, base: int) -> Segment:
        seg = self._make_segment(base, persist=True)
        seg.open(True)
        seg.indexes_loaded = True  # empty and known: catch_up then reloads other writers' entries
        _fs.crash_point("roll-after-create")
        _fs.fsync_dir(self.path)
        self.segments.append(seg)
        self._bases.append(base)
        return seg

    def _make_segment(self, base: int, persist: bool) -> Segment:
        c = self.config
        return Segment(
            self.path,
            base,
            index_interval_bytes=c.index_interval_bytes,
            segment_index_bytes=c.segment_index_bytes,
            max_batch_bytes=c.max_batch_bytes,
            persist_indexes=persist,
        )

    # ------------------------------------------------------------------ other writers
    def _catch_up(self) -> None:
        """Under the op lock: adopt what other writer processes did since our last look."""
        recovery.catch_up(self)

    def refresh(self) -> None:
        """For readers: pick up new batches, new segments and a moved log start."""
        with self._mutex:
            if not self._closed:
                recovery.catch_up(self)

    # ------------------------------------------------------------------ retention
    def enforce_retention(self, now_ms: int | None = None, _locked: bool = False) -> int:
        """Delete whole oldest segments past retention_ms / retention_bytes; never the active one."""
        if not _locked:
            with self._mutex:
                self._check_usable()
                assert self._oplock is not None
                with self._oplock:
                    self._catch_up()
                    return recovery.apply_retention(self, now_ms)
        return recovery.apply_retention(self, now_ms)

    def delete_records_before(self, offset: int) -> int:
        """Move the log start offset to ``offset`` (a purge); whole segments below it go."""
        with self._mutex:
            self._check_usable()
            assert self._oplock is not None
            with self._oplock:
                self._catch_up()
                end = self.log_end_offset
                if not self.log_start_offset <= offset <= end:
                    raise OffsetOutOfRangeError(offset, self.log_start_offset, end)
                return recovery.set_log_start(self, offset)

    # ------------------------------------------------------------------ reading
    def _segment_for(self, offset: int) -> Segment:
        i = bisect.bisect_right(self._bases, offset) - 1
        return self.segments[max(i, 0)]

    def _touch(self, seg: Segment) -> None:
        """LRU of sealed segments holding descriptors, maps and loaded indexes."""
        if seg is self.segments[-1]:
            return
        lru = self._open_lru
        lru[seg.base_offset] = seg
        lru.move_to_end(seg.base_offset)
        while len(lru) > self.config.max_open_segments:
            _, old = lru.popitem(last=False)
            old.close_files()
            old.indexes_loaded = False

    def _ensure_indexes(self, seg: Segment) -> None:
        if seg.indexes_loaded:
            return
        try:
            seg.load_indexes()
            seg.index.check(seg.size)
            seg.timeindex.check(seg.next_offset if seg is self.segments[-1] else self._next_base(seg))
            seg.verify_indexes()
        except CorruptIndexError as e:
            recovery.rebuild_indexes(self, seg, reason=str(e))

    def _next_base(self, seg: Segment) -> int:
        i = self.segments.index(seg)
        return self.segments[i + 1].base_offset if i + 1 < len(self.segments) else seg.next_offset

    def _note_cursor(self, offset: int, seg_base: int, pos: int) -> None:
        c = self._cursors
        c[offset] = (seg_base, pos)
        if len(c) > _CURSOR_CACHE_ENTRIES:
            c.popitem(last=False)

    def read(self, offset: int, max_bytes: int = DEFAULT_FETCH_BYTES) -> FetchResult:
        """Whole batches from the one holding ``offset``, about ``max_bytes`` (at least one)."""
        with self._mutex:
            self._check_usable()
            if self.readonly:
                # Readers catch up before every read: new batches, new segments, and a log
                # start that retention or a purge moved elsewhere (purged data stays unread).
                recovery.catch_up(self)
            end = self.segments[-1].next_offset if self.segments else self.log_start_offset
            if offset == end:
                if self.corruption is not None and self.segments and self.corruption.path == self.segments[-1].log_path:
                    raise self.corruption  # the data after this point is damaged, not absent
                return FetchResult(offset, b"", [], offset)
            if not self.log_start_offset <= offset <= end:
                raise OffsetOutOfRangeError(offset, self.log_start_offset, end, self.path)
            try:
                return self._read_locked(offset, max_bytes)
            except OSError as e:  # FileNotFoundError, or the StorageError(ENOENT) of opening it
                if e.errno != errno.ENOENT:
                    raise
                recovery.catch_up(self, force=True)  # retention removed it under us
                if offset < self.log_start_offset:
                    raise OffsetOutOfRangeError(offset, self.log_start_offset, self.log_end_offset, self.path) from None
                return self._read_locked(offset, max_bytes)

    def _read_locked(self, offset: int, max_bytes: int) -> FetchResult:
        cur = self._cursors.get(offset)
        seg = self._segment_for(offset)
        if cur is not None and cur[0] == seg.base_offset and cur[1] < seg.size:
            pos = cur[1]
        else:
            self._ensure_indexes(seg)
            pos, h0 = seg.find_position(offset)
            if h0 is None:  # offset == this segment's end: the next segment starts there
                i = self.segments.index(seg)
                if i + 1 >= len(self.segments):
                    return FetchResult(offset, b"", [], offset)
                seg, pos = self.segments[i + 1], 0
        self._touch(seg)
        data = seg.read(pos, max(max_bytes, 61))
        headers: list[BatchHeader] = []
        p = 0
        while p + 12 <= len(data):
            size = int.from_bytes(data[p + 8 : p + 12], "big", signed=True) + 12
            if (
                p + size > len(data)
                and not headers
                and 61 <= size <= self.config.max_batch_bytes
                and pos + size <= seg.size
            ):
                data = seg.read(pos, size)  # min-one-batch: a first batch larger than max_bytes
                continue
            if p + size > len(data) and headers:
                break  # the next batch did not fit in max_bytes: it starts the next fetch
            try:
                # baseOffset is outside the CRC: offsets must run on from the requested one.
                h = validate_batch(
                    data,
                    p,
                    max_batch_bytes=self.config.max_batch_bytes,
                    expected_offset=headers[-1].next_offset if headers else None,
                )
                if not headers and not h.base_offset <= offset <= h.last_offset:
                    raise CorruptRecordError(f"batch holds offsets {h.base_offset}-{h.last_offset}, not {offset}")
            except CorruptRecordError as e:
                if headers:
                    break  # return the valid batches; the next read reports the damage
                raise CorruptRecordError(e.reason, path=seg.log_path, position=pos + p) from None
            headers.append(h)
            p += h.size
        if not headers:
            return FetchResult(offset, b"", [], offset)
        nxt = headers[-1].next_offset
        self._note_cursor(nxt, seg.base_offset, pos + p)
        return FetchResult(offset, data[:p], headers, nxt)

    def read_records(self, offset: int, max_bytes: int = DEFAULT_FETCH_BYTES) -> list[BatchRecord]:
        return self.read(offset, max_bytes).records(self.config.max_decompressed_bytes)

    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        """First offset whose record timestamp >= ``timestamp_ms`` (Kafka's rule), else None."""
        with self._mutex:
            self._check_usable()
            if self.readonly:
                recovery.catch_up(self)
            for seg in self.segments:
                self._ensure_indexes(seg)
                self._touch(seg)
                if seg is not self.segments[-1] and seg.largest_timestamp() < timestamp_ms:
                    continue
                found = seg.find_offset_by_timestamp(timestamp_ms, self.log_start_offset)
                if found is not None and found < self.log_end_offset:
                    return found
            return None

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        with self._mutex:
            if self._closed:
                return
            try:
                if not self.readonly and self._failed is None:
                    recovery.close_writer(self)
            finally:
                self._closed = True
                for seg in self.segments:
                    seg.close_files()
                self._release_locks()

    def _release_locks(self) -> None:
        for lock in (self._writers, self._oplock):
            if lock is not None:
                lock.close()

    def __enter__(self) -> PartitionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PartitionLog({self.path!r}, start={self.log_start_offset}, end={self.log_end_offset if self.segments else '?'})"
