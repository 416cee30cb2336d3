"""Several processes on one partition: readers following writers, writers sharing a
partition through the per-operation flock, a writer killed among others, lock semantics
(T9) and readers surviving rolls, retention and recovery truncation without SIGBUS.

Children are separate interpreters (tests/support/children.py). Nothing here asserts on timing:
waits are generous bounds for liveness, and latencies are only printed.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from logq.config import LogConfig
from logq.errors import OffsetOutOfRangeError
from logq.storage import files as _fs
from logq.storage.log import PartitionLog

from tests.support import harness as h
from tests.support import oracle
from tests.support.workload import Ack

pytestmark = pytest.mark.slow

KIB = 1024
CFG = dict(segment_bytes=128 * KIB, index_interval_bytes=512)


def _seen(child: h.Child) -> list[tuple[int, int, str, int]]:
    out = []
    for line in child.lines:
        if line.startswith("B "):
            _, base, last, digest, t = line.split()
            out.append((int(base), int(last), digest, int(t)))
    return out


def _publish_end(stop_file: Path, leo: int) -> None:
    tmp = stop_file.with_suffix(".tmp")
    tmp.write_text(str(leo))
    os.replace(tmp, stop_file)


def _finish_follower(follower: h.Child, stop_file: Path, leo: int) -> list[tuple[int, int, str, int]]:
    _publish_end(stop_file, leo)
    rc = follower.wait(120)
    assert rc == 0, f"follower exited {rc}: {follower.stderr()}"
    return _seen(follower)


def test_a_reader_process_follows_a_writer_process_in_order_completely_without_partial_batches(tmp_path: Path) -> None:
    path, stop = str(tmp_path / "t-0"), tmp_path / "stop"
    w = h.Child("writer", {"path": path, "config": CFG, "seed": 11, "run_s": 2.5}, logdir=str(tmp_path))
    assert w.wait_for("R", 60), w.stderr()
    r = h.Child("follower", {"path": path, "config": CFG, "stop_file": str(stop)}, logdir=str(tmp_path))
    assert r.wait_for("R", 60), r.stderr()
    assert w.wait(120) == 0, w.stderr()
    acks = sorted(w.acks, key=lambda a: a.base)
    assert acks, "the writer acknowledged nothing"
    seen = _finish_follower(r, stop, acks[-1].last + 1)
    # ordered and complete: exactly the acknowledged batches, in offset order, same records
    assert [(b, l, d) for b, l, d, _ in seen] == [(a.base, a.last, a.digest) for a in acks]
    ready_ns = int(next(ln for ln in r.lines if ln.startswith("R ")).split()[2])
    lag_ms = sorted((t - a.t_ns) / 1e6 for a, (_, _, _, t) in zip(acks, seen) if a.t_ns > ready_ns)
    print(
        f"\n[follow] batches={len(seen)} records={acks[-1].last + 1}; lag of batches acked after the reader "
        f"was ready ({len(lag_ms)}): p50={h.percentile(lag_ms, 50):.2f} ms p99={h.percentile(lag_ms, 99):.2f} ms"
    )


def _check_shared_log(path: str, acks: list[Ack], allow_extra_from: tuple[int, ...] = ()) -> oracle.Scan:
    scan = oracle.scan_partition(path, CFG["index_interval_bytes"])
    assert not scan.problems, scan.problems[:10]
    by_base: dict[int, Ack] = {}
    for a in acks:
        assert a.base not in by_base, f"offset {a.base} acknowledged to two appends"
        by_base[a.base] = a
    for a in acks:
        b = scan.batches.get(a.base)
        assert b is not None and (b.last, b.digest) == (a.last, a.digest), (
            f"acked batch {a.base} of writer {a.wid} lost"
        )
    extra = [b for b in scan.order if b not in by_base]
    assert len(extra) <= len(allow_extra_from), f"batches nobody acknowledged: {extra[:5]}"
    # per-writer order: a writer's later append never lands before its earlier one
    for wid in {a.wid for a in acks}:
        mine = sorted((a.seq, a.base) for a in acks if a.wid == wid)
        assert [b for _, b in mine] == sorted(b for _, b in mine), f"writer {wid} out of order"
    return scan


def test_three_writer_processes_append_to_one_partition_contiguously_exactly_once_in_order(tmp_path: Path) -> None:
    path, stop = str(tmp_path / "t-0"), tmp_path / "stop"
    PartitionLog(path, LogConfig(**CFG)).close()
    ws = [
        h.Child("writer", {"path": path, "config": CFG, "seed": 100 + i, "wid": i, "run_s": 2.0}, logdir=str(tmp_path))
        for i in range(3)
    ]
    r = h.Child("follower", {"path": path, "config": CFG, "stop_file": str(stop)}, logdir=str(tmp_path))
    for w in ws:
        assert w.wait(120) == 0, w.stderr()
    acks = [a for w in ws for a in w.acks]
    assert all(w.acks for w in ws), [len(w.acks) for w in ws]
    scan = _check_shared_log(path, acks)
    assert scan.order == sorted(a.base for a in acks) and scan.leo == max(a.last for a in acks) + 1
    seen = _finish_follower(r, stop, scan.leo)
    assert [b for b, *_ in seen] == scan.order
    switches = sum(1 for x, y in zip(scan.order, scan.order[1:]) if _wid(acks, x) != _wid(acks, y))
    print(
        f"\n[3 writers] batches={len(acks)} per writer={[len(w.acks) for w in ws]} writer switches={switches} "
        f"segments={len(scan.segments)}"
    )
    assert switches > 3, "the writers never interleaved"


def _wid(acks: list[Ack], base: int) -> int:
    return next(a.wid for a in acks if a.base == base)


def test_a_writer_killed_among_others_loses_nothing_acked_and_its_torn_tail_is_cut_by_the_next_writer(
    tmp_path: Path,
) -> None:
    rng = random.Random(5)
    path, stop, wstop = str(tmp_path / "t-0"), tmp_path / "stop", tmp_path / "wstop"
    PartitionLog(path, LogConfig(**CFG)).close()
    ws = [
        h.Child(
            "writer",
            {"path": path, "config": CFG, "seed": 200 + i, "wid": i, "run_s": 60.0, "stop_file": str(wstop)},
            logdir=str(tmp_path),
        )
        for i in range(3)
    ]
    r = h.Child("follower", {"path": path, "config": CFG, "stop_file": str(stop)}, logdir=str(tmp_path))
    for w in ws:
        w.wait_acks(20, 60)
    time.sleep(rng.uniform(0.005, 0.3))
    assert ws[0].kill() == h.SIGKILL_RC
    torn = h.inject_torn_tail(path, rng)  # as if writer 0 died in the middle of its pwrite
    assert torn > 0
    marks = [len(w.acks) for w in ws]
    for w, m in zip(ws[1:], marks[1:]):
        w.wait_acks(m + 30, 60)  # the survivors go on: the torn bytes did not stop them
    wstop.touch()
    for w in ws[1:]:
        assert w.wait(60) == 0, w.stderr()
    acks = [a for w in ws for a in w.acks]
    scan = _check_shared_log(path, acks, allow_extra_from=(0,))  # writer 0 may have died before its ack
    seen = _finish_follower(r, stop, scan.leo)
    assert [b for b, *_ in seen] == scan.order
    print(f"\n[kill among writers] acked batches={len(acks)} torn bytes cut={torn} leo={scan.leo}")


def test_flock_a_second_writer_blocks_while_another_process_holds_the_lock_and_goes_on_when_it_is_killed(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "t-0")
    PartitionLog(path, LogConfig(**CFG)).close()
    w = h.Child("commanded_writer", {"path": path, "config": CFG, "seed": 3}, logdir=str(tmp_path), stdin=True)
    assert w.wait_for("R", 60), w.stderr()
    holder = h.Child("lock_holder", {"path": path, "config": CFG}, logdir=str(tmp_path))
    assert holder.wait_for("H", 60), holder.stderr()
    assert w.proc.stdin is not None
    w.proc.stdin.write(b"append\n")
    w.proc.stdin.flush()
    time.sleep(1.0)
    assert not w.acks, "an append went through while another process held the partition lock"
    assert holder.kill() == h.SIGKILL_RC
    w.wait_acks(1, 60)  # the kernel released the dead holder's flock
    assert w.acks[0].base == 0
    w.proc.stdin.write(b"exit\n")
    w.proc.stdin.close()
    assert w.wait(60) == 0, w.stderr()


def test_flock_excludes_other_descriptors_and_threads_and_survives_closing_unrelated_descriptors(
    tmp_path: Path,
) -> None:
    p = str(tmp_path / ".lock")
    held = _fs.FileLock(p)
    held.acquire()
    other = _fs.FileLock(p)
    assert not other.acquire(blocking=False)  # same process, another descriptor
    got = []
    t = threading.Thread(target=lambda: got.append(_fs.FileLock(p).acquire(blocking=False)))
    t.start()
    t.join()
    assert got == [False]  # another thread with its own descriptor
    fd = os.open(p, os.O_RDONLY)
    os.close(fd)  # lockf would have dropped the lock here (SQLite's "how to corrupt" 2.2)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, os, sys\n"
                "fd = os.open(sys.argv[1], os.O_RDWR)\n"
                "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError:\n    sys.exit(7)\n"
            ),
            p,
        ]
    )
    assert probe.returncode == 7, "another process got the lock"
    held.close()
    assert other.acquire(blocking=False)
    other.close()


def test_reader_processes_survive_rolls_retention_and_recovery_truncation_without_sigbus(tmp_path: Path) -> None:
    """T9: two readers read random offsets while writer generations roll 64 KiB segments,
    retention deletes them and each writer dies with a torn tail that the next writer's
    recovery cuts in place. A reader may get data or OffsetOutOfRange, nothing else."""
    cfg = dict(segment_bytes=64 * KIB, index_interval_bytes=512, retention_bytes=256 * KIB)
    res = h.readers_under_churn(str(tmp_path / "t-0"), cfg, generations=4, readers=2, seed=9, logdir=str(tmp_path))
    c = res["counts"]
    print(
        f"\n[T9 readers] writer generations={res['generations']} recovery truncations={res['truncations']} "
        f"reads={c.get('reads')} out_of_range={c.get('out_of_range')} opens={c.get('opens')} "
        f"log start moved to {res['log_start']}; SIGBUS/SIGSEGV={res['fatal_signals']}"
    )
    assert res["fatal_signals"] == 0
    assert not res["problems"], res["problems"]
    assert c["reads"] > 100
    assert res["truncations"] > 0 and res["log_start"] > 0, "no recovery truncation or no retention happened"


# -- regression tests for bugs these tests found -------------------------------------------


def test_a_segment_rolled_by_one_writer_reloads_the_index_entries_other_writers_append(tmp_path: Path) -> None:
    """Bug: a segment made by _new_segment (a roll) kept indexes_loaded=False, so catch_up
    never reloaded its index files and the rolling writer pwrote its entries at its own,
    stale slot numbers over the other writers' entries: the .index went non-monotonic
    ([(3, 660), (2, 440)]) and lookups in other processes could start past their target."""
    path = str(tmp_path / "t-0")
    cfg = LogConfig(segment_bytes=1 << 20, index_interval_bytes=100)
    a, b = PartitionLog(path, cfg), PartitionLog(path, cfg)  # separate descriptors: flock works
    a.append_values([b"x" * 150], timestamp_ms=1000)
    a.roll()  # a's active segment now comes from a roll
    for i in range(3):
        b.append_values([b"x" * 150], timestamp_ms=1001 + i)
    a.append_values([b"x" * 150], timestamp_ms=1010)
    a.close()
    b.close()
    scan = oracle.scan_partition(path, 100)
    assert not scan.problems, scan.problems
    assert not scan.index_mismatch, scan.index_mismatch


def _three_segments_then_delete_two(path: str) -> tuple[LogConfig, PartitionLog]:
    cfg = LogConfig(segment_bytes=1000, index_interval_bytes=100)
    w = PartitionLog(path, cfg)
    for i in range(6):
        w.append_values([b"v" * 400])  # two batches per segment: three segments
    assert w.num_segments >= 3
    return cfg, w


def test_a_reader_reading_a_segment_retention_unlinked_gets_offset_out_of_range_not_storage_error(
    tmp_path: Path,
) -> None:
    """Bug: read() meant to catch_up and retry when retention removed a segment under a
    reader ("except FileNotFoundError"), but opening the file raises the logq
    StorageError(ENOENT), so readers got "open failed ... check the disk" instead."""
    path = str(tmp_path / "t-0")
    cfg, w = _three_segments_then_delete_two(path)
    r = PartitionLog(path, cfg, readonly=True)  # knows every segment, has opened none of the sealed ones
    keep = w.segments[2].base_offset
    w.delete_records_before(keep)  # unlinks segments 0 and 1
    with pytest.raises(OffsetOutOfRangeError):
        r.read(0)
    assert r.read(keep).headers[0].base_offset == keep
    r.close()
    w.close()


def test_a_reader_opening_while_retention_unlinks_a_listed_segment_does_not_raise_file_not_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bug: opening a reader (or a reader adopting new segments) stat()ed every sealed
    segment it had just listed; one unlinked by retention in between escaped as a raw
    FileNotFoundError, not a logq error. The listing is made stale on purpose here."""
    from logq.storage import loader as recovery

    path = str(tmp_path / "t-0")
    cfg, w = _three_segments_then_delete_two(path)
    stale = recovery.list_segment_files(path)
    keep = w.segments[2].base_offset
    w.delete_records_before(keep)
    monkeypatch.setattr(recovery, "list_segment_files", lambda d: stale)
    r = PartitionLog(path, cfg, readonly=True)
    monkeypatch.undo()
    assert r.log_start_offset == keep
    with pytest.raises(OffsetOutOfRangeError):
        r.read(0)
    assert r.read(keep).headers[0].base_offset == keep
    r.close()
    w.close()
