"""Shared helpers for the storage-core tests (index, log, stateful model, corruption).

The oracles here parse the segment files on their own (with the codec only) instead of going
through logq.segment / logq.log, so that a test compares the library against an independent
reading of the bytes on disk.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from logq.codec.batch import BATCH_OVERHEAD, BatchHeader, decode_records, validate_batch
from logq.codec.batch import BatchRecord as Record
from logq.config import LogConfig
from logq.storage import meta as _meta
from logq.storage.log import STATE_FILE, PartitionLog

T0 = 1_700_000_000_000  # a plausible millisecond timestamp (2023-11-14)

RecordIn = tuple[bytes | None, bytes | None, tuple[tuple[str, bytes | None], ...], int]


def config(**overrides: object) -> LogConfig:
    """A LogConfig for tests: nothing expires by time unless a test asks for it."""
    base: dict[str, object] = {"retention_ms": -1}
    base.update(overrides)
    return LogConfig(**base)  # type: ignore[arg-type]


def open_log(path: os.PathLike | str, **overrides: object) -> PartitionLog:
    return PartitionLog(str(path), config(**overrides))


def rec(i: int, ts: int | None = None, size: int = 10) -> RecordIn:
    """A recognisable record: key b"k<i>", a value of ``size`` bytes, one header."""
    value = (b"v%d-" % i + b"x" * size)[:size] if size else b""
    return (b"k%d" % i, value, (("h", b"%d" % i),), T0 + i if ts is None else ts)


def as_records(first_offset: int, inputs: Sequence[RecordIn]) -> list[Record]:
    """What reading back ``inputs`` appended at ``first_offset`` must give."""
    return [
        Record(first_offset + i, ts, key, value, tuple(headers)) for i, (key, value, headers, ts) in enumerate(inputs)
    ]


def read_all(log: PartitionLog, start: int | None = None, max_bytes: int = 1 << 20) -> list[Record]:
    """Every record from ``start`` (default: log start) to the log end, fetch by fetch."""
    offset = log.log_start_offset if start is None else start
    end = log.log_end_offset
    out: list[Record] = []
    while offset < end:
        res = log.read(offset, max_bytes)
        recs = res.records()
        assert res.next_offset > offset, f"read({offset}) made no progress below the log end {end}"
        out.extend(recs)
        offset = res.next_offset
    return out


# --------------------------------------------------------------------------- crash emulation


def crash(log: PartitionLog) -> None:
    """Abandon ``log`` the way a killed process would: no close(), no state written.

    The kernel would close every descriptor and drop the flocks; nothing else happens. The
    background flusher thread is waited for first (a dead process has none running), and the
    object is marked closed so that thread can never write after the "crash".
    """
    t = log._flusher
    if t is not None:
        t.join(30)
    with log._mutex:
        log._closed = True
        log._release_locks()
        for seg in log.segments:
            seg.close_files()


def write_state(path: os.PathLike | str, **fields: object) -> None:
    """Overwrite a partition's logq.state (e.g. to pretend a crash after a reboot)."""
    p = os.path.join(str(path), STATE_FILE)
    got = _meta.read_meta(p).value or {}
    got.update(fields)
    _meta.write_meta(p, got, sync=False)


def read_state(path: os.PathLike | str) -> dict:
    return _meta.read_meta(os.path.join(str(path), STATE_FILE)).value or {}


def force_full_recovery(path: os.PathLike | str) -> None:
    """Make the next open recover every segment: unclean, another boot, recovery point 0."""
    write_state(path, clean=False, boot_id="another-boot", recovery_point=0)


# --------------------------------------------------------------------------- files


def seg_name(base: int, ext: str = ".log") -> str:
    return f"{base:020d}{ext}"


def seg_path(path: os.PathLike | str, base: int, ext: str = ".log") -> str:
    return os.path.join(str(path), seg_name(base, ext))


def log_bases(path: os.PathLike | str) -> list[int]:
    return sorted(int(n[:20]) for n in os.listdir(str(path)) if n.endswith(".log") and len(n) == 24)


def file_bytes(p: str) -> bytes:
    try:
        with open(p, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def index_files(path: os.PathLike | str) -> dict[str, bytes]:
    """Contents of every .index / .timeindex file (missing = absent from the dict)."""
    out = {}
    for n in sorted(os.listdir(str(path))):
        if n.endswith((".index", ".timeindex")):
            out[n] = file_bytes(os.path.join(str(path), n))
    return out


# --------------------------------------------------------------------------- oracle


@dataclass
class Batch:
    position: int
    header: BatchHeader
    records: list[Record]


def parse_segment(data: bytes) -> tuple[list[Batch], int]:
    """Valid batches from the start of a .log file's bytes, and where they stop."""
    out: list[Batch] = []
    pos = 0
    expected: int | None = None
    while pos < len(data):
        try:
            h = validate_batch(data, pos, expected_offset=expected)
        except Exception:
            break
        out.append(Batch(pos, h, decode_records(data, h, pos)))
        expected = h.next_offset
        pos += h.size
    return out, pos


def scan_dir(path: os.PathLike | str) -> dict[int, list[Batch]]:
    """Every segment's valid batches, by base offset."""
    return {b: parse_segment(file_bytes(seg_path(path, b)))[0] for b in log_bases(path)}


def records_on_disk(path: os.PathLike | str, start: int = 0) -> list[Record]:
    out = []
    for batches in scan_dir(path).values():
        for b in batches:
            out.extend(r for r in b.records if r.offset >= start)
    return out


def expected_offset_index(batches: Iterable[Batch], base: int, interval: int) -> bytes:
    """Kafka's LogSegment.append rule, counted in bytes since the last entry."""
    out = bytearray()
    since = 0
    for b in batches:
        if since > interval:
            out += struct.pack(">ii", b.header.last_offset - base, b.position)
            since = 0
        since += b.header.size
    return bytes(out)


def expected_time_index(batches: Sequence[Batch], base: int, interval: int, final: bool) -> bytes:
    """Time entries written with the offset entries (strictly increasing), plus the final one."""
    out = bytearray()
    since = 0
    max_ts, max_off = -1, base
    last_written = -1  # Kafka: an empty time index reads as (-1, base)

    def maybe(ts: int, off: int) -> None:
        nonlocal last_written
        if ts > last_written:
            out.extend(struct.pack(">qi", ts, off - base))
            last_written = ts

    for b in batches:
        if b.header.max_timestamp > max_ts:
            max_ts, max_off = b.header.max_timestamp, b.header.last_offset
        if since > interval:
            maybe(max_ts, max_off)
            since = 0
        since += b.header.size
    if final and batches:
        maybe(max_ts, max_off)
    return bytes(out)


def brute_offset_for_timestamp(records: Sequence[Record], ts: int) -> int | None:
    """Kafka's answer, by brute force: the first offset whose timestamp is >= ts."""
    return next((r.offset for r in records if r.timestamp >= ts), None)


def batch_positions(path: os.PathLike | str, base: int) -> list[tuple[int, BatchHeader]]:
    return [(b.position, b.header) for b in parse_segment(file_bytes(seg_path(path, base)))[0]]


MIN_BATCH = BATCH_OVERHEAD


def skip_fsync(monkeypatch) -> None:
    """Make fsync/fdatasync free for tests that emulate *process* crashes only.

    After a process crash the page cache keeps every completed write, so fsync changes
    nothing these tests can observe; it only costs milliseconds per call. The fsync calls
    themselves are checked in test_log.py.
    """
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    monkeypatch.setattr(os, "fdatasync", lambda fd: None)
