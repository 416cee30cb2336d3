"""Opening, recovering and keeping a partition log consistent with the files on disk.

Recovery rules (Kafka's LogLoader, hardened by reliability.md section 3):

1. The first writer to open a partition (it gets ``.writers`` exclusively) writes
   ``clean: false`` to ``logq.state`` *before* it touches anything, so a crash during
   recovery is itself recovered next time; recovery is idempotent.
2. Stray ``*.tmp`` / ``.deleted`` / ``.cleaned`` / ``.swap`` files and index files without a
   ``.log`` are deleted; segments wholly below the log start offset are deleted.
3. After an unclean shutdown the segments are re-validated batch by batch (size, magic,
   CRC, contiguous offsets) and their indexes rebuilt. If the machine did not reboot (same
   ``boot_id``), only a process died: the page cache kept every completed write, so only the
   last segment can have a torn tail and only it is scanned. After a reboot every segment
   from the one holding the recovery point is scanned.
4. At the first invalid batch at offset X: if X >= the recovery point (data that was never
   known durable) the tail is cut there and any later segments are deleted, and the dropped
   bytes are reported. If X < the recovery point the bytes were once durable, so this is
   damage, not a torn write: nothing is deleted, reads stop there with CorruptRecordError,
   and ``repair=True`` (``logq repair``) is needed to cut it.
5. A clean open skips the scan: the last segment's tail after its last index entry is
   checked, the indexes are sanity-checked, and anything suspect is rebuilt from the log.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

from logq.codec.batch import read_header
from logq.errors import CorruptIndexError, CorruptRecordError, DiskFullError, LogqError
from logq.storage import files as _fs
from logq.storage import meta as _meta
from logq.storage.segment import ScanResult, Segment, list_segment_files, segment_name

if TYPE_CHECKING:
    from logq.storage.log import PartitionLog

_FLUSH_JOIN_TIMEOUT_S = 30.0


def may_write(log: PartitionLog) -> bool:
    """Only a writer holding the partition's op lock may change files: without the lock, a
    batch another process is writing right now looks exactly like a torn tail."""
    return not log.readonly and log._oplock is not None and log._oplock.held


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


# ---------------------------------------------------------------------- state file
def _state_path(log: PartitionLog) -> str:
    from logq.storage.log import STATE_FILE

    return os.path.join(log.path, STATE_FILE)


def _stamp(path: str) -> object:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def read_state(log: PartitionLog) -> dict | None:
    path = _state_path(log)
    log._state_stamp = _stamp(path)
    got = _meta.read_meta(path)
    log.report.notes.extend(got.problems)
    return got.value if isinstance(got.value, dict) else None


def write_state(log: PartitionLog, clean: bool = False) -> None:
    path = _state_path(log)
    _meta.write_meta(
        path,
        {
            "version": 1,
            "log_start_offset": log.log_start_offset,
            "recovery_point": log.recovery_point,
            "clean": clean,
            "boot_id": boot_id(),
        },
        sync=True,
    )
    log._state_stamp = _stamp(path)


# ---------------------------------------------------------------------- loading
def load(log: PartitionLog, first_writer: bool) -> None:
    writer = not log.readonly
    state = read_state(log) or {}
    log.log_start_offset = int(state.get("log_start_offset", 0))
    log.recovery_point = int(state.get("recovery_point", 0))
    was_clean = bool(state.get("clean", False))
    same_boot = bool(state.get("boot_id")) and state.get("boot_id") == boot_id()
    bases, stray, orphans = list_segment_files(log.path)
    if writer and first_writer:
        write_state(log, clean=False)  # rule 1: before anything else
        log.report.clean = was_clean or not bases
        _delete_names(log, stray + orphans)
    _build_segments(log, bases)
    if writer and not log.segments:
        log._new_segment(log.log_start_offset)
    if not log.segments:
        return
    if writer:
        _drop_below_start(log)
    log.log_start_offset = max(log.log_start_offset, log.segments[0].base_offset)
    if writer and first_writer and not log.report.clean:
        _recover(log, same_boot)
    else:
        _load_last(log)
    if (
        writer
        and bases
        and log.corruption is None
        and not log.repair
        and log.log_start_offset <= log.active.next_offset < log.recovery_point
    ):
        # Whole batches missing below the durable point (a cut at a batch boundary): damage.
        log.corruption = CorruptRecordError(
            f"log ends at offset {log.active.next_offset}, below the recovery point {log.recovery_point}",
            path=log.active.log_path,
            position=log.active.size,
        )
        log.report.corruption = str(log.corruption)
    if writer and log.active.next_offset < log.log_start_offset:
        # Files deleted by hand below a recorded start: keep the start, begin afresh there.
        log.report.notes.append(f"log end {log.active.next_offset} below log start {log.log_start_offset}: reset")
        _delete_segments(log, len(log.segments))
        log._new_segment(log.log_start_offset)
    if log.corruption is None:  # keep the recovery point above damage until it is repaired
        log.recovery_point = min(log.recovery_point, log.active.next_offset)
    if writer and first_writer:
        _fs.crash_point("recovery-before-state")
        write_state(log, clean=False)


def _delete_names(log: PartitionLog, names: list) -> None:
    for name in names:
        _fs.unlink_if_exists(os.path.join(log.path, name))
        log.report.stray_files_deleted.append(name)
    if names:
        _fs.fsync_dir(log.path)


def _build_segments(log: PartitionLog, bases: list) -> None:
    segs = []
    for i, base in enumerate(bases):
        seg = log._make_segment(base, persist=not log.readonly)
        if i + 1 < len(bases):
            seg.sealed = True
            seg.next_offset = bases[i + 1]
            seg.size = _sealed_size(seg.log_path, 0)
        segs.append(seg)
    log.segments = segs
    log._bases = list(bases)


def _sealed_size(path: str, default: int) -> int:
    """A sealed segment's size; ``default`` if retention unlinked it after the listing (a
    reader's race: it is below the new log start, and reading it makes the reader catch up)."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return default


def _drop_below_start(log: PartitionLog) -> None:
    n = 0
    while n + 1 < len(log.segments) and log.segments[n + 1].base_offset <= log.log_start_offset:
        n += 1
    if n:
        log.report.segments_deleted += n
        _delete_segments(log, n)


def _delete_segments(log: PartitionLog, n: int) -> None:
    """Delete the n oldest segments (files unlinked; open maps elsewhere stay valid)."""
    for seg in log.segments[:n]:
        seg.delete_files()
        log._open_lru.pop(seg.base_offset, None)
    _fs.crash_point("retention-after-unlink")
    del log.segments[:n]
    del log._bases[:n]
    log._cursors.clear()
    _fs.fsync_dir(log.path)


def _load_last(log: PartitionLog) -> None:
    """Clean path: trust the indexes after checking them, validate only the tail."""
    last = log.segments[-1]
    last.sealed = False
    last.open(not log.readonly)
    size = last.file_size()
    start, start_offset = 0, last.base_offset
    try:
        last.load_indexes()
        last.index.check(max(size, 1))
        if last.index.entries:
            start = last.index.last_position()
            h = read_header(last.read(start, 61, limit=size))
            if h.last_offset != last.base_offset + int(last.index.keys()[-1]) or h.base_offset < last.base_offset:
                raise CorruptIndexError(last.index.path, "last entry does not point at its batch")
            start_offset = h.base_offset
        last.timeindex.check(last.base_offset + 2**31)  # offsets: verify_indexes checks them
        last.verify_indexes(size)
        ts, ts_off = last.timeindex.last_entry()
        last.max_timestamp, last.offset_of_max_timestamp = ts, ts_off
    except (CorruptIndexError, CorruptRecordError) as e:
        log.report.notes.append(f"index of segment {last.base_offset} rebuilt: {e}")
        start, start_offset = 0, last.base_offset
        last.indexes_loaded = False
    res = last.scan(start, start_offset, rebuild=not last.indexes_loaded, track=True)
    if not last.indexes_loaded:
        last.indexes_loaded = True
        if may_write(log):
            last.write_indexes()
            log.report.indexes_rebuilt += 1
    _settle_tail(log, last, res)


def _settle_tail(log: PartitionLog, seg: Segment, res: ScanResult) -> None:
    """Adopt a scan of the last segment; cut or keep an invalid tail by rule 4."""
    seg.size, seg.next_offset = res.valid_bytes, res.next_offset
    if res.error is None:
        return
    if res.next_offset < log.recovery_point and not log.repair:
        # Below the durable point these bytes were whole once: damage, for readers too.
        log.corruption = res.error
        log.report.corruption = str(res.error)
        return
    if not may_write(log):
        return  # a torn tail or a write in progress: stop before it, like a reader
    dropped = res.file_bytes - res.valid_bytes
    seg.truncate_to(res.valid_bytes, in_place=True)
    seg.index.truncate_to_offset(res.next_offset)
    seg.timeindex.truncate_to_offset(res.next_offset)
    seg.write_indexes()
    log.report.bytes_truncated += dropped
    log.report.notes.append(f"cut {dropped} invalid bytes at {seg.log_path}:{res.valid_bytes}: {res.error.reason}")


def _recover(log: PartitionLog, same_boot: bool) -> None:
    segs = log.segments
    if same_boot:
        first = len(segs) - 1
    else:
        first = max(0, next((i for i, s in enumerate(segs) if s.next_offset > log.recovery_point or s is segs[-1]), 0))
    i = first
    while i < len(segs):
        seg = segs[i]
        is_last = i == len(segs) - 1
        seg.sealed = False
        seg.open(is_last)
        res = seg.scan(0, seg.base_offset, rebuild=True)
        seg.indexes_loaded = True
        log.report.segments_recovered += 1
        gap = not is_last and res.error is None and res.next_offset != segs[i + 1].base_offset
        if res.error is None and not gap:
            if not is_last:
                seg.timeindex.maybe_append(seg.max_timestamp, seg.offset_of_max_timestamp, final=True)
                seg.sealed = True
                seg.close_files()
            seg.write_indexes()
            _fs.crash_point("recovery-after-index-rebuild")
            log.report.indexes_rebuilt += 1
            seg.size, seg.next_offset = res.valid_bytes, res.next_offset
            i += 1
            continue
        bad_offset = res.next_offset
        if bad_offset < log.recovery_point and not log.repair:
            err = res.error or CorruptRecordError(
                f"segment ends at offset {res.next_offset}, next starts at {segs[i + 1].base_offset}",
                path=seg.log_path,
                position=res.valid_bytes,
            )
            log.corruption = err
            log.report.corruption = str(err)
            seg.write_indexes()
            if is_last:
                seg.size, seg.next_offset = res.valid_bytes, res.next_offset
            else:
                seg.sealed = True
                _load_last(log)  # the damage is kept: the active segment must still be loaded
            return
        _cut_and_drop_later(log, i, res)
        return


def _cut_and_drop_later(log: PartitionLog, i: int, res: ScanResult) -> None:
    segs = log.segments
    seg = segs[i]
    later = segs[i + 1 :]
    dropped = res.file_bytes - res.valid_bytes + sum(os.path.getsize(s.log_path) for s in later)
    for s in later:
        s.delete_files()
    del segs[i + 1 :]
    del log._bases[i + 1 :]
    seg.truncate_to(res.valid_bytes, in_place=not later)
    _fs.crash_point("recovery-after-truncate")
    seg.sealed = False
    seg.open(True)
    seg.size, seg.next_offset = res.valid_bytes, res.next_offset
    seg.write_indexes()
    _fs.crash_point("recovery-after-index-rebuild")
    log.report.indexes_rebuilt += 1
    if later:
        _fs.fsync_dir(log.path)
    log.report.bytes_truncated += dropped
    log.report.segments_deleted += len(later)
    reason = res.error.reason if res.error else "offset gap to the next segment"
    log.report.notes.append(f"cut {dropped} bytes from {seg.log_path}:{res.valid_bytes} on: {reason}")


def rebuild_indexes(log: PartitionLog, seg: Segment, reason: str) -> None:
    """An index failed its checks on first use: rebuild it from the log."""
    res = seg.scan(0, seg.base_offset, rebuild=True)
    if seg.sealed:
        seg.timeindex.maybe_append(seg.max_timestamp, seg.offset_of_max_timestamp, final=True)
    seg.indexes_loaded = True
    if may_write(log):
        seg.write_indexes()
    log.report.indexes_rebuilt += 1
    log.report.notes.append(f"index of segment {seg.base_offset} rebuilt: {reason}")
    if res.error is not None and seg.sealed:
        log.report.notes.append(f"segment {seg.base_offset} has damage at byte {res.valid_bytes}")


# ---------------------------------------------------------------------- other writers
def catch_up(log: PartitionLog, force: bool = False) -> None:
    """Adopt other processes' changes: a moved log start, new batches, new segments."""
    if force or _stamp(_state_path(log)) != log._state_stamp:
        state = read_state(log) or {}
        log.recovery_point = max(log.recovery_point, int(state.get("recovery_point", 0)))
        start = int(state.get("log_start_offset", 0))
        if start > log.log_start_offset:
            log.log_start_offset = start
            n = 0
            # Also drop segments whose file is gone: retention elsewhere may have removed
            # every segment we know (oldest first), even our last one.
            while n < len(log.segments) and (
                (n + 1 < len(log.segments) and log.segments[n + 1].base_offset <= start)
                or not os.path.exists(log.segments[n].log_path)
            ):
                n += 1
            for seg in log.segments[:n]:
                seg.close_files()
                log._open_lru.pop(seg.base_offset, None)
            del log.segments[:n]
            del log._bases[:n]
            log._cursors.clear()
    if not log.segments:
        bases, _, _ = list_segment_files(log.path)
        if not bases:
            return
        _build_segments(log, bases)
        _load_last(log)
        return
    last = log.segments[-1]
    size = last.file_size()
    if size != last.size:
        res = last.scan(last.size, last.next_offset, track=True)
        if res.error is None or log.readonly:
            last.size, last.next_offset = res.valid_bytes, res.next_offset
        else:
            _settle_tail(log, last, res)
        if last.indexes_loaded:
            last.index.reload_if_changed()
            last.timeindex.reload_if_changed()
        if log.readonly and res.error is None and res.batches:
            return  # a reader sees a roll on a later call (one stat less); writers must look now
    if os.path.exists(os.path.join(log.path, segment_name(last.next_offset) + ".log")):
        _adopt_new_segments(log)


def _adopt_new_segments(log: PartitionLog) -> None:
    bases, _, _ = list_segment_files(log.path)
    old_last = log.segments[-1]
    newer = [b for b in bases if b > old_last.base_offset]
    if not newer:
        return
    old_last.close_files()
    old_last.sealed = True
    old_last.size = _sealed_size(old_last.log_path, old_last.size)
    old_last.indexes_loaded = False
    for i, base in enumerate(newer):
        seg = log._make_segment(base, persist=not log.readonly)
        if i + 1 < len(newer):
            seg.sealed, seg.next_offset = True, newer[i + 1]
            seg.size = _sealed_size(seg.log_path, 0)
        log.segments.append(seg)
        log._bases.append(base)
    old_last.next_offset = newer[0]
    _load_last(log)


# ---------------------------------------------------------------------- retention
def apply_retention(log: PartitionLog, now_ms: int | None) -> int:
    cfg = log.config
    now = time.time() * 1000 if now_ms is None else now_ms
    segs = log.segments
    total = sum(s.size for s in segs)
    n = 0
    for i, seg in enumerate(segs[:-1]):
        if segs[i + 1].base_offset <= log.log_start_offset:
            pass
        elif cfg.retention_ms >= 0 and now - _largest_timestamp(log, seg) > cfg.retention_ms:
            pass
        elif cfg.retention_bytes >= 0 and total - seg.size >= cfg.retention_bytes:
            pass
        else:
            break
        total -= seg.size
        n += 1
    if n:
        log.log_start_offset = max(log.log_start_offset, segs[n].base_offset)
        write_state(log)
        _fs.crash_point("retention-after-state")
        _delete_segments(log, n)
    return n


def _largest_timestamp(log: PartitionLog, seg: Segment) -> int:
    """From a checked (or rebuilt) time index: a bad index must never drive retention."""
    log._ensure_indexes(seg)
    log._touch(seg)
    return seg.largest_timestamp()


def set_log_start(log: PartitionLog, offset: int) -> int:
    log.log_start_offset = max(log.log_start_offset, offset)
    write_state(log)
    n = 0
    while n + 1 < len(log.segments) and log.segments[n + 1].base_offset <= log.log_start_offset:
        n += 1
    if n:
        _delete_segments(log, n)
    return n


# ---------------------------------------------------------------------- flushing
def flush_sealed_in_background(log: PartitionLog, seg: Segment) -> None:
    """fdatasync a just-sealed segment off the append path, then advance the recovery point."""
    prev = log._flusher
    if prev is not None:
        prev.synced.wait(_FLUSH_JOIN_TIMEOUT_S)  # not join(): it next waits for log._mutex, which we hold
    if log.config.fsync != "never":
        return  # already synced by the roll itself
    t = threading.Thread(target=_flush_sealed, args=(log, seg), name="logq-flush", daemon=True)
    t.synced = threading.Event()  # type: ignore[attr-defined]  # set once its fsyncs are done
    log._flusher = t
    t.start()


def _flush_sealed(log: PartitionLog, seg: Segment) -> None:
    try:
        for p in (seg.log_path, seg.index.path, seg.timeindex.path):
            try:
                fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        threading.current_thread().synced.set()  # type: ignore[attr-defined]
        with log._mutex:
            if log._closed or log._oplock is None:
                return
            with log._oplock:
                if seg.next_offset > log.recovery_point:
                    log.recovery_point = seg.next_offset
                    try:
                        write_state(log)
                    except DiskFullError:
                        pass  # the data is synced; a stale recovery point only means a longer scan
    except (OSError, LogqError) as e:
        log._failed = e
    finally:
        threading.current_thread().synced.set()  # type: ignore[attr-defined]


def start_interval_flusher(log: PartitionLog) -> None:
    def run() -> None:
        period = log.config.fsync_interval_ms / 1000
        while True:
            time.sleep(period)
            with log._mutex:
                if log._closed or log._failed is not None:
                    return
                try:
                    log._sync(log.active)
                except LogqError:
                    return

    threading.Thread(target=run, name="logq-interval-flush", daemon=True).start()


def close_writer(log: PartitionLog) -> None:
    if log._flusher is not None:
        log._flusher.synced.wait(_FLUSH_JOIN_TIMEOUT_S)  # type: ignore[attr-defined]
    assert log._oplock is not None and log._writers is not None
    with log._oplock:
        catch_up(log)
        last = log.active
        last.timeindex.maybe_append(last.max_timestamp, last.offset_of_max_timestamp, final=True)
        if log._writers.acquire(shared=False, blocking=False):  # no other writer is open
            last.flush()
            log.recovery_point = max(log.recovery_point, last.next_offset)
            write_state(log, clean=log.corruption is None)
