"""Recovery time of a crashed partition as a function of its unflushed tail.

A log of 100-byte values (8 MiB segments) gets a durable prefix (flushed, recovery point
written), then an unflushed tail of T bytes, and is abandoned without close(): the locks
are released (``_release_locks()``), as the kernel does for a killed process. Reopening it
is timed, on a fresh copy each round:

- ``process``: the machine did not reboot (same boot id). The page cache kept every write,
  so logq re-validates only the last segment: the cost is bounded by the segment size,
  whatever the tail.
- ``reboot``: another boot id. Every segment from the one holding the recovery point is
  re-validated and its indexes rebuilt: the cost grows with the tail.
- ``clean``: a closed log reopened (the baseline: only the last segment's tail after its
  last index entry is checked).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from logq.cli.perf_workloads import T0_MS
from logq.storage import meta as _meta
from logq.storage.log import STATE_FILE, PartitionLog

from support import config, size, values

MIB = 1 << 20
SEGMENT = size(8 * MIB, 128 * 1024)
PREFIX = size(32 * MIB, 256 * 1024)
TAILS = size([0, 1 * MIB, 8 * MIB, 32 * MIB], [0, 256 * 1024])


def _append_until(log: PartitionLog, total_bytes: int) -> None:
    vals = values()
    k = log.log_end_offset // len(vals)
    while log.size_bytes < total_bytes:
        log.append_values(vals, timestamp_ms=T0_MS + k)
        k += 1


def _abandon(log: PartitionLog) -> None:
    """What a killed process leaves: no close(), no clean flag; the kernel drops the flocks."""
    if log._flusher is not None:
        log._flusher.join(30)  # a dead process has no background flush still running
    with log._mutex:
        log._closed = True
        log._release_locks()
        for seg in log.segments:
            seg.close_files()


def build_crashed(path: str, tail_bytes: int, crash: str) -> int:
    """Build the crashed partition at ``path``; return its number of records."""
    log = PartitionLog(path, config(segment_bytes=SEGMENT))
    _append_until(log, PREFIX)
    log.flush()
    durable = log.log_end_offset
    _append_until(log, PREFIX + tail_bytes)
    end = log.log_end_offset
    if crash == "clean":
        log.close()
        return end
    _abandon(log)
    state_path = os.path.join(path, STATE_FILE)
    state = _meta.read_meta(state_path).value or {}
    state.update(clean=False, recovery_point=durable)
    if crash == "reboot":
        state["boot_id"] = "another-boot"
    _meta.write_meta(state_path, state, sync=False)
    return end


@pytest.mark.parametrize("tail", TAILS, ids=lambda t: f"tail{t // 1024}KiB")
@pytest.mark.parametrize("crash", ["process", "reboot", "clean"])
def test_reopen_after_crash(benchmark, tmp_path: Path, tail: int, crash: str) -> None:
    pristine = str(tmp_path / "pristine")
    records = build_crashed(pristine, tail, crash)
    rounds = iter(range(1_000_000))
    opened = []

    def setup() -> tuple:
        dst = str(tmp_path / f"round{next(rounds)}")
        shutil.copytree(pristine, dst)
        return (dst,), {}

    def reopen(path: str) -> None:
        opened.append(PartitionLog(path, config(segment_bytes=SEGMENT)))

    def teardown(path: str) -> None:
        log = opened.pop()
        assert log.log_end_offset == records, (log.log_end_offset, records)
        log.close()
        shutil.rmtree(path, ignore_errors=True)

    benchmark.extra_info.update(tail_bytes=tail, crash=crash, log_bytes=PREFIX + tail)
    benchmark.pedantic(reopen, setup=setup, teardown=teardown, rounds=size(5, 1))
