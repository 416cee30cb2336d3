"""``.index`` and ``.timeindex`` files for ``logq dump``: their entries and, with
``--verify-index``, each entry checked against the segment's ``.log``.

Index checks walk the log forward in step with the index (:class:`LogCursor`) instead of
loading it, so memory stays bounded; a question about an earlier place (a broken index)
restarts the walk.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

from logq.cli.dump_format import format_text
from logq.cli.dump_scan import (
    DumpOptions,
    Event,
    ScannedBatch,
    Tail,
    open_file,
    pread_file,
    problem,
    scan_log,
    segment_base_offset,
    stat_size,
)
from logq.storage.index import OFFSET_ENTRY, TIME_ENTRY
from logq.storage.segment import LOG_SUFFIX

__all__ = ["LogCursor", "IndexKind", "OFFSET_INDEX", "TIME_INDEX", "dump_index"]


class LogCursor:
    """Walks a log's batches forward to answer index checks in one pass.

    Index entries arrive in increasing order when the index is sound, so each question
    is answered by moving forward; a question about an earlier place (a broken index)
    restarts the walk from the top.
    """

    def __init__(self, log_path: str, opts: DumpOptions) -> None:
        self._path = log_path
        self._opts = DumpOptions(max_batch_bytes=opts.max_batch_bytes, read_chunk_bytes=opts.read_chunk_bytes)
        self._it: Generator[ScannedBatch | Tail, None, None] | None = None
        self._cur: ScannedBatch | None = None
        self._last_key = -1
        self.valid_end = 0  # bytes of the log known to hold whole batches

    def _restart(self) -> None:
        self.close()
        self._it = scan_log(self._path, self._opts)
        self._cur = None
        self._step()

    def _step(self) -> None:
        assert self._it is not None
        item = next(self._it, None)
        self._cur = item if isinstance(item, ScannedBatch) else None
        if self._cur is not None:
            self.valid_end = max(self.valid_end, self._cur.end)

    def _seek(self, key: int, before: Callable[[ScannedBatch], bool]) -> ScannedBatch | None:
        if self._it is None or key < self._last_key:
            self._restart()
        self._last_key = key
        while self._cur is not None and before(self._cur):
            self._step()
        return self._cur

    def batch_at_position(self, position: int) -> ScannedBatch | None:
        """The batch covering byte ``position``; None past the last whole batch."""
        return self._seek(position, lambda b: b.end <= position)

    def batch_with_offset(self, offset: int) -> ScannedBatch | None:
        """The batch whose offsets include ``offset``; None if no batch does."""
        b = self._seek(offset, lambda b: b.header.last_offset < offset)
        return b if b is not None and b.header.base_offset <= offset else None

    def close(self) -> None:
        if self._it is not None:
            self._it.close()
            self._it = None


def index_slots(path: str, entry: struct.Struct, opts: DumpOptions) -> Iterator[tuple[int, tuple[int, int]]]:
    """(entry number, fields) up to the first all-zero slot after the first entry."""
    fd, size = open_file(path)
    try:
        n = size // entry.size
        per_read = max(1, opts.read_chunk_bytes // entry.size)
        for first in range(0, n, per_read):
            count = min(per_read, n - first)
            data = pread_file(fd, count * entry.size, first * entry.size, path)
            count = len(data) // entry.size  # the file may have shrunk
            for k, fields in enumerate(entry.iter_unpack(data[: count * entry.size])):
                i = first + k
                if i > 0 and fields == (0, 0):
                    return  # a preallocated, never written tail
                yield i, fields
            if opts.progress is not None:
                opts.progress(path, (first + count) * entry.size, size)
            if count < per_read and first + count < n:
                return
    finally:
        os.close(fd)


def offset_checks(cursor: LogCursor, ev: Event, prev: Event | None, base: int) -> list[str]:
    offset, position = ev["offset"], ev["position"]
    found: list[str] = []
    if offset < base:
        found.append(f"offset {offset} is below the segment base offset {base}")
    if prev is not None and offset <= prev["offset"]:
        found.append(f"offset {offset} is not greater than the previous entry's {prev['offset']}")
    b = cursor.batch_at_position(position) if position >= 0 else None
    if b is None:
        found.append(f"position {position} is not inside the log's {cursor.valid_end} valid bytes")
    elif b.position != position:
        found.append(
            f"position {position} is inside the batch at position {b.position} "
            f"(offsets {b.header.base_offset}-{b.header.last_offset}), not at a batch start"
        )
    elif b.header.last_offset != offset:
        found.append(f"the batch at position {position} has lastOffset {b.header.last_offset}")
    return found


def time_checks(cursor: LogCursor, ev: Event, prev: Event | None, base: int) -> list[str]:
    timestamp, offset = ev["timestamp"], ev["offset"]
    found: list[str] = []
    if prev is not None and timestamp <= prev["timestamp"]:
        found.append(f"timestamp {timestamp} is not greater than the previous entry's {prev['timestamp']}")
    if prev is not None and offset < prev["offset"]:
        found.append(f"offset {offset} is smaller than the previous entry's {prev['offset']}")
    b = cursor.batch_with_offset(offset)
    if b is None:
        found.append(f"offset {offset} is not in any batch of the log")
    elif b.header.max_timestamp != timestamp:
        found.append(
            f"the batch holding offset {offset} (position {b.position}) has maxTimestamp {b.header.max_timestamp}"
        )
    return found


@dataclass(frozen=True)
class IndexKind:
    kind: str  # the "file" event's kind
    entry: struct.Struct
    to_event: Callable[[int, tuple[int, int]], Event]  # (base offset, unpacked entry)
    label: str
    problem: str
    checks: Callable[[LogCursor, Event, Event | None, int], list[str]]


OFFSET_INDEX = IndexKind(
    "index",
    OFFSET_ENTRY,
    lambda base, f: {"type": "index_entry", "offset": base + f[0], "position": f[1]},
    "Index mismatch",
    "index_mismatch",
    offset_checks,
)
TIME_INDEX = IndexKind(
    "timeindex",
    TIME_ENTRY,
    lambda base, f: {"type": "time_index_entry", "timestamp": f[0], "offset": base + f[1]},
    "Time index mismatch",
    "time_index_mismatch",
    time_checks,
)


def dump_index(path: str, opts: DumpOptions, kind: IndexKind) -> Iterator[Event]:
    base = segment_base_offset(path)
    name = os.path.basename(path)
    yield {"type": "file", "path": path, "kind": kind.kind}
    cursor: LogCursor | None = None
    log_path = os.path.splitext(path)[0] + LOG_SUFFIX
    if opts.verify_index:
        if os.path.isfile(log_path):
            cursor = LogCursor(log_path, opts)
        else:
            yield problem("missing_log", path, f"Cannot verify {name}: {log_path} does not exist")
    entries = problems = 0
    prev: Event | None = None
    try:
        for i, fields in index_slots(path, kind.entry, opts):
            ev = kind.to_event(base, fields)
            entries += 1
            yield ev
            if cursor is None:
                continue
            where = f"{kind.label} in {name} entry {i} ({format_text(ev)}): "
            facts = {k: v for k, v in ev.items() if k != "type"}
            for msg in kind.checks(cursor, ev, prev, base):
                problems += 1
                yield problem(kind.problem, path, where + msg, entry=i, **facts)
            prev = ev
    finally:
        if cursor is not None:
            cursor.close()
    size = stat_size(path)
    if size % kind.entry.size:
        yield problem(
            "index_size",
            path,
            f"{name} is {size} bytes, not a multiple of the {kind.entry.size}-byte entry size: "
            f"the last {size % kind.entry.size} bytes are not an entry",
        )
    if cursor is not None:
        yield {"type": "verify_summary", "path": path, "log": log_path, "entries": entries, "problems": problems}
