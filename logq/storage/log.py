"""A partition log: an ordered list of segments in one directory ``<root>/<topic>-<p>/``.

Files in a partition directory::

    00000000000000000000.log / .index / .timeindex   segments, named by base offset
    logq.state (+ .bak)                              log start offset, recovery point,
                                                     clean-shutdown flag, boot id (state.py)
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

This module is the facade; the rooms behind it, each working on explicit objects and none
on this class's members: ``segments.py`` (the ordered segment list, its lookups and its
open-file LRU), ``state.py`` (log start offset, recovery point and their file),
``loader.py`` (opening, recovery, catching up with other processes, index rebuilds),
``retention.py`` (deleting oldest segments, purges) and ``flusher.py`` (background fsync).
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from logq.codec.batch import (
    BATCH_OVERHEAD,
    LOG_OVERHEAD,
    BatchHeader,
    BatchRecord,
    RecordInput,
    decode_records,
    encode_batch,
    encode_values,
    iter_batches,
    peek_batch_size,
    stamp_base_offset,
    validate_batch,
)
from logq.codec.columnar import RecordColumns, decode_columns
from logq.config import LogConfig
from logq.errors import (
    CorruptRecordError,
    DiskFullError,
    LogClosedError,
    LogFailedError,
    LogqError,
    LogqTimeoutError,
    OffsetOutOfRangeError,
    ReadOnlyLogError,
    RecordTooLargeError,
    StorageError,
)
from logq.storage import files as _fs
from logq.storage import retention
from logq.storage.flusher import IntervalFlusher, SealedSegmentFlush
from logq.storage.loader import Loader, RecoveryReport
from logq.storage.segment import Segment
from logq.storage.segments import SegmentList
from logq.storage.state import STATE_FILE, PartitionState

__all__ = ["PartitionLog", "AppendResult", "FetchResult", "RecoveryReport", "STATE_FILE"]

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
    bytes_read: int = 0  # bytes this fetch read from the segment (a cut-off last batch included)
    log_end_offset: int = -1  # the log end when it was read (-1: not known); next_offset == it: nothing more

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

    def columns(
        self,
        max_decompressed_bytes: int = 16 << 20,
        *,
        topic: str = "",
        partition: int = 0,
        max_records: int | None = None,
    ) -> RecordColumns:
        """The records from ``offset`` on as columns (see logq/codec/columnar.py), labelled
        ``topic`` and ``partition``; batches past ``max_records`` records stay undecoded."""
        parts: list[RecordColumns] = []
        n = pos = 0
        for h in self.headers:
            if max_records is not None and n >= max_records:
                break
            cols = decode_columns(
                self.data,
                h,
                pos,
                topic=topic,
                partition=partition,
                max_decompressed_bytes=max_decompressed_bytes,
                min_offset=self.offset,
            )
            parts.append(cols)
            n += len(cols)
            pos += h.size
        out = RecordColumns.concat(parts)
        return out if max_records is None or len(out) <= max_records else out.slice(0, max_records)


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
        self._segments = SegmentList(self.path, self.config, persist_indexes=not readonly)
        self._state = PartitionState(self.path)
        self.corruption: CorruptRecordError | None = None
        # Where the batch after a recent read or append starts: offset -> (segment base, position).
        self._cursors: OrderedDict[int, tuple[int, int]] = OrderedDict()
        self._cursor_generation = self._segments.generation
        self._oplock: _fs.FileLock | None = None
        self._writers: _fs.FileLock | None = None
        self._flusher: SealedSegmentFlush | None = None
        # Group commit (fsync="always"): with defer_sync an append returns before its
        # fdatasync, and the owner calls sync_deferred() before acknowledging anything (a
        # Producer does). _deferred is the segment such appends went to, not yet synced.
        self.defer_sync = False
        self._deferred: Segment | None = None
        if create and not readonly:
            _fs.make_dir(self.path)
        _fs.check_dir(self.path)
        if not readonly:
            self._oplock = _fs.FileLock(os.path.join(self.path, ".lock"))
            self._writers = _fs.FileLock(os.path.join(self.path, ".writers"))
        self._loader = Loader(
            self.path, self._segments, self._state, readonly=readonly, repair=repair, oplock=self._oplock
        )
        self.report: RecoveryReport = self._loader.report
        if readonly:
            self.corruption = self._loader.load(first_writer=False).corruption
            return
        self._open_writer()
        if self.config.fsync == "interval":
            IntervalFlusher(self.config.fsync_interval_ms / 1000, self._interval_flush).start()
        if self.config.retention_ms >= 0 or self.config.retention_bytes >= 0:
            retention.scheduler().add(self, self.config.retention_check_interval_ms / 1000)

    def _open_writer(self) -> None:
        assert self._writers is not None and self._oplock is not None
        first = self._writers.acquire(shared=False, blocking=False)
        try:
            if not first:
                self._wait_for_writers_lock()
            with self._oplock:
                self.corruption = self._loader.load(first_writer=first).corruption
            if first:
                self._writers.acquire(shared=True)  # downgrade: other writers may join now
        except BaseException:
            self._release_locks()
            raise

    def _wait_for_writers_lock(self) -> None:
        assert self._writers is not None
        deadline = time.monotonic() + self.config.open_timeout_ms / 1000
        while not self._writers.acquire(shared=True, blocking=False):
            if time.monotonic() > deadline:
                raise LogqTimeoutError(
                    f"opening {self.path}",
                    self.config.open_timeout_ms / 1000,
                    "another writer is still recovering it",
                    hint="check for a hung logq process",
                )
            time.sleep(0.005)

    # ------------------------------------------------------------------ properties
    @property
    def segments(self) -> tuple[Segment, ...]:
        """The segments, oldest first (a snapshot: only the log changes the list)."""
        return self._segments.snapshot()

    @property
    def log_start_offset(self) -> int:
        return self._state.log_start_offset

    @property
    def recovery_point(self) -> int:
        return self._state.recovery_point

    @property
    def log_end_offset(self) -> int:
        if self.readonly:
            self.refresh()
        return self._end_offset()

    def _end_offset(self) -> int:
        return self._segments.active.next_offset if self._segments else self._state.log_start_offset

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def num_segments(self) -> int:
        return len(self._segments)

    @property
    def active(self) -> Segment:
        return self._segments.active

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

        With fsync="always" the fdatasync runs after the partition's op lock is released
        (other writers append meanwhile; the sync covers whatever reached the file before
        it). With ``defer_sync`` set it is left to ``sync_deferred()`` (group commit: a
        producer writes several batches, then syncs once before acknowledging any of them).
        """
        h = self._check_batch(batch, _trusted)
        with self._mutex:
            self._check_usable()
            if self.readonly:
                raise ReadOnlyLogError(self.path)
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
                stamped = bytearray(batch)
                stamp_base_offset(stamped, base)
                try:
                    pos = seg.append(stamped, h)
                except StorageError:
                    self._after_failed_write(seg)
                    raise
                self._note_cursor(h.next_offset, seg.base_offset, pos + h.size)
            if self.config.fsync == "always":
                if not self.defer_sync:
                    self._sync_deferred()
                    self._sync(seg, data_only=True)
                elif self._deferred is not seg:
                    self._sync_deferred()  # an earlier segment's deferred appends first
                    self._deferred = seg
        return AppendResult(base, h.last_offset, pos, seg.base_offset, h.max_timestamp)

    def sync_deferred(self) -> None:
        """Make the appends made under ``defer_sync`` durable (one fdatasync for all of them).

        A log closed meanwhile synced them in ``close()``; a failed one raises LogFailedError.
        """
        with self._mutex:
            if self._closed and self._failed is None:
                return
            self._check_usable()
            self._sync_deferred()

    def _sync_deferred(self) -> None:
        """Under the mutex: fdatasync the segment holding deferred appends, if any."""
        seg = self._deferred
        if seg is None:
            return
        self._deferred = None
        if self._segments and seg is self.active:
            self._sync(seg, data_only=True)
            return
        # Sealed since (a roll here or adopted from another writer, which may have closed
        # our descriptor): sync the file by its name, as the background flusher does.
        try:
            fd = os.open(seg.log_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # retention removed it: nothing of it is readable anyway
        except OSError as e:
            self._failed = e
            raise LogFailedError(self.path, e) from None
        try:
            os.fdatasync(fd)
        except OSError as e:
            self._failed = e  # never retry a failed fsync
            raise LogFailedError(self.path, e) from None
        finally:
            os.close(fd)

    def _check_batch(self, batch: bytes, trusted: bool) -> BatchHeader:
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
        if not trusted:
            recs = decode_records(batch, h, max_decompressed_bytes=self.config.max_decompressed_bytes)
            if any(r.offset != h.base_offset + i for i, r in enumerate(recs)):
                raise CorruptRecordError("record offset deltas are not 0, 1, 2, ... in order")
        return h

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
        self._state.advance_recovery_point(seg.next_offset)

    def flush(self) -> None:
        """Make everything appended so far durable against power loss."""
        with self._mutex:
            self._check_usable()
            if self.readonly or not self._segments:
                return
            self._sync_deferred()
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
            if self._deferred is old:
                self._deferred = None
        new = self._segments.create_active(old.next_offset)
        self._flush_sealed_in_background(old)
        self.enforce_retention(_locked=True)
        return new

    # ------------------------------------------------------------------ background flushing
    def _flush_sealed_in_background(self, seg: Segment) -> None:
        """fdatasync a just-sealed segment off the append path (fsync="never" only)."""
        if self._flusher is not None:
            self._flusher.wait_synced()  # not join(): it next waits for our mutex
        if self.config.fsync != "never":
            return  # already synced by the roll itself
        self._flusher = SealedSegmentFlush(seg, self._after_sealed_sync, self._fail)
        self._flusher.start()

    def _after_sealed_sync(self, seg: Segment) -> None:
        """On the flusher thread: the segment is durable, so the recovery point may pass it."""
        with self._mutex:
            if self._closed or self._oplock is None:
                return
            with self._oplock:
                if seg.next_offset > self._state.recovery_point:
                    self._state.recovery_point = seg.next_offset
                    try:
                        self._state.write()
                    except DiskFullError:
                        pass  # the data is synced; a stale recovery point only means a longer scan

    def _fail(self, error: BaseException) -> None:
        self._failed = error

    def _interval_flush(self) -> bool:
        """One tick of the interval flusher; False stops it."""
        with self._mutex:
            if self._closed or self._failed is not None:
                return False
            try:
                self._sync(self.active)
            except LogqError:
                return False
            return True

    # ------------------------------------------------------------------ other writers
    def _catch_up(self, force: bool = False) -> None:
        """Adopt what other processes did since our last look (writers: under the op lock)."""
        found = self._loader.catch_up(force)
        if found is not None:
            self.corruption = found

    def refresh(self) -> None:
        """For readers: pick up new batches, new segments and a moved log start."""
        with self._mutex:
            if not self._closed:
                self._catch_up()

    # ------------------------------------------------------------------ retention
    def enforce_retention(self, now_ms: int | None = None, _locked: bool = False) -> int:
        """Delete whole oldest segments past retention_ms / retention_bytes. A non-empty
        active segment past them goes too: an empty one is rolled first (Kafka's rule)."""
        if _locked:
            return self._apply_retention(now_ms)
        with self._mutex:
            self._check_usable()
            assert self._oplock is not None
            with self._oplock:
                self._catch_up()
                return self._apply_retention(now_ms)

    def _apply_retention(self, now_ms: int | None) -> int:
        return retention.apply_retention(
            self._segments, self._state, self.config, now_ms, self._largest_timestamp, self._roll_for_retention
        )

    def _roll_for_retention(self) -> None:
        """Seal the active segment (about to be deleted) and start an empty one."""
        old = self.active
        old.seal()
        self._segments.create_active(old.next_offset)

    def scheduled_retention(self) -> bool:
        """One pass of the retention scheduler; False once the log is closed or failed."""
        if self._closed or self._failed is not None:
            return False
        try:
            self.enforce_retention()
        except LogClosedError:
            return False
        except LogFailedError:
            return False
        return True

    def _largest_timestamp(self, seg: Segment) -> int:
        self._loader.ensure_indexes(seg)
        self._segments.touch(seg)
        return seg.largest_timestamp()

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
                return retention.move_log_start(self._segments, self._state, offset)

    # ------------------------------------------------------------------ reading
    def _note_cursor(self, offset: int, seg_base: int, pos: int) -> None:
        c = self._cursors
        if self._cursor_generation != self._segments.generation:
            c.clear()  # segments left the list: positions in them mean nothing now
            self._cursor_generation = self._segments.generation
        c[offset] = (seg_base, pos)
        if len(c) > _CURSOR_CACHE_ENTRIES:
            c.popitem(last=False)

    def _cursor(self, offset: int) -> tuple[int, int] | None:
        if self._cursor_generation != self._segments.generation:
            return None
        return self._cursors.get(offset)

    def read(self, offset: int, max_bytes: int = DEFAULT_FETCH_BYTES) -> FetchResult:
        """Whole batches from the one holding ``offset``, about ``max_bytes`` (at least one)."""
        with self._mutex:
            self._check_usable()
            if self.readonly:
                # Readers catch up before every read: new batches, new segments, and a log
                # start that retention or a purge moved elsewhere (purged data stays unread).
                self._catch_up()
            end = self._end_offset()
            if offset == end:
                if self.corruption is not None and self._segments and self.corruption.path == self.active.log_path:
                    raise self.corruption  # the data after this point is damaged, not absent
                return FetchResult(offset, b"", [], offset, log_end_offset=end)
            if not self.log_start_offset <= offset <= end:
                raise OffsetOutOfRangeError(offset, self.log_start_offset, end, self.path)
            try:
                res = self._read_locked(offset, max_bytes)
                res.log_end_offset = end
                return res
            except OSError as e:  # FileNotFoundError, or the StorageError(ENOENT) of opening it
                if e.errno != errno.ENOENT:
                    raise
                self._catch_up(force=True)  # retention removed it under us
                if offset < self.log_start_offset:
                    raise OffsetOutOfRangeError(offset, self.log_start_offset, self.log_end_offset, self.path) from None
                return self._read_locked(offset, max_bytes)

    def _read_locked(self, offset: int, max_bytes: int) -> FetchResult:
        cur = self._cursor(offset)
        seg = self._segments.floor(offset)
        if cur is not None and cur[0] == seg.base_offset and cur[1] < seg.size:
            pos = cur[1]
        else:
            self._loader.ensure_indexes(seg)
            pos, h0 = seg.find_position(offset)
            if h0 is None:  # offset == this segment's end: the next segment starts there
                nxt = self._segments.after(seg)
                if nxt is None:
                    return FetchResult(offset, b"", [], offset)
                seg, pos = nxt, 0
        self._segments.touch(seg)
        data = seg.read(pos, max(max_bytes, BATCH_OVERHEAD))
        first = peek_batch_size(data)
        if (
            first is not None
            and first > len(data)
            and BATCH_OVERHEAD <= first <= self.config.max_batch_bytes
            and pos + first <= seg.size
        ):
            # min-one-batch: a first batch larger than max_bytes; read only the rest of it
            data += seg.read(pos + len(data), first - len(data))
        nread = len(data)
        headers = self._whole_batches(data, offset, seg, pos)
        if not headers:
            return FetchResult(offset, b"", [], offset, nread)
        p = sum(h.size for h in headers)
        nxt_offset = headers[-1].next_offset
        self._note_cursor(nxt_offset, seg.base_offset, pos + p)
        return FetchResult(offset, data if p == len(data) else data[:p], headers, nxt_offset, nread)

    def _whole_batches(self, data: bytes, offset: int, seg: Segment, pos: int) -> list[BatchHeader]:
        """The valid batches at the start of ``data`` (read at ``pos`` of ``seg``): the first
        must hold ``offset``, the rest continue its offsets; a batch cut off by the end of
        ``data`` starts the next fetch. Damage in the first batch raises; later, it ends the
        list (the next read reports it)."""
        headers: list[BatchHeader] = []
        try:
            for _, h in iter_batches(
                data, max_batch_bytes=self.config.max_batch_bytes, contiguous=True, partial_ok=True
            ):
                if not headers and not h.base_offset <= offset <= h.last_offset:
                    raise CorruptRecordError(f"batch holds offsets {h.base_offset}-{h.last_offset}, not {offset}")
                headers.append(h)
            if not headers and len(data) >= LOG_OVERHEAD:
                validate_batch(data, 0, max_batch_bytes=self.config.max_batch_bytes)  # raises: cut short
        except CorruptRecordError as e:
            if not headers:
                raise CorruptRecordError(e.reason, path=seg.log_path, position=pos) from None
        return headers

    def read_records(self, offset: int, max_bytes: int = DEFAULT_FETCH_BYTES) -> list[BatchRecord]:
        return self.read(offset, max_bytes).records(self.config.max_decompressed_bytes)

    def read_columns(
        self, offset: int, max_bytes: int = DEFAULT_FETCH_BYTES, *, max_records: int | None = None
    ) -> RecordColumns:
        """``read``, decoded as a RecordColumns (numpy and Arrow-style columns, see
        logq/codec/columnar.py) of at most ``max_records`` records from ``offset`` on. The
        topic and partition come from the directory name ``<topic>-<partition>``."""
        name = os.path.basename(self.path)
        topic, _, p = name.rpartition("-")
        if not (topic and p.isdigit()):
            topic, p = name, "0"
        return self.read(offset, max_bytes).columns(
            self.config.max_decompressed_bytes, topic=topic, partition=int(p), max_records=max_records
        )

    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        """First offset whose record timestamp >= ``timestamp_ms`` (Kafka's rule), else None."""
        with self._mutex:
            self._check_usable()
            if self.readonly:
                self._catch_up()
            for seg in self._segments.snapshot():
                self._loader.ensure_indexes(seg)
                self._segments.touch(seg)
                if not self._segments.is_active(seg) and seg.largest_timestamp() < timestamp_ms:
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
                    self._close_writer()
            finally:
                self._closed = True
                if not self.readonly:
                    retention.scheduler().remove(self)
                self._segments.close_all()
                self._release_locks()

    def _close_writer(self) -> None:
        """Seal the time index; the last writer out records a clean shutdown."""
        if self._flusher is not None:
            self._flusher.wait_synced()
        self._sync_deferred()  # appends made under defer_sync are durable once close returns
        assert self._oplock is not None and self._writers is not None
        with self._oplock:
            self._catch_up()
            last = self.active
            last.timeindex.maybe_append(last.max_timestamp, last.offset_of_max_timestamp, final=True)
            if self._writers.acquire(shared=False, blocking=False):  # no other writer is open
                last.flush()
                self._state.advance_recovery_point(last.next_offset)
                self._state.write(clean=self.corruption is None)

    def _release_locks(self) -> None:
        for lock in (self._writers, self._oplock):
            if lock is not None:
                lock.close()

    def __enter__(self) -> PartitionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        end = self.log_end_offset if self._segments else "?"
        return f"PartitionLog({self.path!r}, start={self.log_start_offset}, end={end})"
