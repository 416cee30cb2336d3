"""``logq dump``: a kafka-dump-log style report of segment files, streamed.

The report is a stream of *events* (plain dicts with a ``"type"`` key) built from the files
alone, without opening a log: a damaged partition can always be inspected. Each event
renders as one text line in Kafka's naming style (:func:`format_text`) or as one JSON
object (:func:`format_json`). Event types::

    file              Dumping <path>            (+ "Log starting offset: <base>" for a .log)
    batch             baseOffset: 0 lastOffset: 1 count: 2 ... crc: 3456012763 isvalid: true
    record            | offset: 0 CreateTime: 1700000000000 keySize: -1 valueSize: 1 ...
    invalid_bytes     Found 40 invalid bytes at the end of 00000000000000000000.log (...)
    index_entry       offset: 1005 position: 4150
    time_index_entry  timestamp: 1700000000005 offset: 1005
    problem           Index mismatch in 00000000000000000000.index entry 3 (...): ...
    verify_summary    Verified 12 entries of <index> against <log>: 0 problems

Memory stays bounded however large the file: a ``.log`` is read with ``os.pread`` through
one window of ``read_chunk_bytes`` (grown only to hold a single batch whose bytes are all in the
file, itself capped by ``max_batch_bytes``), index files a chunk of whole entries at a time, and index checks walk
the log forward in step with the index instead of loading it.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from crc32c import crc32c

from logq.codec.batch import (
    ATTR_DELETE_HORIZON,
    BATCH_OVERHEAD,
    CRC_OFFSET,
    CRC_START,
    LOG_OVERHEAD,
    BatchHeader,
    BatchRecord,
    decode_records,
    peek_batch_size,
    read_header,
    validate_batch,
)
from logq.errors import CorruptRecordError, DumpArgumentError, storage_error
from logq.storage import files as _fs
from logq.storage.index import OFFSET_ENTRY, TIME_ENTRY
from logq.storage.segment import INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX

__all__ = [
    "DumpOptions",
    "DumpArgumentError",
    "Event",
    "READ_CHUNK_BYTES",
    "DEFAULT_MAX_BATCH_BYTES",
    "resolve_targets",
    "segment_base_offset",
    "dump_events",
    "run_dump",
    "is_failure",
    "format_text",
    "format_json",
]

Event = dict[str, Any]
ProgressFn = Callable[[str, int, int], None]  # (path, bytes done, file size)

READ_CHUNK_BYTES = 1 << 20  # one pread of a .log or index file (the window size)
# A batch claiming more is treated as corruption. The default is the largest max_batch_bytes a
# topic may be configured with, so dump never calls a batch that storage accepted invalid; a
# claim larger than the bytes left in the file is a torn tail and is never read.
DEFAULT_MAX_BATCH_BYTES = (1 << 31) - 1
SUFFIXES = (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX)  # also the order within a segment
INT32_MAX = (1 << 31) - 1
NO_SEQUENCE = -1

_CONTROL_TYPES = {0: "ABORT", 1: "COMMIT"}


@dataclass(frozen=True)
class DumpOptions:
    deep: bool = False  # one line per record
    print_data: bool = False  # key and payload too (implies deep)
    verify_index: bool = False  # check .index/.timeindex entries against the .log
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    read_chunk_bytes: int = READ_CHUNK_BYTES
    progress: ProgressFn | None = None


# ----------------------------------------------------------------------------- paths


def segment_base_offset(path: str) -> int:
    """Base offset from a segment file name (``00000000000000001000.log`` -> 1000).

    A name that is not a number (a copied file, say) is taken to have base offset 0.
    """
    stem = os.path.basename(path).split(".", 1)[0]
    return int(stem) if stem.isdigit() else 0


def _suffix(path: str) -> str:
    return os.path.splitext(path)[1]


def _segment_files(directory: str) -> list[str]:
    try:
        names = os.listdir(directory)
    except OSError as e:
        raise DumpArgumentError(f"cannot list {directory}: {e.strerror or e}") from None
    files = [n for n in names if _suffix(n) in SUFFIXES and os.path.isfile(os.path.join(directory, n))]
    files.sort(key=lambda n: (segment_base_offset(n), n.split(".", 1)[0], SUFFIXES.index(_suffix(n))))
    return [os.path.join(directory, n) for n in files]


def resolve_targets(paths: Sequence[str], data_dir: str | None = None) -> list[str]:
    """Expand partition directories and check every path before anything is dumped.

    A relative path that does not exist is also looked up under ``data_dir``, so
    ``logq dump orders-0`` finds ``<data>/orders-0``.
    """
    out: list[str] = []
    for given in paths:
        path = given
        if not os.path.exists(path) and data_dir and not os.path.isabs(path):
            under = os.path.join(data_dir, path)
            if os.path.exists(under):
                path = under
        if os.path.isdir(path):
            files = _segment_files(path)
            if not files:
                raise DumpArgumentError(f"{given}: no .log, .index or .timeindex files in this directory")
            out.extend(files)
        elif os.path.isfile(path):
            if _suffix(path) not in SUFFIXES:
                raise DumpArgumentError(
                    f"{given}: cannot dump this file; give a .log, .index or .timeindex file or a partition directory"
                )
            out.append(path)
        elif os.path.exists(path):
            raise DumpArgumentError(f"{given}: not a regular file or directory")
        else:
            raise DumpArgumentError(f"{given}: no such file or directory")
    return out


def _open(path: str) -> tuple[int, int]:
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


def _pread(fd: int, n: int, pos: int, path: str) -> bytes:
    """Up to ``n`` bytes at ``pos``; shorter only at end of file."""
    try:
        return _fs.pread_exact(fd, n, pos)
    except OSError as e:
        raise storage_error("read", path, e) from None


# ----------------------------------------------------------------------------- .log scan


class _Window:
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
        self._buf = _pread(self._fd, want, pos, self._path)
        self._start = pos
        if self._progress is not None:
            self._progress(self._path, pos, self._size)
        return self._buf, 0


@dataclass
class _Batch:
    position: int
    header: BatchHeader
    crc_ok: bool
    buf: bytes  # holds the whole batch ...
    off: int  # ... starting here

    @property
    def end(self) -> int:
        return self.position + self.header.size


@dataclass
class _Tail:
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


def _scan_log(path: str, opts: DumpOptions) -> Generator[_Batch | _Tail, None, None]:
    """Every structurally complete batch from position 0, then a _Tail if bytes remain
    that do not form one (the scan stops there, as recovery would)."""
    fd, size = _open(path)
    try:
        win = _Window(fd, path, size, opts.read_chunk_bytes, opts.progress)
        pos = 0
        while pos < size:
            left = size - pos
            if left < LOG_OVERHEAD:
                yield _Tail(pos, left, f"{left} bytes are too few for a batch")
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
                    yield _Tail(pos, left, e.reason)
                    return
                h, crc_ok = bad, False
            yield _Batch(pos, h, crc_ok, buf, off)
            pos += h.size
        if opts.progress is not None:
            opts.progress(path, size, size)
    finally:
        os.close(fd)


def _sequence(base_sequence: int, delta: int) -> int:
    """Kafka's sequence arithmetic: -1 stays -1, past INT32_MAX wraps to 0."""
    if base_sequence == NO_SEQUENCE:
        return NO_SEQUENCE
    if base_sequence > INT32_MAX - delta:
        return delta - (INT32_MAX - base_sequence) - 1
    return base_sequence + delta


def _batch_event(b: _Batch) -> Event:
    h = b.header
    return {
        "type": "batch",
        "baseOffset": h.base_offset,
        "lastOffset": h.last_offset,
        "count": h.records_count,
        "baseSequence": h.base_sequence,
        "lastSequence": _sequence(h.base_sequence, h.last_offset_delta),
        "producerId": h.producer_id,
        "producerEpoch": h.producer_epoch,
        "partitionLeaderEpoch": h.partition_leader_epoch,
        "isTransactional": h.is_transactional,
        "isControl": h.is_control,
        "deleteHorizonMs": h.base_timestamp if h.attributes & ATTR_DELETE_HORIZON else -1,
        "position": b.position,
        "timestampType": h.timestamp_type,
        "maxTimestamp": h.max_timestamp,
        "size": h.size,
        "magic": h.magic,
        "compresscodec": h.compression.name.lower(),
        "crc": h.crc,
        "isvalid": b.crc_ok,
    }


def _text_of(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


def _record_event(h: BatchHeader, r: BatchRecord, print_data: bool) -> Event:
    ev: Event = {
        "type": "record",
        "offset": r.offset,
        "timestampType": h.timestamp_type,
        "timestamp": r.timestamp,
        "keySize": -1 if r.key is None else len(r.key),
        "valueSize": -1 if r.value is None else len(r.value),
        "sequence": _sequence(h.base_sequence, r.offset - h.base_offset),
        "headerKeys": [k for k, _ in r.headers],
    }
    if h.is_control and r.key is not None and len(r.key) >= 4:
        kind = int.from_bytes(r.key[2:4], "big", signed=True)
        if kind in _CONTROL_TYPES and r.value is not None and len(r.value) >= 6:
            ev["endTxnMarker"] = _CONTROL_TYPES[kind]
            ev["coordinatorEpoch"] = int.from_bytes(r.value[2:6], "big", signed=True)
        else:
            ev["controlType"] = kind
    if print_data:
        ev["key"] = _text_of(r.key)
        ev["payload"] = _text_of(r.value)
    return ev


def _problem(kind: str, path: str, message: str, **facts: Any) -> Event:
    return {"type": "problem", "kind": kind, "path": path, "message": message, **facts}


def _dump_log(path: str, opts: DumpOptions) -> Iterator[Event]:
    yield {"type": "file", "path": path, "kind": "log", "logStartOffset": segment_base_offset(path)}
    deep = opts.deep or opts.print_data
    for item in _scan_log(path, opts):
        if isinstance(item, _Tail):
            name = os.path.basename(path)
            yield {
                "type": "invalid_bytes",
                "path": path,
                "file": name,
                "count": item.count,
                "position": item.position,
                "reason": item.reason,
            }
            return
        yield _batch_event(item)
        if not deep:
            continue
        h = item.header
        try:
            records = decode_records(item.buf, h, item.off)
        except CorruptRecordError as e:
            yield _problem(
                "undecodable_batch",
                path,
                f"Cannot decode the records of the batch at position {item.position}: {e.reason}",
                position=item.position,
            )
            continue
        for r in records:
            yield _record_event(h, r, opts.print_data)


# ----------------------------------------------------------------------------- indexes


class _LogCursor:
    """Walks a log's batches forward to answer index checks in one pass.

    Index entries arrive in increasing order when the index is sound, so each question
    is answered by moving forward; a question about an earlier place (a broken index)
    restarts the walk from the top.
    """

    def __init__(self, log_path: str, opts: DumpOptions) -> None:
        self._path = log_path
        self._opts = DumpOptions(max_batch_bytes=opts.max_batch_bytes, read_chunk_bytes=opts.read_chunk_bytes)
        self._it: Generator[_Batch | _Tail, None, None] | None = None
        self._cur: _Batch | None = None
        self._last_key = -1
        self.valid_end = 0  # bytes of the log known to hold whole batches

    def _restart(self) -> None:
        self.close()
        self._it = _scan_log(self._path, self._opts)
        self._cur = None
        self._step()

    def _step(self) -> None:
        assert self._it is not None
        item = next(self._it, None)
        self._cur = item if isinstance(item, _Batch) else None
        if self._cur is not None:
            self.valid_end = max(self.valid_end, self._cur.end)

    def _seek(self, key: int, before: Callable[[_Batch], bool]) -> _Batch | None:
        if self._it is None or key < self._last_key:
            self._restart()
        self._last_key = key
        while self._cur is not None and before(self._cur):
            self._step()
        return self._cur

    def batch_at_position(self, position: int) -> _Batch | None:
        """The batch covering byte ``position``; None past the last whole batch."""
        return self._seek(position, lambda b: b.end <= position)

    def batch_with_offset(self, offset: int) -> _Batch | None:
        """The batch whose offsets include ``offset``; None if no batch does."""
        b = self._seek(offset, lambda b: b.header.last_offset < offset)
        return b if b is not None and b.header.base_offset <= offset else None

    def close(self) -> None:
        if self._it is not None:
            self._it.close()
            self._it = None


def _index_slots(path: str, entry: struct.Struct, opts: DumpOptions) -> Iterator[tuple[int, tuple[int, int]]]:
    """(entry number, fields) up to the first all-zero slot after the first entry."""
    fd, size = _open(path)
    try:
        n = size // entry.size
        per_read = max(1, opts.read_chunk_bytes // entry.size)
        for first in range(0, n, per_read):
            count = min(per_read, n - first)
            data = _pread(fd, count * entry.size, first * entry.size, path)
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


def _offset_checks(cursor: _LogCursor, ev: Event, prev: Event | None, base: int) -> list[str]:
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


def _time_checks(cursor: _LogCursor, ev: Event, prev: Event | None, base: int) -> list[str]:
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
class _IndexKind:
    kind: str  # the "file" event's kind
    entry: struct.Struct
    to_event: Callable[[int, tuple[int, int]], Event]  # (base offset, unpacked entry)
    label: str
    problem: str
    checks: Callable[[_LogCursor, Event, Event | None, int], list[str]]


_OFFSET_INDEX = _IndexKind(
    "index",
    OFFSET_ENTRY,
    lambda base, f: {"type": "index_entry", "offset": base + f[0], "position": f[1]},
    "Index mismatch",
    "index_mismatch",
    _offset_checks,
)
_TIME_INDEX = _IndexKind(
    "timeindex",
    TIME_ENTRY,
    lambda base, f: {"type": "time_index_entry", "timestamp": f[0], "offset": base + f[1]},
    "Time index mismatch",
    "time_index_mismatch",
    _time_checks,
)


def _dump_index(path: str, opts: DumpOptions, kind: _IndexKind) -> Iterator[Event]:
    base = segment_base_offset(path)
    name = os.path.basename(path)
    yield {"type": "file", "path": path, "kind": kind.kind}
    cursor: _LogCursor | None = None
    log_path = os.path.splitext(path)[0] + LOG_SUFFIX
    if opts.verify_index:
        if os.path.isfile(log_path):
            cursor = _LogCursor(log_path, opts)
        else:
            yield _problem("missing_log", path, f"Cannot verify {name}: {log_path} does not exist")
    entries = problems = 0
    prev: Event | None = None
    try:
        for i, fields in _index_slots(path, kind.entry, opts):
            ev = kind.to_event(base, fields)
            entries += 1
            yield ev
            if cursor is None:
                continue
            where = f"{kind.label} in {name} entry {i} ({format_text(ev)}): "
            facts = {k: v for k, v in ev.items() if k != "type"}
            for msg in kind.checks(cursor, ev, prev, base):
                problems += 1
                yield _problem(kind.problem, path, where + msg, entry=i, **facts)
            prev = ev
    finally:
        if cursor is not None:
            cursor.close()
    size = _stat_size(path)
    if size % kind.entry.size:
        yield _problem(
            "index_size",
            path,
            f"{name} is {size} bytes, not a multiple of the {kind.entry.size}-byte entry size: "
            f"the last {size % kind.entry.size} bytes are not an entry",
        )
    if cursor is not None:
        yield {"type": "verify_summary", "path": path, "log": log_path, "entries": entries, "problems": problems}


def _stat_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError as e:
        raise storage_error("stat", path, e) from None


# ----------------------------------------------------------------------------- driver

_DUMPERS: dict[str, Callable[[str, DumpOptions], Iterator[Event]]] = {
    LOG_SUFFIX: _dump_log,
    INDEX_SUFFIX: lambda path, opts: _dump_index(path, opts, _OFFSET_INDEX),
    TIME_INDEX_SUFFIX: lambda path, opts: _dump_index(path, opts, _TIME_INDEX),
}


def dump_events(paths: Sequence[str], options: DumpOptions = DumpOptions()) -> Iterator[Event]:
    """The report for already resolved files (see :func:`resolve_targets`), in order."""
    for path in paths:
        yield from _DUMPERS[_suffix(path)](path, options)


def is_failure(ev: Event) -> bool:
    """True for events that mean corruption or an index mismatch (exit status 1)."""
    return ev["type"] in ("invalid_bytes", "problem") or (ev["type"] == "batch" and not ev["isvalid"])


def run_dump(
    paths: Sequence[str],
    options: DumpOptions,
    emit: Callable[[str], None],
    *,
    as_json: bool = False,
    data_dir: str | None = None,
) -> int:
    """Resolve ``paths``, pass each report line to ``emit``; return 1 if anything was
    damaged or mismatched, else 0. Raises DumpArgumentError before any output."""
    targets = resolve_targets(paths, data_dir)
    render = format_json if as_json else format_text
    failed = False
    for ev in dump_events(targets, options):
        failed = failed or is_failure(ev)
        emit(render(ev))
    return 1 if failed else 0


# ----------------------------------------------------------------------------- rendering

# Control characters (C0, DEL, C1) are escaped so that data cannot break the one-line-per-
# record layout or send escape sequences to a terminal; backslash is escaped to stay unambiguous.
_ESCAPES: dict[int, str] = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", ord("\\"): "\\\\"})


def _printable(text: str | None) -> str:
    return "null" if text is None else text.translate(_ESCAPES)


def _v(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


_BATCH_FIELDS = (
    "baseOffset",
    "lastOffset",
    "count",
    "baseSequence",
    "lastSequence",
    "producerId",
    "producerEpoch",
    "partitionLeaderEpoch",
    "isTransactional",
    "isControl",
    "deleteHorizonMs",
    "position",
)
_BATCH_TAIL_FIELDS = ("size", "magic", "compresscodec", "crc", "isvalid")


def _format_batch(ev: Event) -> str:
    parts = [f"{k}: {_v(ev[k])}" for k in _BATCH_FIELDS]
    parts.append(f"{ev['timestampType']}: {ev['maxTimestamp']}")
    parts.extend(f"{k}: {_v(ev[k])}" for k in _BATCH_TAIL_FIELDS)
    return " ".join(parts)


def _format_record(ev: Event) -> str:
    keys = ",".join(_printable(k) for k in ev["headerKeys"])
    line = (
        f"| offset: {ev['offset']} {ev['timestampType']}: {ev['timestamp']} keySize: {ev['keySize']} "
        f"valueSize: {ev['valueSize']} sequence: {ev['sequence']} headerKeys: [{keys}]"
    )
    if "endTxnMarker" in ev:
        line += f" endTxnMarker: {ev['endTxnMarker']} coordinatorEpoch: {ev['coordinatorEpoch']}"
    elif "controlType" in ev:
        line += f" controlType: {ev['controlType']}"
    if "payload" in ev:
        line += f" key: {_printable(ev['key'])} payload: {_printable(ev['payload'])}"
    return line


_TEXT: dict[str, Callable[[Event], str]] = {
    "batch": _format_batch,
    "record": _format_record,
    "index_entry": lambda ev: f"offset: {ev['offset']} position: {ev['position']}",
    "time_index_entry": lambda ev: f"timestamp: {ev['timestamp']} offset: {ev['offset']}",
    "file": lambda ev: (
        f"Dumping {ev['path']}" + (f"\nLog starting offset: {ev['logStartOffset']}" if ev["kind"] == "log" else "")
    ),
    "invalid_bytes": lambda ev: (
        f"Found {ev['count']} invalid bytes at the end of {ev['file']} (from position {ev['position']}: {ev['reason']})"
    ),
    "problem": lambda ev: str(ev["message"]),
    "verify_summary": lambda ev: (
        f"Verified {ev['entries']} entries of {os.path.basename(ev['path'])} "
        f"against {os.path.basename(ev['log'])}: {ev['problems']} problems"
    ),
}


def format_text(ev: Event) -> str:
    """One event as kafka-dump-log style text (two lines for a .log file header)."""
    return _TEXT[ev["type"]](ev)


def format_json(ev: Event) -> str:
    """One event as one line of JSON (keys as in the text form, plus ``type``)."""
    return json.dumps(ev)
