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
   known durable) the tail is cut there and any later segments are set aside (renamed
   ``<name>.stray``, never deleted: past a break a file may be a stray as well as an unsynced
   tail), and the cut bytes are reported. If X < the recovery point the bytes were once durable, so this is
   damage, not a torn write: nothing is deleted, reads stop there with CorruptRecordError,
   and ``repair=True`` (``logq repair``) is needed to cut it.
5. Before any of this, ``screen`` sets aside files named like segments that logq did not
   write (see its docstring and docs/durability.md, "Files logq did not write").
6. A clean open skips the scan: the last segment's tail after its last index entry is
   checked, the indexes are sanity-checked, and anything suspect is rebuilt from the log.

Shape (Kafka's LogLoader): a :class:`Loader` works on the partition directory, a
:class:`SegmentList` and a :class:`PartitionState` that the log hands it, and on nothing
else of the log's. ``load`` fills them and returns what it recovered (:class:`Recovered`:
the report and any damage kept below the durable point); ``catch_up`` adopts what other
processes did since (a moved log start, new batches, new segments) and returns damage
found in the new tail; ``ensure_indexes`` checks a segment's indexes on first use and
rebuilds them from the log when they fail.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from logq.codec.batch import BATCH_OVERHEAD, read_header
from logq.errors import CorruptIndexError, CorruptRecordError, storage_error
from logq.storage import files as _fs
from logq.storage.segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    QUARANTINE_SUFFIX,
    TIME_INDEX_SUFFIX,
    ScanResult,
    Segment,
    list_quarantined,
    list_segment_files,
    segment_name,
)
from logq.storage.segments import SegmentList
from logq.storage.state import PartitionState, StoredState

__all__ = ["Loader", "Recovered", "RecoveryReport"]


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
    # Files named like segments that logq did not write ("<name>: <why>"); ignored, and set
    # aside as "<name>.stray" by a writer so they never move an offset.
    stray_segments: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)  # "*.stray" files set aside before


@dataclass(frozen=True)
class Recovered:
    """What opening a partition found: the report, and damage kept below the durable point."""

    report: RecoveryReport
    corruption: CorruptRecordError | None


class Loader:
    """Loads a partition directory into a segment list and partition state, and keeps them
    in step with the files afterwards (other processes' appends, rolls and retention).

    It knows the directory, the segment list and the state it fills, and the partition's op
    lock only to ask whether it is held: without the lock, a batch another process is
    writing right now looks exactly like a torn tail, so nothing is changed on disk.
    ``report`` gathers what was done, from the open on (index rebuilds happen on first use).
    """

    def __init__(
        self,
        directory: str,
        segments: SegmentList,
        state: PartitionState,
        *,
        readonly: bool,
        repair: bool,
        oplock: _fs.FileLock | None,
    ) -> None:
        self.directory = directory
        self.segments = segments
        self.state = state
        self.readonly = readonly
        self.repair = repair
        self._oplock = oplock
        self.report = RecoveryReport()
        # A break between two segments below the recovery point, found by ``screen``.
        self.screen_damage: CorruptRecordError | None = None
        # A reader's active segment whose index files grew since they were loaded: reloaded
        # on their next use (ensure_indexes), not on every catch-up. Reads that continue
        # where the last one ended follow a cursor and never look at the indexes, and a
        # sparse index missing its newest entries is still right, only less precise.
        self._stale_indexes: Segment | None = None

    def may_write(self) -> bool:
        """Only a writer holding the partition's op lock may change files."""
        return not self.readonly and self._oplock is not None and self._oplock.held

    def _read_state(self) -> StoredState:
        stored = self.state.read()
        self.report.notes.extend(stored.problems)
        return stored

    # ------------------------------------------------------------------ loading
    def load(self, first_writer: bool) -> Recovered:
        """Build the segment list from the directory; recover it if the last close was unclean."""
        writer = not self.readonly
        st, segs = self.state, self.segments
        stored = self._read_state()
        st.log_start_offset, st.recovery_point = stored.log_start_offset, stored.recovery_point
        bases, stray, orphans = list_segment_files(self.directory)
        if writer and first_writer:
            st.write(clean=False)  # rule 1: before anything else
            self.report.clean = stored.clean or not bases
            self._delete_names(stray + orphans)
        self.report.quarantined = list_quarantined(self.directory)
        bases = self.screen(bases)
        self._build(bases)
        if writer and not segs:
            segs.create_active(st.log_start_offset)
        if not segs:
            return Recovered(self.report, None)
        if writer:
            self._drop_below_start()
        st.log_start_offset = max(st.log_start_offset, segs[0].base_offset)
        if writer and first_writer and not self.report.clean:
            corruption = self._recover(stored.same_boot)
        else:
            corruption = self._load_last()
        active = segs.active
        if corruption is None and self.screen_damage is not None:
            corruption = self.screen_damage
            self.report.corruption = str(corruption)
        if (
            writer
            and bases
            and corruption is None
            and not self.repair
            and st.log_start_offset <= active.next_offset < st.recovery_point
        ):
            # Whole batches missing below the durable point (a cut at a batch boundary): damage.
            corruption = CorruptRecordError(
                f"log ends at offset {active.next_offset}, below the recovery point {st.recovery_point}",
                path=active.log_path,
                position=active.size,
            )
            self.report.corruption = str(corruption)
        if writer and active.next_offset < st.log_start_offset:
            # Files deleted by hand below a recorded start: keep the start, begin afresh there.
            self.report.notes.append(f"log end {active.next_offset} below log start {st.log_start_offset}: reset")
            segs.delete_front(len(segs))
            segs.create_active(st.log_start_offset)
        if corruption is None:  # keep the recovery point above damage until it is repaired
            st.recovery_point = min(st.recovery_point, segs.active.next_offset)
        if writer and first_writer:
            _fs.crash_point("recovery-before-state")
            st.write(clean=False)
        return Recovered(self.report, corruption)

    def _delete_names(self, names: list[str]) -> None:
        for name in names:
            _fs.unlink_if_exists(os.path.join(self.directory, name))
            self.report.stray_files_deleted.append(name)
        if names:
            _fs.fsync_dir(self.directory)

    def _sealed(self, base: int, next_base: int) -> Segment:
        """A sealed segment from a listing: it ends where the next one starts."""
        seg = self.segments.make(base)
        seg.sealed, seg.next_offset = True, next_base
        seg.size = _sealed_size(seg.log_path, 0)
        return seg

    def _build(self, bases: list[int]) -> None:
        segs = [self._sealed(b, bases[i + 1]) for i, b in enumerate(bases[:-1])]
        if bases:
            segs.append(self.segments.make(bases[-1]))
        self.segments.reset(segs)

    def _drop_below_start(self) -> None:
        n = self.segments.count_below(self.state.log_start_offset)
        if n:
            self.report.segments_deleted += n
            self.segments.delete_front(n)

    def _load_last(self) -> CorruptRecordError | None:
        """Clean path: trust the indexes after checking them, validate only the tail."""
        last = self.segments.active
        last.sealed = False
        last.open(not self.readonly)
        size = last.file_size()
        start, start_offset = 0, last.base_offset
        try:
            last.load_indexes()
            last.index.check(max(size, 1))
            if last.index.entries:
                start = last.index.last_position()
                h = read_header(last.read(start, BATCH_OVERHEAD, limit=size))
                if h.last_offset != last.base_offset + int(last.index.keys()[-1]) or h.base_offset < last.base_offset:
                    raise CorruptIndexError(last.index.path, "last entry does not point at its batch")
                start_offset = h.base_offset
            last.timeindex.check(last.base_offset + 2**31)  # offsets: verify_indexes checks them
            last.verify_indexes(size)
            ts, ts_off = last.timeindex.last_entry()
            last.max_timestamp, last.offset_of_max_timestamp = ts, ts_off
        except (CorruptIndexError, CorruptRecordError) as e:
            self.report.notes.append(f"index of segment {last.base_offset} rebuilt: {e}")
            start, start_offset = 0, last.base_offset
            last.indexes_loaded = False
        res = last.scan(start, start_offset, rebuild=not last.indexes_loaded, track=True)
        if not last.indexes_loaded:
            last.indexes_loaded = True
            if self.may_write():
                last.write_indexes()
                self.report.indexes_rebuilt += 1
        return self._settle_tail(last, res)

    def _settle_tail(self, seg: Segment, res: ScanResult) -> CorruptRecordError | None:
        """Adopt a scan of the last segment; cut or keep an invalid tail by rule 4.
        Returns the damage kept (below the durable point), else None."""
        seg.size, seg.next_offset = res.valid_bytes, res.next_offset
        if res.error is None:
            return None
        if res.next_offset < self.state.recovery_point and not self.repair:
            # Below the durable point these bytes were whole once: damage, for readers too.
            self.report.corruption = str(res.error)
            return res.error
        if not self.may_write():
            return None  # a torn tail or a write in progress: stop before it, like a reader
        dropped = res.file_bytes - res.valid_bytes
        seg.truncate_to(res.valid_bytes, in_place=True)
        seg.index.truncate_to_offset(res.next_offset)
        seg.timeindex.truncate_to_offset(res.next_offset)
        seg.write_indexes()
        self.report.bytes_truncated += dropped
        self.report.notes.append(f"cut {dropped} invalid bytes at {seg.log_path}:{res.valid_bytes}: {res.error.reason}")
        return None

    def _first_to_recover(self, same_boot: bool) -> int:
        segs = self.segments
        if same_boot:
            return len(segs) - 1  # only a process died: only the last segment can be torn
        rp = self.state.recovery_point
        return next((i for i, s in enumerate(segs) if s.next_offset > rp or segs.is_active(s)), 0)

    def _recover(self, same_boot: bool) -> CorruptRecordError | None:
        segs = self.segments
        i = self._first_to_recover(same_boot)
        while i < len(segs):
            seg = segs[i]
            is_last = i == len(segs) - 1
            seg.sealed = False
            seg.open(is_last)
            res = seg.scan(0, seg.base_offset, rebuild=True)
            seg.indexes_loaded = True
            self.report.segments_recovered += 1
            gap = not is_last and res.error is None and res.next_offset != segs[i + 1].base_offset
            if res.error is None and not gap:
                if not is_last:
                    seg.timeindex.maybe_append(seg.max_timestamp, seg.offset_of_max_timestamp, final=True)
                    seg.sealed = True
                    seg.close_files()
                seg.write_indexes()
                _fs.crash_point("recovery-after-index-rebuild")
                self.report.indexes_rebuilt += 1
                seg.size, seg.next_offset = res.valid_bytes, res.next_offset
                i += 1
                continue
            if res.next_offset < self.state.recovery_point and not self.repair:
                return self._keep_damage(i, res)
            self._cut_and_drop_later(i, res)
            return None
        return None

    def _keep_damage(self, i: int, res: ScanResult) -> CorruptRecordError:
        """Damage below the durable point: keep every byte, report it, load the rest."""
        segs = self.segments
        seg = segs[i]
        err = res.error or CorruptRecordError(
            f"segment ends at offset {res.next_offset}, next starts at {segs[i + 1].base_offset}",
            path=seg.log_path,
            position=res.valid_bytes,
        )
        self.report.corruption = str(err)
        seg.write_indexes()
        if segs.is_active(seg):
            seg.size, seg.next_offset = res.valid_bytes, res.next_offset
            return err
        seg.sealed = True
        later = self._load_last()  # the damage is kept: the active segment must still be loaded
        return later if later is not None else err

    def _cut_and_drop_later(self, i: int, res: ScanResult) -> None:
        seg = self.segments[i]
        later = self.segments.cut_after(i)
        reason = res.error.reason if res.error else "offset gap to the next segment"
        dropped = res.file_bytes - res.valid_bytes
        for s in later:
            # Set aside, not deleted: past a cut a file may be a stray as well as an unsynced
            # tail, and either way its bytes are kept for the user (docs/durability.md).
            s.close_files()
            self._set_aside(s.base_offset, f"after the log was cut at offset {res.next_offset}: {reason}")
        seg.truncate_to(res.valid_bytes, in_place=not later)
        _fs.crash_point("recovery-after-truncate")
        seg.sealed = False
        seg.open(True)
        seg.size, seg.next_offset = res.valid_bytes, res.next_offset
        seg.write_indexes()
        _fs.crash_point("recovery-after-index-rebuild")
        self.report.indexes_rebuilt += 1
        self.report.bytes_truncated += dropped
        self.report.notes.append(f"cut {dropped} bytes from {seg.log_path}:{res.valid_bytes} on: {reason}")

    # ------------------------------------------------------------------ stray segment files
    def screen(self, bases: list[int], before: tuple[int, int] | None = None) -> list[int]:
        """The base offsets of files that are segments logq wrote; the others are reported
        and, by a writer, set aside (renamed, never deleted). ``before`` is (base, end
        offset) of a known segment that precedes ``bases``.

        Each file is judged by where the segment before it really ends (``e``, found by
        walking that segment's batch headers, contiguous offsets) against its name ``b``
        (docs/durability.md, "Files logq did not write"):

        - ``e > b``: the name lies inside the data of the segment before it. No segment logq
          wrote starts inside another, and neither a crash nor a power cut makes a
          segment's valid data longer, so this is a stray wherever it lies.
        - ``e == b``: it continues the log; recovery judges its bytes.
        - ``e < b``, a gap. When ``e`` is at or above the recovery point, nothing below ``e``
          was lost and nothing from ``e`` on was ever known durable: the log ends at ``e``
          (what a power cut may leave when fsync is off, and what stray files past the end
          look like), and this file and every later one are set aside, kept for the user,
          so no hole is left below the log end. Below the recovery point durable data is
          missing: that is damage (``screen_damage``), every file is kept, and reads stop
          at the break until an explicit repair.

        When the segment before cannot be walked (damage or a torn tail), the file is kept
        and left to recovery.
        """
        kept: list[int] = []
        ends: dict[int, int | None] = {before[0]: before[1]} if before else {}
        for i, base in enumerate(bases):
            prev = kept[-1] if kept else (before[0] if before else None)
            if prev is None:
                kept.append(base)
                continue
            if prev not in ends:
                ends[prev] = self._end_of(prev)
            end = ends[prev]
            if end is None or end == base:
                kept.append(base)
            elif end > base:
                self._set_aside(
                    base, f"{self._looks(base)}; its name lies inside segment {prev}, which holds offsets up to {end}"
                )
            elif end < self.state.recovery_point:
                # Durable data is missing before it: damage, kept and reported, never cut here.
                kept.append(base)
                self.screen_damage = self.screen_damage or CorruptRecordError(
                    f"segment {prev} ends at offset {end}, the next file starts at {base}, "
                    f"below the recovery point {self.state.recovery_point}",
                    path=os.path.join(self.directory, segment_name(prev) + LOG_SUFFIX),
                )
            else:
                gap = f"the segment before ends at offset {end} (not known durable: recovery point {self.state.recovery_point})"
                for later in bases[i:]:
                    after = "" if later == base else f"; it follows {segment_name(base)}{LOG_SUFFIX}"
                    self._set_aside(later, f"{self._looks(later)}; {gap}{after}")
                break
        return kept

    def _looks(self, base: int) -> str:
        size, first_base = _first_batch_base(os.path.join(self.directory, segment_name(base) + LOG_SUFFIX))
        if size == 0:
            return "empty"
        if first_base is None:
            return f"{size} bytes, no RecordBatch at its start"
        return f"{size} bytes, its first batch has offset {first_base}"

    def _end_of(self, base: int) -> int | None:
        """Next offset after the last batch of the sealed segment at ``base`` (walking its
        headers from the last index entry, else from the start); None if the walk fails."""
        seg = self.segments.make(base)
        try:
            seg.size = seg.file_size()
            starts = [0]
            try:
                seg.index.load()
                if seg.index.entries:
                    starts.insert(0, seg.index.last_position())
            except CorruptIndexError:
                pass
            for start in starts:
                try:
                    pos, end = start, (base if start == 0 else None)
                    for p, h in seg.headers_from(start):
                        pos, end = p + h.size, h.next_offset
                    if pos == seg.size and end is not None:
                        return end
                except CorruptRecordError:
                    continue
            return None
        except OSError:
            return None
        finally:
            seg.close_files()

    def _set_aside(self, base: int, reason: str) -> None:
        name = segment_name(base) + LOG_SUFFIX
        self.report.stray_segments.append(f"{name}: {reason}")
        if not self.may_write():
            return
        log_path = os.path.join(self.directory, name)
        aside = _free_name(log_path)
        for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX):
            path = os.path.join(self.directory, segment_name(base) + suffix)
            try:
                # Never over an earlier stray of the same name: that one is the user's too.
                os.rename(path, _free_name(path) if suffix != LOG_SUFFIX else aside)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise storage_error("rename", path, e) from None
        _fs.fsync_dir(self.directory)
        self.report.notes.append(f"set aside {name} as {os.path.basename(aside)}: {reason}")

    # ------------------------------------------------------------------ indexes on first use
    def ensure_indexes(self, seg: Segment) -> None:
        """Load a segment's indexes on first use; rebuild them if they fail their checks."""
        if seg.indexes_loaded:
            if seg is self._stale_indexes:
                self._stale_indexes = None
                seg.index.reload_if_changed()
                seg.timeindex.reload_if_changed()
            return
        try:
            seg.load_indexes()
            seg.index.check(seg.size)
            seg.timeindex.check(self.segments.next_base(seg))
            seg.verify_indexes()
        except CorruptIndexError as e:
            self.rebuild_indexes(seg, reason=str(e))

    def rebuild_indexes(self, seg: Segment, reason: str) -> None:
        """An index failed its checks on first use: rebuild it from the log."""
        res = seg.scan(0, seg.base_offset, rebuild=True)
        if seg.sealed:
            seg.timeindex.maybe_append(seg.max_timestamp, seg.offset_of_max_timestamp, final=True)
        seg.indexes_loaded = True
        if self.may_write():
            seg.write_indexes()
        self.report.indexes_rebuilt += 1
        self.report.notes.append(f"index of segment {seg.base_offset} rebuilt: {reason}")
        if res.error is not None and seg.sealed:
            self.report.notes.append(f"segment {seg.base_offset} has damage at byte {res.valid_bytes}")

    # ------------------------------------------------------------------ other processes
    def catch_up(self, force: bool = False) -> CorruptRecordError | None:
        """Adopt other processes' changes: a moved log start, new batches, new segments.
        Returns damage found below the durable point in the new tail, else None."""
        if force or self.state.changed_on_disk():
            self._adopt_state()
        segs = self.segments
        if not segs:
            bases = self.screen(list_segment_files(self.directory)[0])
            if not bases:
                return None
            self._build(bases)
            return self._load_last()
        last = segs.active
        err = None
        if last.file_size() != last.size:
            res = last.scan(last.size, last.next_offset, track=True)
            if res.error is None or self.readonly:
                last.size, last.next_offset = res.valid_bytes, res.next_offset
            else:
                err = self._settle_tail(last, res)
            if last.indexes_loaded:
                if self.readonly:
                    self._stale_indexes = last  # two stats fewer per read that brings new data
                else:  # a writer appends entries by the interval rule: it needs the others' now
                    last.index.reload_if_changed()
                    last.timeindex.reload_if_changed()
            if self.readonly and res.error is None and res.batches:
                return err  # a reader sees a roll on a later call (one stat less); writers must look now
        # os.access, not os.path.exists: no exception object built when the file is absent
        # (the usual answer, on every append and every empty read).
        if os.access(os.path.join(self.directory, segment_name(last.next_offset) + LOG_SUFFIX), os.F_OK):
            err = self._adopt_new_segments() or err
        return err

    def _adopt_state(self) -> None:
        st, segs = self.state, self.segments
        stored = self._read_state()
        st.advance_recovery_point(stored.recovery_point)
        start = stored.log_start_offset
        if start <= st.log_start_offset:
            return
        st.log_start_offset = start
        n = 0
        # Also drop segments whose file is gone: retention elsewhere may have removed
        # every segment we know (oldest first), even our last one.
        while n < len(segs) and (
            (n + 1 < len(segs) and segs[n + 1].base_offset <= start) or not os.path.exists(segs[n].log_path)
        ):
            n += 1
        for seg in segs.drop_front(n):
            seg.close_files()

    def _adopt_new_segments(self) -> CorruptRecordError | None:
        bases, _, _ = list_segment_files(self.directory)
        old_last = self.segments.active
        newer = [b for b in bases if b > old_last.base_offset]
        newer = self.screen(newer, (old_last.base_offset, old_last.next_offset))
        if not newer:
            return None
        old_last.close_files()
        old_last.sealed = True
        old_last.size = _sealed_size(old_last.log_path, old_last.size)
        old_last.indexes_loaded = False
        old_last.next_offset = newer[0]
        for i, base in enumerate(newer[:-1]):
            self.segments.append(self._sealed(base, newer[i + 1]))
        self.segments.append(self.segments.make(newer[-1]))
        return self._load_last()


def _first_batch_base(path: str) -> tuple[int, int | None]:
    """(file size, baseOffset of its first batch if it starts like a v2 RecordBatch)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0, None
    except OSError as e:  # EMFILE, EACCES: a logq error naming the file
        raise storage_error("open", path, e) from None
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, BATCH_OVERHEAD, 0)
    finally:
        os.close(fd)
    if len(head) < BATCH_OVERHEAD:
        return size, None
    h = read_header(head)
    if h.magic != 2 or h.batch_length < BATCH_OVERHEAD - 12:
        return size, None
    return size, h.base_offset


def _free_name(path: str) -> str:
    """``<path>.stray``, or ``<path>.<n>.stray`` with the first n not taken."""
    candidate, n = path + QUARANTINE_SUFFIX, 0
    while os.path.lexists(candidate):
        n += 1
        candidate = f"{path}.{n}{QUARANTINE_SUFFIX}"
    return candidate


def _sealed_size(path: str, default: int) -> int:
    """A sealed segment's size; ``default`` if retention unlinked it after the listing (a
    reader's race: it is below the new log start, and reading it makes the reader catch up)."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return default
