"""What a reliability child process runs: ``python -m tests.support.children <name> <json args>``.

A fresh interpreter each (like the "spawn" start method, so no descriptor or mapping is
inherited by accident), started by tests.support.harness. A child talks to its parent through
a pipe whose write end is passed with ``pass_fds``. Every message is one line written with a
single ``os.write`` of less than PIPE_BUF bytes, so it arrives whole or not at all even when
the child is SIGKILLed.

Messages (space separated)::

    R <open_ms>                                    the log is open (recovery done)
    A <wid> <seq> <base> <last> <digest> <t_ns>    append() returned: an acknowledged batch
    B <base> <last> <digest> <t_ns>                a reader saw a whole batch
    H                                              a lock holder holds the lock
    D                                              the child finished normally

Test hooks read by a child before it imports logq (never used by the library):

- ``LOGQ_TEST_DISABLE_FDATASYNC=1`` replaces ``os.fdatasync`` with a no-op (the power-cut
  negative control: a build that forgot to sync its data).
- ``LOGQ_TEST_BOOT_ID=<id>`` makes recovery see another boot id (a simulated reboot).
- ``LOGQ_CRASH_AT=site:n`` is the library's own hook (logq/storage/files.py).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and os.environ.get("LOGQ_TEST_DISABLE_FDATASYNC") == "1":
    os.fdatasync = lambda fd: None  # type: ignore[assignment]  # before logq is imported

import json  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import asdict  # noqa: E402
from typing import Any  # noqa: E402

from logq.config import LogConfig  # noqa: E402
from logq.errors import DiskFullError, LogqError, OffsetOutOfRangeError  # noqa: E402
from logq.storage.log import PartitionLog  # noqa: E402

from tests.support.harness import Child, recover_in_child  # noqa: E402
from tests.support.oracle import check_log, scan_partition, tree_hash  # noqa: E402
from tests.support.workload import make_batch, record_tuples, records_digest  # noqa: E402

if __name__ == "__main__" and os.environ.get("LOGQ_TEST_BOOT_ID"):
    from logq.storage import state

    _fake_boot = os.environ["LOGQ_TEST_BOOT_ID"]
    state.boot_id = lambda: _fake_boot


def _send(fd: int, line: str) -> None:
    data = (line + "\n").encode()
    assert len(data) < 4096
    os.write(fd, data)


def child_writer(a: dict[str, Any]) -> None:
    """Open (recovering if needed), then append until run_s passes or stop_file appears."""
    fd = a["ack_fd"]
    cfg = LogConfig(**a["config"])
    t0 = time.perf_counter()
    log = PartitionLog(a["path"], cfg)
    _send(fd, f"R {(time.perf_counter() - t0) * 1000:.3f}")
    rng = random.Random(a["seed"])
    wid = a.get("wid", 0)
    seq = 0
    deadline = time.monotonic() + a.get("run_s", 10.0)
    stop_file = a.get("stop_file")
    pause_s = a.get("pause_s", 0.0)
    small = a.get("small_only", False)
    while time.monotonic() < deadline:
        if stop_file and seq % 16 == 0 and os.path.exists(stop_file):
            break
        recs = make_batch(rng, wid, seq, int(time.time() * 1000), small)
        r = log.append(recs)
        _send(fd, f"A {wid} {seq} {r.base_offset} {r.last_offset} {records_digest(recs)} {time.monotonic_ns()}")
        seq += 1
        if pause_s:
            time.sleep(rng.uniform(0, pause_s))
    if a.get("close", True):
        log.close()
    _send(fd, "D")


def child_commanded_writer(a: dict[str, Any]) -> None:
    """Open the log, then append one batch per 'append' line on stdin; 'exit' closes."""
    fd = a["ack_fd"]
    log = PartitionLog(a["path"], LogConfig(**a["config"]))
    _send(fd, "R 0")
    rng = random.Random(a["seed"])
    wid, seq = a.get("wid", 9), 0
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "append":
            recs = make_batch(rng, wid, seq, int(time.time() * 1000), True)
            r = log.append(recs)
            _send(fd, f"A {wid} {seq} {r.base_offset} {r.last_offset} {records_digest(recs)} {time.monotonic_ns()}")
            seq += 1
        elif cmd == "exit":
            break
    log.close()
    _send(fd, "D")


def child_lock_holder(a: dict[str, Any]) -> None:
    """A writer that takes the partition's per-operation lock and then hangs inside it."""
    fd = a["ack_fd"]
    log = PartitionLog(a["path"], LogConfig(**a["config"]))
    assert log._oplock is not None
    log._oplock.acquire()
    _send(fd, "H")
    time.sleep(a.get("hold_s", 600))
    os._exit(0)


def child_follower(a: dict[str, Any]) -> None:
    """A readonly reader that follows the log batch by batch until told where it ends.

    The parent writes the final log end offset into stop_file. Reports each batch seen.
    """
    fd = a["ack_fd"]
    cfg = LogConfig(**a["config"])
    log = PartitionLog(a["path"], cfg, readonly=True)
    _send(fd, f"R 0 {time.monotonic_ns()}")
    off = log.log_start_offset
    stop_file = a["stop_file"]
    final: int | None = None
    deadline: float | None = None
    while True:
        fr = log.read(off, a.get("max_bytes", 256 * 1024))
        if not fr.headers:
            if final is None and os.path.exists(stop_file):
                with open(stop_file) as f:
                    txt = f.read().strip()
                if txt:
                    final = int(txt)
                    deadline = time.monotonic() + a.get("drain_s", 60)
            if final is not None:
                if off >= final:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    print(f"follower stuck at {off}, end is {final}", file=sys.stderr)
                    sys.exit(4)
            time.sleep(0.002)
            continue
        recs = fr.records()
        now = time.monotonic_ns()
        i = 0
        for h in fr.headers:
            if h.base_offset != off:
                print(f"gap or overlap: batch at {h.base_offset}, expected {off}", file=sys.stderr)
                sys.exit(5)
            n = h.last_offset_delta + 1
            mine = recs[i : i + n]
            i += n
            if [r.offset for r in mine] != list(range(h.base_offset, h.last_offset + 1)):
                print(f"partial batch at {h.base_offset}", file=sys.stderr)
                sys.exit(6)
            _send(fd, f"B {h.base_offset} {h.last_offset} {records_digest(record_tuples(mine))} {now}")
            off = h.next_offset
    log.close()
    _send(fd, "D")


def child_random_reader(a: dict[str, Any]) -> None:
    """Read random offsets while a writer rolls, deletes and recovers; count outcomes.

    Exit 0 with a JSON summary on stdout; exit 3 on any error that is not a clean logq
    error. A SIGBUS or SIGSEGV shows as the parent's return code -7 / -11.
    """
    cfg = LogConfig(**a["config"])
    rng = random.Random(a["seed"])
    deadline = time.monotonic() + a["run_s"]
    stop_file = a.get("stop_file")
    counts = {"reads": 0, "batches": 0, "records": 0, "out_of_range": 0, "empty": 0, "opens": 0}
    other: list[str] = []
    log = None
    while time.monotonic() < deadline:
        if stop_file and counts["reads"] % 64 == 0 and os.path.exists(stop_file):
            break
        try:
            if log is None or rng.random() < 0.01:
                if log is not None:
                    log.close()
                log = PartitionLog(a["path"], cfg, readonly=True)
                counts["opens"] += 1
            log.refresh()
            start, end = log.log_start_offset, log.log_end_offset
            off = rng.randint(max(0, start - 5), end) if rng.random() < 0.7 else max(start, end - rng.randint(0, 50))
            fr = log.read(off, rng.choice((1, 4096, 65536)))
            counts["reads"] += 1
            if not fr.headers:
                counts["empty"] += 1
                continue
            recs = fr.records()
            counts["batches"] += len(fr.headers)
            counts["records"] += len(recs)
            lo, hi = fr.headers[0].base_offset, fr.headers[-1].last_offset
            if not recs or recs[0].offset > max(off, lo) or recs[-1].offset != hi:
                other.append(
                    f"read({off}) returned offsets {recs[0].offset if recs else None}..{recs[-1].offset if recs else None} for batches {lo}..{hi}"
                )
        except OffsetOutOfRangeError:
            counts["out_of_range"] += 1
        except Exception as e:  # anything else is a finding
            other.append(f"{type(e).__name__}: {e}")
            if len(other) > 20:
                break
    print(json.dumps({"counts": counts, "errors": other}))
    sys.stdout.flush()
    sys.exit(3 if other else 0)


def child_recover(a: dict[str, Any]) -> None:
    """Open a writer (which recovers), print JSON (time, report, tree hash), exit unclean.

    Leaving with os._exit and no close keeps the log "unclean", exactly as after a crash,
    so the next opener recovers again (that is what makes C7 testable).
    """
    cfg = LogConfig(**a["config"])
    t0 = time.perf_counter()
    log = PartitionLog(a["path"], cfg, repair=a.get("repair", False))
    ms = (time.perf_counter() - t0) * 1000
    out = {
        "ms": ms,
        "report": asdict(log.report),
        "start": log.log_start_offset,
        "end": log.log_end_offset,
        "corruption": str(log.corruption) if log.corruption else None,
        "hash": tree_hash(a["path"]),
        "data_hash": tree_hash(a["path"], indexes=False),
    }
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    os._exit(0)


def child_full_disk(a: dict[str, Any]) -> None:
    """T6.1 inside a private mount namespace: mount a small tmpfs, fill it, free, resume.

    Prints a JSON summary; exit 0 when every check held, 2 with a list of problems, 77
    when the tmpfs could not be mounted.
    """
    mnt = a["mnt"]
    os.makedirs(mnt, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={a.get('size', '1m')}", "tmpfs", mnt], capture_output=True, text=True
    )
    if r.returncode:
        print(json.dumps({"skip": f"mount -t tmpfs failed: {r.stderr.strip()}"}))
        sys.exit(77)
    rng = random.Random(a["seed"])
    path = os.path.join(mnt, "t-0")
    cfg = LogConfig(segment_bytes=a.get("segment_bytes", 64 * 1024), index_interval_bytes=512)
    reserve = os.path.join(mnt, "reserve")
    reserve_bytes = a.get("reserve_bytes", 128 * 1024)
    problems: list[str] = []
    acked: dict[int, tuple[int, str]] = {}
    stats = {
        "cycles": 0,
        "disk_full_errors": 0,
        "acked_batches": 0,
        "acked_records": 0,
        "resumed": 0,
        "retention_at_full_ok": 0,
        "retention_at_full_refused": 0,
        "reopens": 0,
    }
    with open(reserve, "wb") as f:
        f.write(b"\0" * reserve_bytes)
    log = PartitionLog(path, cfg)
    seq = 0
    for cycle in range(a["cycles"]):
        where = f"cycle {cycle}"
        leo_before = log.log_end_offset
        for _ in range(100_000):  # fill until the disk refuses
            recs = make_batch(rng, 0, seq, int(time.time() * 1000), small_only=rng.random() < 0.5)
            leo_before = log.log_end_offset
            try:
                res = log.append(recs)
            except DiskFullError:
                stats["disk_full_errors"] += 1
                break
            except LogqError as e:
                problems.append(f"{where}: append failed with {type(e).__name__}, not DiskFullError: {e}")
                break
            acked[res.base_offset] = (res.last_offset, records_digest(recs))
            stats["acked_batches"] += 1
            stats["acked_records"] += len(recs)
            seq += 1
        else:
            problems.append(f"{where}: the disk never filled")
        if log.log_end_offset != leo_before:
            problems.append(f"{where}: a failed append moved the log end {leo_before} -> {log.log_end_offset}")
        problems += [f"{where}: {p}" for p in _check_acked_readable(log, acked)]
        problems += [f"{where}: {p}" for p in scan_partition(path, cfg.index_interval_bytes).problems]
        # At 100% full retention has to write the state file first: it may be refused, cleanly.
        try:
            log.delete_records_before(log.active.base_offset)
            stats["retention_at_full_ok"] += 1
        except DiskFullError:
            stats["retention_at_full_refused"] += 1
        except LogqError as e:
            problems.append(f"{where}: retention at full disk failed with {type(e).__name__}: {e}")
        problems += [f"{where} after retention at full: {p}" for p in _check_acked_readable(log, acked)]
        # free space: the reserve file, then retention can run
        os.unlink(reserve)
        try:
            log.delete_records_before(log.active.base_offset)
        except LogqError as e:
            problems.append(f"{where}: retention with free space failed: {e}")
        for k in [k for k, (last, _) in acked.items() if last < log.log_start_offset]:
            del acked[k]
        expect = log.log_end_offset  # appends resume at the next offset
        recs = make_batch(rng, 0, seq, int(time.time() * 1000), small_only=True)
        try:
            res = log.append(recs)
            seq += 1
            if res.base_offset != expect:
                problems.append(f"{where}: resumed at {res.base_offset}, expected {expect}")
            acked[res.base_offset] = (res.last_offset, records_digest(recs))
            stats["resumed"] += 1
        except LogqError as e:
            problems.append(f"{where}: append after freeing space failed: {e}")
        try:
            with open(reserve, "wb") as f:
                f.write(b"\0" * reserve_bytes)
        except OSError as e:
            problems.append(f"{where}: could not re-create the reserve: {e}")
        if cycle % 5 == 4:  # reopen now and then: recovery must agree with what we saw
            log.close()
            log = PartitionLog(path, cfg)
            stats["reopens"] += 1
            problems += [f"{where} after reopen: {p}" for p in _check_acked_readable(log, acked)]
        stats["cycles"] += 1
    log.close()
    scan = scan_partition(path, cfg.index_interval_bytes)
    problems += scan.problems
    print(json.dumps({"stats": stats, "problems": problems[:50]}))
    sys.stdout.flush()
    sys.exit(2 if problems else 0)


def _check_acked_readable(log: PartitionLog, acked: dict[int, tuple[int, str]]) -> list[str]:
    out = []
    for base, (last, digest) in sorted(acked.items()):
        if last < log.log_start_offset:
            continue
        try:
            fr = log.read(base, 1)
        except LogqError as e:
            out.append(f"acked batch {base} unreadable: {e}")
            continue
        recs = [r for r in fr.records() if base <= r.offset <= last]
        if not fr.headers or fr.headers[0].base_offset != base or records_digest(record_tuples(recs)) != digest:
            out.append(f"acked batch {base}..{last} differs")
    return out


# ---------------------------------------------------------------- power cuts (T2)
def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True)


def _loop_device(mnt: str) -> str:
    r = _run(["findmnt", "-n", "-o", "SOURCE", mnt])
    return os.path.basename(r.stdout.strip())


def _wait_stopped(pid: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state in ("T", "t"):
            return
        time.sleep(0.001)
    raise RuntimeError(f"process {pid} did not stop")


def _wait_inflight_zero(dev: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    path = f"/sys/block/{dev}/inflight"
    while time.monotonic() < end:
        try:
            with open(path) as f:
                if f.read().split() == ["0", "0"]:
                    return
        except FileNotFoundError:
            return
        time.sleep(0.001)
    raise RuntimeError(f"{dev} kept I/O in flight")


def child_power_cut(a: dict[str, Any]) -> None:
    """T2 orchestrator, run inside ``unshare --mount --propagation private``.

    Per cut: fresh ext4 image (a copy of a pristine mkfs'd one) loop-mounted; a writer
    grandchild appends with the given fsync mode; after a random time it is SIGSTOPped,
    the loop device drains, the image is copied (the "power cut": only what reached the
    block device survives), the writer is SIGKILLed, the copy is mounted and recovered
    in a fresh process that sees another boot id, then recovered again here and checked.
    Prints JSON; exit 77 when loop mounts do not work.
    """
    work = a["work"]
    rng = random.Random(a["seed"])
    pristine = os.path.join(work, "pristine.img")
    with open(pristine, "wb") as f:
        f.truncate(a.get("image_mb", 64) << 20)
    fs = a.get("fs", "ext4")
    mkfs = ["mkfs.ext4", "-q", "-F", pristine] if fs == "ext4" else ["mkfs.xfs", "-q", "-f", pristine]
    if shutil.which(mkfs[0]) is None:
        print(json.dumps({"skip": f"{mkfs[0]} is not installed"}))
        sys.exit(77)
    r = _run(mkfs)
    if r.returncode:
        print(json.dumps({"skip": f"{mkfs[0]} failed: {r.stderr.strip()}"}))
        sys.exit(77)
    snap_opts = ["-o", "loop,nouuid"] if fs == "xfs" else ["-o", "loop"]
    mnt = os.path.join(work, "mnt")
    os.makedirs(mnt, exist_ok=True)
    cfg_d = dict(a["config"])
    cuts: list[dict[str, Any]] = []
    env = dict(os.environ)
    env.pop("LOGQ_CRASH_AT", None)
    if a.get("disable_fdatasync"):
        env["LOGQ_TEST_DISABLE_FDATASYNC"] = "1"
    for n in range(a["cuts"]):
        img, snap = os.path.join(work, "live.img"), os.path.join(work, "snap.img")
        shutil.copyfile(pristine, img)
        r = _run(["mount", "-o", "loop", img, mnt])
        if r.returncode:
            print(json.dumps({"skip": f"mount -o loop failed: {r.stderr.strip()}"}))
            sys.exit(77)
        dev = _loop_device(mnt)
        if not dev:
            raise RuntimeError(f"no loop device found for {mnt}")
        part = os.path.join(mnt, "t-0")
        w = Child(
            "writer",
            {"path": part, "config": cfg_d, "seed": rng.randrange(1 << 30), "run_s": 30.0},
            logdir=work,
            env=env,
        )
        w.wait_for("R", 60)
        time.sleep(rng.uniform(a.get("min_s", 0.1), a.get("max_s", 0.9)))
        os.kill(w.pid, signal.SIGSTOP)
        _wait_stopped(w.pid)
        _wait_inflight_zero(dev)
        w.drain()
        acked_now = list(w.acks)
        _run(["cp", "--sparse=always", img, snap])
        w.kill()
        _run(["umount", mnt])
        os.unlink(img)
        r = _run(["mount", *snap_opts, snap, mnt])
        if r.returncode:
            raise RuntimeError(f"mounting the snapshot failed: {r.stderr}")
        boot = f"power-cut-{n}-{rng.randrange(1 << 30)}"
        cut = {"acked_batches": len(acked_now), "acked_records": sum(x.last - x.base + 1 for x in acked_now)}
        try:
            rec = recover_in_child(part, cfg_d, logdir=work, boot_id=boot)
            cut["recovery_ms"] = rec["ms"]
            cut["bytes_truncated"] = rec["report"]["bytes_truncated"]
            acked = {x.base: x for x in acked_now}
            res = check_log(part, LogConfig(**cfg_d), acked, exact_indexes=True, boot_id=boot)
            cut["lost_records"] = res.lost_records
            cut["lost_batches"] = len(res.lost)
            cut["lost_offsets_window"] = res.lost_window
            cut["holes"] = sum(1 for b in res.lost if b < res.leo)  # lost below the end: not a tail
            cut["problems"] = res.problems
            cut["leo"] = res.leo
            cut["idempotent"] = res.hash_after == rec["hash"]
        finally:
            _run(["umount", mnt])
            os.unlink(snap)
        cuts.append(cut)
    os.unlink(pristine)
    print(json.dumps({"cuts": cuts}))
    sys.stdout.flush()


CHILDREN = {
    "writer": child_writer,
    "commanded_writer": child_commanded_writer,
    "lock_holder": child_lock_holder,
    "follower": child_follower,
    "random_reader": child_random_reader,
    "recover": child_recover,
    "full_disk": child_full_disk,
    "power_cut": child_power_cut,
}


def main(argv: list[str]) -> None:
    CHILDREN[argv[1]](json.loads(argv[2]))


if __name__ == "__main__":
    main(sys.argv)
