"""The ordered segments of one partition (Kafka's LogSegments), owned in one place.

A partition is a list of segments sorted by base offset; the last one is the *active*
segment (the only one appended to and the only one recovery may shorten in place), every
earlier one is sealed. This object alone keeps the segments and their base offsets in step
(the base offsets are a parallel list so that finding the segment holding an offset is one
``bisect``), and it alone changes the list: appending a new active segment, dropping or
deleting from the front (retention, a purge, another writer's retention), cutting after a
segment (recovery), or replacing the whole list (loading a directory listing).

It also keeps the LRU of sealed segments that hold open resources (a descriptor and
loaded indexes), so a segment leaves the LRU exactly when it leaves the list, and a
``generation`` that changes whenever segments leave, so read-path caches built on positions
in them (the log's read cursors) know to start over.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Iterator

from logq.config import LogConfig
from logq.storage import files as _fs
from logq.storage.segment import Segment

__all__ = ["SegmentList"]


class SegmentList:
    def __init__(self, directory: str, config: LogConfig, *, persist_indexes: bool) -> None:
        self.directory = directory
        self.config = config
        self.persist_indexes = persist_indexes  # False for readers: they never write a file
        self._segs: list[Segment] = []
        self._bases: list[int] = []
        self._open: OrderedDict[int, Segment] = OrderedDict()
        self.generation = 0

    # ------------------------------------------------------------------ reading the list
    def __len__(self) -> int:
        return len(self._segs)

    def __bool__(self) -> bool:
        return bool(self._segs)

    def __iter__(self) -> Iterator[Segment]:
        return iter(self._segs)

    def __getitem__(self, i: int) -> Segment:
        return self._segs[i]

    def snapshot(self) -> tuple[Segment, ...]:
        """The segments as an immutable tuple (for callers that only look)."""
        return tuple(self._segs)

    @property
    def active(self) -> Segment:
        return self._segs[-1]

    def is_active(self, seg: Segment) -> bool:
        return bool(self._segs) and seg is self._segs[-1]

    def floor(self, offset: int) -> Segment:
        """The segment holding ``offset``: the last whose base offset is <= it (else the first)."""
        i = bisect.bisect_right(self._bases, offset) - 1
        return self._segs[max(i, 0)]

    def index_of(self, seg: Segment) -> int:
        return self._segs.index(seg)

    def after(self, seg: Segment) -> Segment | None:
        """The segment following ``seg``, or None if ``seg`` is the active one."""
        i = self._segs.index(seg)
        return self._segs[i + 1] if i + 1 < len(self._segs) else None

    def next_base(self, seg: Segment) -> int:
        """Where ``seg``'s offsets end: the next segment's base, or its own next offset."""
        nxt = self.after(seg)
        return nxt.base_offset if nxt is not None else seg.next_offset

    def count_below(self, offset: int) -> int:
        """How many leading segments lie wholly below ``offset`` (never the active one)."""
        n = 0
        while n + 1 < len(self._segs) and self._bases[n + 1] <= offset:
            n += 1
        return n

    # ------------------------------------------------------------------ making segments
    def make(self, base: int) -> Segment:
        """A Segment object for ``base`` (no file is touched)."""
        c = self.config
        return Segment(
            self.directory,
            base,
            index_interval_bytes=c.index_interval_bytes,
            segment_index_bytes=c.segment_index_bytes,
            max_batch_bytes=c.max_batch_bytes,
            persist_indexes=self.persist_indexes,
        )

    def create_active(self, base: int) -> Segment:
        """Create the file of a new, empty active segment at ``base`` and append it."""
        seg = self.make(base)
        seg.open(True)
        seg.indexes_loaded = True  # empty and known: catch-up then reloads other writers' entries
        _fs.crash_point("roll-after-create")
        _fs.fsync_dir(self.directory)
        self.append(seg)
        return seg

    # ------------------------------------------------------------------ changing the list
    def append(self, seg: Segment) -> None:
        assert not self._bases or seg.base_offset > self._bases[-1], (seg.base_offset, self._bases)
        self._segs.append(seg)
        self._bases.append(seg.base_offset)

    def reset(self, segs: list[Segment]) -> None:
        """Replace the whole list (a fresh directory listing); the old entries are forgotten."""
        self._forget(self._segs)
        self._segs = list(segs)
        self._bases = [s.base_offset for s in segs]

    def drop_front(self, n: int) -> list[Segment]:
        """Remove the ``n`` oldest segments from the list and return them (files untouched)."""
        gone = self._segs[:n]
        del self._segs[:n]
        del self._bases[:n]
        self._forget(gone)
        return gone

    def delete_front(self, n: int) -> None:
        """Delete the ``n`` oldest segments: files unlinked (open descriptors elsewhere stay valid)."""
        for seg in self._segs[:n]:
            seg.delete_files()
        _fs.crash_point("retention-after-unlink")
        self.drop_front(n)
        _fs.fsync_dir(self.directory)

    def cut_after(self, i: int) -> list[Segment]:
        """Remove every segment after index ``i`` from the list and return them."""
        gone = self._segs[i + 1 :]
        del self._segs[i + 1 :]
        del self._bases[i + 1 :]
        self._forget(gone)
        return gone

    def _forget(self, gone: list[Segment]) -> None:
        for seg in gone:
            self._open.pop(seg.base_offset, None)
        if gone:
            self.generation += 1

    # ------------------------------------------------------------------ open resources
    def touch(self, seg: Segment) -> None:
        """Mark a sealed segment used; close the least recently used beyond the limit."""
        if self.is_active(seg):
            return
        lru = self._open
        lru[seg.base_offset] = seg
        lru.move_to_end(seg.base_offset)
        while len(lru) > self.config.max_open_segments:
            _, old = lru.popitem(last=False)
            old.close_files()
            old.indexes_loaded = False

    def close_all(self) -> None:
        for seg in self._segs:
            seg.close_files()
