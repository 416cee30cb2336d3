"""Building, reading back and abandoning logs inside one test process.

Records with recognisable contents (:func:`rec`), what reading them back must give
(:func:`as_records`), a fetch-by-fetch reader (:func:`read_all`), a process crash emulated
without a process (:func:`crash`) and edits of the state file that pretend a reboot.
The independent reading of the files lives in ``tests.support.oracle``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from logq.codec.batch import BATCH_OVERHEAD
from logq.codec.batch import BatchRecord as Record
from logq.config import LogConfig
from logq.storage import meta
from logq.storage.log import PartitionLog

from tests.support.oracle import STATE_FILE

T0 = 1_700_000_000_000  # a plausible millisecond timestamp (2023-11-14)
MIN_BATCH = BATCH_OVERHEAD

RecordIn = tuple[bytes | None, bytes | None, tuple[tuple[str, bytes | None], ...], int]


def config(**overrides: object) -> LogConfig:
    """A LogConfig for tests: nothing expires by time unless a test asks for it."""
    base: dict[str, object] = {"retention_ms": -1}
    base.update(overrides)
    return LogConfig(**base)  # type: ignore[arg-type]


def open_log(path: os.PathLike | str, **overrides: object) -> PartitionLog:
    """A writer on ``path`` with :func:`config` (the caller closes it; the ``open_log``
    fixture of tests/conftest.py closes what it opened)."""
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
    got = meta.read_meta(p).value or {}
    got.update(fields)
    meta.write_meta(p, got, sync=False)


def force_full_recovery(path: os.PathLike | str) -> None:
    """Make the next open recover every segment: unclean, another boot, recovery point 0."""
    write_state(path, clean=False, boot_id="another-boot", recovery_point=0)


def skip_fsync(monkeypatch) -> None:
    """Make fsync/fdatasync free for tests that emulate *process* crashes only.

    After a process crash the page cache keeps every completed write, so fsync changes
    nothing these tests can observe; it only costs milliseconds per call. The fsync calls
    themselves are checked in test_log.py. (The ``no_fsync`` fixture does this.)
    """
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    monkeypatch.setattr(os, "fdatasync", lambda fd: None)
