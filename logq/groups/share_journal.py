"""The durable state of one share-partition: an append-only journal of CRC-framed changes.

File ``<data>/__logq/share_groups/<group>/<topic>-<partition>.journal``, written only with the
share-partition's flock held (logq/groups/share_store.py)::

    magic        8 bytes  b"LQSHARE1"
    frame*       length u32 LE | crc32c(payload) u32 LE | payload (length bytes)

    payload      UTF-8 JSON {"s": spso, "e": end, "f": 0|1, "r": [run, ...], "t": totals}
    run          [first, last, state, delivery_count, member, lock_deadline_ms,
                  available_at_ms, expire_at_ms, archive_reason]   (share_state.to_runs)
    state        0 available, 1 acquired, 2 acknowledged, 4 archived (Kafka's numbers), and
                 5 archiving (logq's own: an archive journaled as intended before its dead
                 letter is written; the next operation writes the letter again and archives).
                 Journals written before state 5 existed never hold it and read unchanged;
                 a journal holding it is refused by older logq versions (a frame that breaks
                 the rules), never misread.

``totals`` are the share-partition's running counts ({"deliveries", "acknowledged",
"rejected", "delivery_limit", "expired"}: int), whole in every frame. The first frame is a full snapshot (``"f": 1``: every in-flight entry); each later frame
sets the window bounds and the entries its change wrote (entries below the new start are
dropped). Replaying the frames in order gives the state.

Durability rule: a frame is written with ``pwrite`` into the page cache (it survives kill -9 of
any process at once) and is fdatasynced only when a member commits: acquisitions, renewals and
lock expiries are never synced on their own (a power cut may forget them; a record then comes
back available with a lower delivery count, which Kafka also allows); ``commit()`` fdatasyncs
the journal, which makes every earlier frame of the file durable, acknowledgements included.
An archive with a dead letter is the exception: its ARCHIVING frame is fdatasynced before the
letter is written (share_store.py), so no crash, power cuts included, keeps a letter whose
record could be delivered again.
Compaction writes a new file holding one snapshot frame (tmp -> fsync -> rename -> fsync of the
directory), so replacing the journal never loses a committed frame.

Damage: a frame cut short, or failing its CRC, *at the end* of the file is a torn tail (a writer
died mid-write, or a power cut dropped unsynced pages): the next writer truncates it and logs a
warning. So is damage with more data after it when it lies after the last durable point (a
power cut may drop any unsynced page, not only the last): the lock file remembers "<inode>
<position>" after each fdatasync and compaction (not synced itself, so after a power cut it
may be older than the truth, never newer). Damage before that point, a bad magic or an
unparsable payload behind a good CRC raises ShareStateCorruptError naming the file and byte:
the state is never silently started over.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crc32c import crc32c

from logq.errors import ShareStateCorruptError, storage_error
from logq.groups.share_state import SharePartitionState
from logq.storage import files as fs

log = logging.getLogger("logq.share")

MAGIC = b"LQSHARE1"
FRAME = struct.Struct("<II")
MAX_FRAME_BYTES = 64 << 20
COMPACT_MIN_BYTES = 256 << 10
Marks = tuple[Callable[[], bytes], Callable[[bytes], None]]


def encode_frame(state: SharePartitionState, offsets: set[int] | None) -> bytes:
    """A frame of ``state``: full when ``offsets`` is None, else the entries of ``offsets``."""
    body = {"s": state.spso, "e": state.end, "f": int(offsets is None), "r": state.runs(offsets), "t": state.totals}
    payload = json.dumps(body, separators=(",", ":")).encode()
    return FRAME.pack(len(payload), crc32c(payload)) + payload


@dataclass
class Scan:
    frames: list[dict[str, Any]]
    good_end: int  # file position after the last good frame
    torn: str | None  # why the bytes after good_end are a torn tail, None if there are none
    damaged: str | None = None  # why the bytes after good_end are damaged with data after them


def scan(data: bytes, start: int, path: str) -> Scan:
    """The frames of ``data`` (the file's bytes from position ``start``)."""
    frames: list[dict[str, Any]] = []
    i = 0
    while i < len(data):
        where = start + i
        if len(data) - i < FRAME.size:
            return Scan(frames, where, "a frame header cut short")
        n, crc = FRAME.unpack_from(data, i)
        end = i + FRAME.size + n
        if n == 0 and not data[i:].strip(b"\0"):
            return Scan(frames, where, "zero bytes at the end (unsynced pages lost)")
        if n == 0 or n > MAX_FRAME_BYTES:
            return Scan(frames, where, None, f"frame length {n} is impossible")
        if end > len(data):
            return Scan(frames, where, "a frame cut short")
        payload = data[i + FRAME.size : end]
        if crc32c(payload) != crc:
            if end == len(data):
                return Scan(frames, where, "the last frame fails its CRC")
            return Scan(frames, where, None, "a frame fails its CRC and more frames follow it")
        try:
            obj = json.loads(payload)
            if not isinstance(obj, dict) or not {"s", "e", "f", "r"} <= obj.keys():
                raise ValueError("missing fields")
        except ValueError as e:
            raise ShareStateCorruptError(path, where, f"unreadable frame: {e}") from None
        frames.append(obj)
        i = end
    return Scan(frames, start + i, None)


def apply_frames(state: SharePartitionState | None, frames: list[dict[str, Any]], path: str) -> SharePartitionState:
    for fr in frames:
        try:
            if fr["f"]:
                state = state or SharePartitionState(fr["s"])
                state.apply_runs(fr["s"], fr["e"], fr["r"], full=True, totals=fr.get("t"))
            elif state is None:
                raise ValueError("the journal does not start with a snapshot")
            else:
                state.apply_runs(fr["s"], fr["e"], fr["r"], full=False, totals=fr.get("t"))
        except (AssertionError, ValueError, TypeError, KeyError) as e:
            raise ShareStateCorruptError(path, -1, f"a frame breaks the share-partition rules: {e!r}") from None
    if state is None:
        raise ShareStateCorruptError(path, len(MAGIC), "no snapshot frame")
    return state


class Journal:
    """The open journal of one share-partition, as this process last read it.

    Every method is called with the share-partition's flock held. ``catch_up`` reads what other
    processes appended (or reloads everything when the file was replaced by a compaction)."""

    def __init__(self, path: str, marks: Marks | None = None) -> None:
        """``marks``: (read, write) of a small place outside the journal (the lock file) that
        remembers how far the journal was made durable (see :meth:`_durable_end`)."""
        self.path = path
        self.marks = marks
        self.fd: int | None = None
        self.ino = -1
        self.pos = 0
        self.snapshot_bytes = 0
        self.state: SharePartitionState | None = None

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def create(self, state: SharePartitionState) -> None:
        """Write a new journal holding a snapshot of ``state`` (durably), and open it."""
        self.replace(state)

    def catch_up(self) -> SharePartitionState:
        # A compaction renames a new file over the journal: its inode differs from the one this
        # process holds open (an inode cannot be reused while a descriptor keeps it alive).
        try:
            st = os.stat(self.path)
        except OSError as e:
            raise storage_error("stat", self.path, e) from None
        if self.fd is None or st.st_ino != self.ino or st.st_size < self.pos or self.state is None:
            self._reopen(st.st_ino)
        elif st.st_size > self.pos:
            self._read_on(st.st_size)
        assert self.state is not None
        return self.state

    def _reopen(self, ino: int) -> None:
        self.close()
        self.fd = fs.open_file(self.path, os.O_RDWR)
        self.ino = os.fstat(self.fd).st_ino if ino < 0 else ino
        head = os.pread(self.fd, len(MAGIC), 0)
        if head != MAGIC:
            self.close()
            raise ShareStateCorruptError(self.path, 0, f"bad magic {head!r}")
        self.pos = len(MAGIC)
        self.state = None
        self._read_on(os.fstat(self.fd).st_size)
        self.snapshot_bytes = self.pos

    def _read_on(self, size: int) -> None:
        assert self.fd is not None
        data = fs.pread_exact(self.fd, size - self.pos, self.pos)
        got = scan(data, self.pos, self.path)
        if got.damaged is not None:
            if got.good_end < self._durable_end():
                self.state = None
                raise ShareStateCorruptError(self.path, got.good_end, got.damaged)
            # after the last fdatasync: a power cut may lose any of those pages, not only the
            # last ones; what follows was never durable either
            got.torn = f"{got.damaged} after the last durable point"
        try:
            self.state = apply_frames(self.state, got.frames, self.path)
        except ShareStateCorruptError:
            self.state = None
            raise
        self.pos = got.good_end
        if got.torn is not None:
            log.warning("%s: %s at byte %d; truncating the torn tail", self.path, got.torn, got.good_end)
            try:
                os.ftruncate(self.fd, got.good_end)
            except OSError as e:
                raise storage_error("truncate", self.path, e) from None

    def append(self, state: SharePartitionState, touched: set[int]) -> None:
        assert self.fd is not None
        frame = encode_frame(state, touched)
        fs.crash_point("share.append")
        fs.pwrite_all(self.fd, frame, self.pos, self.path)
        self.pos += len(frame)
        if self.pos > max(COMPACT_MIN_BYTES, 8 * self.snapshot_bytes):
            self.replace(state)

    def sync(self) -> None:
        """fdatasync the journal. A failure is never retried (the PostgreSQL rule): the cached
        state is dropped, so the next operation re-reads what is really on disk."""
        assert self.fd is not None
        try:
            os.fdatasync(self.fd)
        except OSError as e:
            self.close()
            self.forget()
            raise storage_error("fdatasync", self.path, e) from None
        self._mark_durable(self.pos)

    def _mark_durable(self, pos: int) -> None:
        if self.marks is not None:
            self.marks[1](f"{self.ino} {pos}".encode("ascii"))

    def _durable_end(self) -> int:
        """How far this journal file is known durable: the mark written after the last
        fdatasync or compaction of this inode. The mark itself is not synced, so after a power
        cut it may be older (smaller) than the truth, never newer; without one, the whole file
        counts as durable (damage anywhere is reported)."""
        if self.marks is None:
            return 1 << 62
        fields = self.marks[0]().split()
        if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit() and int(fields[0]) == self.ino:
            return int(fields[1])
        return 1 << 62

    def replace(self, state: SharePartitionState) -> None:
        """Compaction: a new file with one snapshot frame replaces the journal, durably."""
        data = MAGIC + encode_frame(state, None)
        tmp = fs.write_tmp(self.path, data)
        fs.crash_point("share.compact.written")
        try:
            os.replace(tmp, self.path)
        except OSError as e:
            raise storage_error("rename", self.path, e) from None
        fs.crash_point("share.compact.renamed")
        fs.fsync_dir(os.path.dirname(self.path))
        self.close()
        self.fd = fs.open_file(self.path, os.O_RDWR)
        self.ino = os.fstat(self.fd).st_ino
        self.pos = self.snapshot_bytes = len(data)
        self.state = state
        self._mark_durable(self.pos)

    def forget(self) -> None:
        """Drop the cached state (after a failed change): the next catch_up reloads the file."""
        self.state = None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.ino = -1
