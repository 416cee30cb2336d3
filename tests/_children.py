"""Child processes and the shared harness of the storage-core reliability tests.

Used by tests/test_crash.py, tests/test_multiprocess.py, tests/test_power_cut.py and
tools/soak.py. Children run as ``python _children.py <name> <json args>`` (a fresh
interpreter, like the "spawn" start method, so no descriptor or mapping is inherited by
accident) and talk to their parent through a pipe whose write end is passed with
``pass_fds``. Every message is one line written with a single ``os.write`` of less than
PIPE_BUF bytes, so it arrives whole or not at all even when the child is SIGKILLed.

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
- ``LOGQ_CRASH_AT=site:n`` is the library's own hook (logq/_fs.py).

The oracle (:func:`scan_dir`) reads the files directly with the codec, independently of
PartitionLog, and :func:`check_log` holds a recovered directory to T1's checks C1-C5
(C7 is checked by the callers, which recover twice).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and os.environ.get("LOGQ_TEST_DISABLE_FDATASYNC") == "1":
    os.fdatasync = lambda fd: None  # type: ignore[assignment]  # before logq is imported

import bisect
import hashlib
import json
import random
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from logq.codec.batch import decode_records, validate_batch  # noqa: E402
from logq.config import LogConfig  # noqa: E402
from logq.errors import (  # noqa: E402
    CorruptRecordError,
    DiskFullError,
    LogqError,
    OffsetOutOfRangeError,
)
from logq.storage import meta as _meta  # noqa: E402
from logq.storage.log import PartitionLog  # noqa: E402

if __name__ == "__main__" and os.environ.get("LOGQ_TEST_BOOT_ID"):
    from logq.storage import state as _state

    _fake_boot = os.environ["LOGQ_TEST_BOOT_ID"]
    _state.boot_id = lambda: _fake_boot

STATE_FILE = "logq.state"
LOCK_FILES = (".lock", ".writers")
SIGKILL_RC = -signal.SIGKILL
FATAL_SIGNAL_RCS = {-signal.SIGBUS, -signal.SIGSEGV, -signal.SIGABRT, -signal.SIGILL, -signal.SIGFPE}


# ====================================================================== workload
def _field(b: bytes | None) -> bytes:
    return b"\xff\xff\xff\xff" if b is None else len(b).to_bytes(4, "big") + b


def records_digest(records: Iterable[tuple[Any, Any, Any, int]]) -> str:
    """A digest of (key, value, headers, timestamp) records, as written or as read back."""
    h = hashlib.blake2b(digest_size=10)
    for key, value, headers, ts in records:
        h.update(ts.to_bytes(8, "big", signed=True))
        h.update(_field(key))
        h.update(_field(value))
        hs = list(headers or ())
        h.update(len(hs).to_bytes(4, "big"))
        for hk, hv in hs:
            h.update(_field(hk.encode("utf-8") if isinstance(hk, str) else bytes(hk)))
            h.update(_field(hv))
    return h.hexdigest()


def record_tuples(recs: Iterable[Any]) -> list[tuple[Any, Any, Any, int]]:
    return [(r.key, r.value, r.headers, r.timestamp) for r in recs]


def _value_size(rng: random.Random, small_only: bool) -> int:
    x = rng.random()
    if x < 0.15:
        return 0
    if x < 0.25:
        return 1
    if x < 0.65:
        return 100
    if x < 0.85 or small_only:
        return rng.choice((100, 700, 4096))
    if x < 0.96:
        return 4096
    return rng.randint(4097, 65536)


def make_batch(rng: random.Random, wid: int, seq: int, now_ms: int, small_only: bool = False) -> list:
    """1-8 records: 0 B-64 KiB values, null or short keys, headers, equal/decreasing times."""
    n = rng.choice((1, 1, 1, 2, 3, 5, 8))
    ts0 = now_ms - rng.choice((0, 0, 0, 1000, 3_600_000))
    mode = rng.random()
    recs = []
    for i in range(n):
        size = _value_size(rng, small_only or n > 3)
        if size == 0:
            value: bytes | None = None if rng.random() < 0.3 else b""
        else:
            value = rng.randbytes(size)
        key = None if rng.random() < 0.5 else b"k%d" % rng.randrange(1000)
        headers = [("src", b"%d:%d:%d" % (wid, seq, i))]
        if rng.random() < 0.2:
            headers.append(("e", b""))
        if mode < 0.4:
            ts = ts0  # equal timestamps
        elif mode < 0.7:
            ts = ts0 - i * rng.randrange(0, 50)  # decreasing inside the batch
        else:
            ts = ts0 + i
        recs.append((key, value, headers, ts))
    return recs


# ====================================================================== child side
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
        problems += [f"{where}: {p}" for p in scan_dir(path, cfg.index_interval_bytes).problems]
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
    scan = scan_dir(path, cfg.index_interval_bytes)
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


# ====================================================================== parent side
@dataclass
class Ack:
    wid: int
    seq: int
    base: int
    last: int
    digest: str
    t_ns: int


TEST_HOOKS = ("LOGQ_CRASH_AT", "LOGQ_TEST_DISABLE_FDATASYNC", "LOGQ_TEST_BOOT_ID")


def child_env(extra: dict[str, str] | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: ``base`` (default: ours without test hooks) + ``extra``."""
    if base is None:
        env = {k: v for k, v in os.environ.items() if k not in TEST_HOOKS}
    else:
        env = dict(base)
    pp = env.get("PYTHONPATH", "")
    if REPO not in pp.split(os.pathsep):
        env["PYTHONPATH"] = REPO + (os.pathsep + pp if pp else "")
    env.update(extra or {})
    return env


_seq_lock = threading.Lock()
_seq = [0]


class Child:
    """A child process with an ack pipe drained by a thread, stderr kept in a file."""

    def __init__(
        self,
        name: str,
        args: dict[str, Any],
        *,
        logdir: str,
        env: dict[str, str] | None = None,
        crash_at: str | None = None,
        stdin: bool = False,
        prefix: Sequence[str] = (),
        capture_stdout: bool = False,
    ) -> None:
        with _seq_lock:
            _seq[0] += 1
            n = _seq[0]
        self.name = name
        self.errpath = os.path.join(logdir, f"{name}-{n}.stderr")
        r, w = os.pipe()
        args = dict(args, ack_fd=w)
        environ = child_env({"LOGQ_CRASH_AT": crash_at} if crash_at else {}, base=env)
        cmd = [*prefix, sys.executable, os.path.join(HERE, "_children.py"), name, json.dumps(args)]
        with open(self.errpath, "wb") as err:
            self.proc = subprocess.Popen(
                cmd,
                pass_fds=(w,),
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
                stderr=err,
                env=environ,
                cwd=REPO,
            )
        os.close(w)
        self.pid = self.proc.pid
        self._r = r
        self.lines: list[str] = []
        self.acks: list[Ack] = []
        self._cv = threading.Condition()
        self._eof = False
        self._t = threading.Thread(target=self._pump, daemon=True)
        self._t.start()

    def _pump(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._r, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            *full, buf = buf.split(b"\n")
            with self._cv:
                for raw in full:
                    line = raw.decode()
                    self.lines.append(line)
                    if line.startswith("A "):
                        _, wid, seq, base, last, dig, t = line.split()
                        self.acks.append(Ack(int(wid), int(seq), int(base), int(last), dig, int(t)))
                self._cv.notify_all()
        os.close(self._r)
        with self._cv:
            self._eof = True
            self._cv.notify_all()

    def wait_for(self, prefix: str, timeout: float) -> bool:
        """Wait for a line starting with ``prefix``; False if the child ended first."""
        end = time.monotonic() + timeout
        with self._cv:
            while True:
                if any(ln == prefix or ln.startswith(prefix + " ") for ln in self.lines):
                    return True
                if self._eof:
                    return False
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name} sent no {prefix!r} in {timeout} s; stderr: {self.stderr()}")
                self._cv.wait(min(left, 0.5))

    def wait_acks(self, n: int, timeout: float) -> None:
        end = time.monotonic() + timeout
        with self._cv:
            while len(self.acks) < n and not self._eof:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: {len(self.acks)} of {n} acks in {timeout} s")
                self._cv.wait(min(left, 0.5))

    def drain(self, timeout: float = 0.2) -> None:
        """Let the pump read what a stopped or dead child already wrote to the pipe."""
        end = time.monotonic() + timeout
        last = -1
        while time.monotonic() < end:
            with self._cv:
                if self._eof:
                    return
                n = len(self.lines)
            if n == last:
                time.sleep(0.02)
                with self._cv:
                    if len(self.lines) == n:
                        return
            last = n
            time.sleep(0.01)

    def kill(self) -> int:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.wait(30)

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        self._t.join(10)
        return rc

    def stderr(self) -> str:
        try:
            with open(self.errpath, errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""


def recover_in_child(
    path: str,
    config: dict[str, Any],
    *,
    logdir: str,
    crash_at: str | None = None,
    boot_id: str | None = None,
    timeout: float = 120,
) -> dict[str, Any]:
    """Recover in a fresh process. Returns its JSON, or {"rc": rc} if it died."""
    env = child_env({"LOGQ_CRASH_AT": crash_at} if crash_at else {})
    if boot_id:
        env["LOGQ_TEST_BOOT_ID"] = boot_id
    errpath = os.path.join(logdir, "recover.stderr")
    with open(errpath, "ab") as err:
        p = subprocess.run(
            [
                sys.executable,
                os.path.join(HERE, "_children.py"),
                "recover",
                json.dumps({"path": path, "config": config}),
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            cwd=REPO,
            timeout=timeout,
        )
    if p.returncode != 0:
        with open(errpath, errors="replace") as f:
            tail = f.read()[-2000:]
        return {"rc": p.returncode, "stderr": tail}
    return json.loads(p.stdout)


INDEX_SUFFIXES = (".index", ".timeindex")


def tree_hash(path: str, indexes: bool = True) -> str:
    """Hash of every file of a partition directory (names and bytes), lock files aside."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(path)):
        if name in LOCK_FILES or (not indexes and name.endswith(INDEX_SUFFIXES)):
            continue
        h.update(name.encode() + b"\0")
        with open(os.path.join(path, name), "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


# ------------------------------------------------------------------ the oracle
@dataclass
class Batch:
    base: int
    last: int
    pos: int
    size: int
    max_ts: int
    digest: str
    timestamps: list[int]


@dataclass
class Scan:
    log_start: int
    leo: int
    segments: list[tuple[int, int]]  # (base, file size)
    batches: dict[int, Batch]
    order: list[int]  # batch bases in log order
    problems: list[str]
    index_mismatch: list[str]  # the last segment's indexes differ from a rebuild
    total_bytes: int


def _expected_indexes(base: int, batches: list[Batch], interval: int, sealed: bool) -> tuple[bytes, bytes]:
    """The index files Kafka's rule gives for these batches (what a rebuild must produce)."""
    idx, tidx = [], []
    last_pos, max_ts, off_max = 0, -1, base
    for b in batches:
        if b.max_ts > max_ts:
            max_ts, off_max = b.max_ts, b.last
        if b.pos - last_pos > interval:
            idx.append((b.last - base).to_bytes(4, "big") + b.pos.to_bytes(4, "big"))
            last_pos = b.pos
            if not tidx or max_ts > tidx[-1][0]:
                tidx.append((max_ts, off_max - base))
    if sealed and batches and (not tidx or max_ts > tidx[-1][0]):
        tidx.append((max_ts, off_max - base))
    return b"".join(idx), b"".join(t.to_bytes(8, "big", signed=True) + r.to_bytes(4, "big") for t, r in tidx)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def scan_dir(path: str, index_interval_bytes: int, max_batch_bytes: int = 1_048_588) -> Scan:
    """Read a partition directory with the codec alone; list every rule it breaks."""
    state = _meta.read_meta(os.path.join(path, STATE_FILE)).value or {}
    log_start = int(state.get("log_start_offset", 0))
    names = os.listdir(path)
    bases = sorted(int(n[:20]) for n in names if n.endswith(".log") and len(n) == 24 and n[:20].isdigit())
    problems: list[str] = []
    mism: list[str] = []
    batches: dict[int, Batch] = {}
    order: list[int] = []
    segments: list[tuple[int, int]] = []
    expected: int | None = None
    total = 0
    for k, base in enumerate(bases):
        stem = os.path.join(path, f"{base:020d}")
        data = _read(stem + ".log") or b""
        segments.append((base, len(data)))
        total += len(data)
        if expected is not None and base != expected:
            problems.append(f"C4: segment {base} follows a segment ending at {expected}")
        pos, exp = 0, base
        seg_batches: list[Batch] = []
        while pos < len(data):
            try:
                h = validate_batch(data, pos, max_batch_bytes=max_batch_bytes, expected_offset=exp)
                recs = decode_records(data, h, pos)
            except CorruptRecordError as e:
                problems.append(f"C2/C3: {base:020d}.log: invalid bytes at {pos} of {len(data)}: {e.reason}")
                break
            if h.records_count != h.last_offset_delta + 1 or [r.offset for r in recs] != list(
                range(h.base_offset, h.last_offset + 1)
            ):
                problems.append(f"C2: batch {h.base_offset} record offsets do not match its header")
            b = Batch(
                h.base_offset,
                h.last_offset,
                pos,
                h.size,
                h.max_timestamp,
                records_digest(record_tuples(recs)),
                [r.timestamp for r in recs],
            )
            batches[b.base] = b
            order.append(b.base)
            seg_batches.append(b)
            pos += h.size
            exp = h.next_offset
        expected = exp
        # C5: indexes point at batch starts, increase, and match a rebuild by the rule
        starts = {b.pos: b for b in seg_batches}
        ib = _read(stem + ".index") or b""
        tb = _read(stem + ".timeindex") or b""
        if len(ib) % 8:
            problems.append(f"C5: {base:020d}.index size {len(ib)}")
        prev = (-1, -1)
        for i in range(0, len(ib) - len(ib) % 8, 8):
            rel, ipos = (
                int.from_bytes(ib[i : i + 4], "big", signed=True),
                int.from_bytes(ib[i + 4 : i + 8], "big", signed=True),
            )
            b = starts.get(ipos)
            if b is None or b.last != base + rel:
                problems.append(
                    f"C5: {base:020d}.index entry ({rel}, {ipos}) is not a batch start with that last offset"
                )
            if rel <= prev[0] or ipos <= prev[1]:
                problems.append(f"C5: {base:020d}.index not strictly increasing at entry {i // 8}")
            prev = (rel, ipos)
        if len(tb) % 12:
            problems.append(f"C5: {base:020d}.timeindex size {len(tb)}")
        # A time entry is (running max timestamp, last offset of the batch that first reached it).
        running: dict[int, int] = {}
        m = -1
        for b in seg_batches:
            if b.max_ts > m:
                m = b.max_ts
                running[b.last] = m
        prev_t: tuple[int, int] | None = None
        for i in range(0, len(tb) - len(tb) % 12, 12):
            ts, rel = (
                int.from_bytes(tb[i : i + 8], "big", signed=True),
                int.from_bytes(tb[i + 8 : i + 12], "big", signed=True),
            )
            if prev_t is not None and (ts <= prev_t[0] or rel < prev_t[1]):
                problems.append(f"C5: {base:020d}.timeindex not monotonic at entry {i // 12}")
            if seg_batches and running.get(base + rel) != ts:
                problems.append(
                    f"C5: {base:020d}.timeindex entry ({ts}, {base + rel}) is not where the segment's max timestamp was reached"
                )
            prev_t = (ts, rel)
        want_i, want_t = _expected_indexes(base, seg_batches, index_interval_bytes, sealed=k + 1 < len(bases))
        if k + 1 < len(bases):
            continue  # exact comparison only for the last segment, which recovery rebuilt
        if ib != want_i:
            mism.append(f"{base:020d}.index differs from a rebuild ({len(ib) // 8} vs {len(want_i) // 8} entries)")
        if tb != want_t:
            mism.append(
                f"{base:020d}.timeindex differs from a rebuild ({len(tb) // 12} vs {len(want_t) // 12} entries)"
            )
    leo = expected if expected is not None else log_start
    if bases and not bases[0] <= log_start <= leo:
        problems.append(f"C4: log start {log_start} outside [{bases[0]}, {leo}]")
    return Scan(log_start, leo, segments, batches, order, problems, mism, total)


@dataclass
class CheckResult:
    leo: int
    log_start: int
    records: int
    lost: list[int] = field(default_factory=list)  # bases of acked batches not found intact
    lost_records: int = 0
    lost_window: int = 0  # offsets between the last acked record and the recovered log end
    retained_away: int = 0  # acked batches below the log start (retention)
    problems: list[str] = field(default_factory=list)
    hash_after: str = ""
    data_hash_after: str = ""  # the same without index files
    segments: int = 0


def check_log(
    path: str,
    config: LogConfig,
    acked: dict[int, Ack],
    *,
    exact_indexes: bool = True,
    retention: bool = False,
    boot_id: str | None = None,
    timestamp_probes: int = 200,
    recover_again: bool = True,
) -> CheckResult:
    """T1's checks C1-C5 on a recovered directory, and C7 by recovering it once more.

    ``acked`` maps base offset -> Ack. With ``recover_again`` the caller must have
    recovered the directory already in another process (which left it unclean); this
    opens a writer here, which recovers again, and the tree hash after that is returned
    in ``hash_after`` for the caller to compare.
    """
    scan = scan_dir(path, config.index_interval_bytes, config.max_batch_bytes)
    res = CheckResult(scan.leo, scan.log_start, 0, problems=list(scan.problems), segments=len(scan.segments))
    if exact_indexes:
        res.problems += [f"C5: {m}" for m in scan.index_mismatch]
    # C1: every acked batch present at its offset, byte-identical
    for base, ack in sorted(acked.items()):
        if ack.last < scan.log_start:
            if retention:
                res.retained_away += 1
                continue
        b = scan.batches.get(base)
        if b is None or b.last != ack.last or b.digest != ack.digest:
            res.lost.append(base)
            res.lost_records += ack.last - ack.base + 1
    if res.lost:  # the caller decides whether loss is a failure (it is not for D0 power cuts)
        res.lost_window = max(a.last + 1 for a in acked.values()) - scan.leo
    # C4: contiguous from the log start (scan_dir checks segment joins; here the whole chain)
    nxt = None
    for base in scan.order:
        b = scan.batches[base]
        if nxt is not None and base != nxt:
            res.problems.append(f"C4: batch {base} follows {nxt}")
        nxt = b.last + 1
    if scan.order and scan.batches[scan.order[0]].base > scan.log_start and scan.log_start != scan.segments[0][0]:
        res.problems.append("C4: first batch starts after the log start")
    res.records = sum(b.last - b.base + 1 for b in scan.batches.values() if b.last >= scan.log_start)
    if recover_again:
        env_boot = None
        if boot_id:
            from logq.storage import state as state_mod

            env_boot, state_mod.boot_id = state_mod.boot_id, (lambda: boot_id)
        try:
            w = PartitionLog(path, config)
            res.hash_after = tree_hash(path)
            res.data_hash_after = tree_hash(path, indexes=False)
            w.close()
        finally:
            if env_boot is not None:
                from logq.storage import state as state_mod

                state_mod.boot_id = env_boot
    # C2, C5 through the API of a reader in this process
    res.problems += _api_checks(path, config, scan, timestamp_probes)
    return res


def _api_checks(path: str, config: LogConfig, scan: Scan, probes: int) -> list[str]:
    out: list[str] = []
    log = PartitionLog(path, config, readonly=True)
    try:
        if log.log_end_offset != scan.leo or log.log_start_offset != scan.log_start:
            out.append(
                f"API: log range [{log.log_start_offset}, {log.log_end_offset}) but files hold [{scan.log_start}, {scan.leo})"
            )
        live = [b for b in scan.order if scan.batches[b].last >= scan.log_start]
        off, i = (scan.log_start if live else scan.leo), 0
        while off < scan.leo:
            try:
                fr = log.read(off, 256 * 1024)
            except LogqError as e:
                out.append(f"C2: read({off}) raised {e}")
                break
            if not fr.headers:
                out.append(f"C2: read({off}) returned nothing before the end {scan.leo}")
                break
            recs = fr.records()
            j = 0
            for h in fr.headers:
                n = h.last_offset_delta + 1
                b = scan.batches.get(h.base_offset)
                if b is None or i >= len(live) or live[i] != h.base_offset:
                    out.append(f"C2: read returned a batch at {h.base_offset} the files do not have there")
                elif records_digest(record_tuples(recs[j : j + n])) != b.digest:
                    out.append(f"C2: batch {h.base_offset} read back differently")
                j += n
                i += 1
            off = fr.next_offset
        # C5: lookups for sampled offsets start at the batch that holds them
        rng = random.Random(scan.leo)
        if live:
            lo = scan.batches[live[0]].base
            for target in (
                {rng.randrange(lo, scan.leo) for _ in range(min(200, scan.leo - lo))} if scan.leo > lo else ()
            ):
                try:
                    fr = log.read(target, 1)
                except LogqError as e:
                    out.append(f"C2: read({target}) raised {e}")
                    break
                if not fr.headers or not fr.headers[0].base_offset <= target <= fr.headers[0].last_offset:
                    out.append(f"C5: read({target}) did not start at the batch holding it")
                    break
        # C5: offset_for_timestamp equals a brute-force scan
        pairs = [(b.base + k, t) for base in live for b in (scan.batches[base],) for k, t in enumerate(b.timestamps)]
        pairs = [(o, t) for o, t in pairs if o >= scan.log_start]
        if pairs:
            pm, m = [], None
            for _, t in pairs:
                m = t if m is None or t > m else m
                pm.append(m)
            ts_all = [t for _, t in pairs]
            targets = {min(ts_all) - 1, max(ts_all), max(ts_all) + 1}
            targets |= {rng.choice(ts_all) + rng.choice((-1, 0, 0, 1)) for _ in range(probes)}
            for t in sorted(targets):
                k = bisect.bisect_left(pm, t)
                want = pairs[k][0] if k < len(pairs) else None
                try:
                    got = log.offset_for_timestamp(t)
                except LogqError as e:
                    out.append(f"C5: offset_for_timestamp({t}) raised {e}")
                    break
                if got != want:
                    out.append(f"C5: offset_for_timestamp({t}) = {got}, brute force {want}")
                    break
    finally:
        log.close()
    return out


# ------------------------------------------------------------------ kill cycles (T1)
def inject_torn_tail(path: str, rng: random.Random) -> int:
    """Simulate a writer killed mid-pwrite: append part of a valid next batch to the tail.

    Take the partition's op lock like a writer would. Returns the bytes written.
    """
    from logq.codec.batch import encode_batch
    from logq.storage import files as _fs

    lock = _fs.FileLock(os.path.join(path, ".lock"))
    try:
        lock.acquire()
        scan = scan_dir(path, 0)
        if not scan.segments:
            return 0
        base, size = scan.segments[-1]
        recs = [(None, rng.randbytes(rng.choice((10, 300, 5000))), [("src", b"torn")], int(time.time() * 1000))]
        batch = encode_batch(recs, scan.leo)
        cut = rng.randrange(1, len(batch))
        with open(os.path.join(path, f"{base:020d}.log"), "r+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() != size:
                return 0
            f.write(batch[:cut])
        return cut
    finally:
        lock.close()


@dataclass
class CycleStats:
    kills: int = 0
    targeted: dict[str, int] = field(default_factory=dict)
    acked_batches: int = 0
    acked_records: int = 0
    lost_records: int = 0
    retained_away: int = 0
    recovery_ms: list[float] = field(default_factory=list)
    torn_tails: int = 0
    problems: list[str] = field(default_factory=list)

    def merge(self, o: CycleStats) -> None:
        self.kills += o.kills
        for k, v in o.targeted.items():
            self.targeted[k] = self.targeted.get(k, 0) + v
        self.acked_batches += o.acked_batches
        self.acked_records += o.acked_records
        self.lost_records += o.lost_records
        self.retained_away += o.retained_away
        self.recovery_ms += o.recovery_ms
        self.torn_tails += o.torn_tails
        self.problems += o.problems


def kill_chain(
    path: str,
    config: dict[str, Any],
    *,
    kills: int,
    seed: int,
    logdir: str,
    site: str | None = None,
    site_max_n: int = 40,
    torn_tail_rate: float = 0.3,
    kill_ms: tuple[float, float] = (5, 800),
    retention: bool = False,
) -> CycleStats:
    """Run ``kills`` writer processes on one directory, each killed (randomly, or at
    ``site``), recover each time in a fresh process and check C1-C5 and C7."""
    rng = random.Random(seed)
    cfg = LogConfig(**config)
    acked: dict[int, Ack] = {}
    st = CycleStats()
    for k in range(kills):
        crash_at = f"{site}:{rng.randint(1, site_max_n)}" if site else None
        w = Child(
            "writer",
            {"path": path, "config": config, "seed": rng.randrange(1 << 30), "wid": k, "run_s": 60.0},
            logdir=logdir,
            crash_at=crash_at,
        )
        ready = w.wait_for("R", 120)
        if site:
            rc = w.wait(120)
        else:
            if ready:
                time.sleep(rng.uniform(*kill_ms) / 1000)
            rc = w.kill()
        where = f"kill {k} ({crash_at or 'random'})"
        if rc != SIGKILL_RC:
            st.problems.append(f"{where}: writer exited with {rc}, not by SIGKILL: {w.stderr()}")
            break
        st.kills += 1
        if site:
            st.targeted[site] = st.targeted.get(site, 0) + 1
        for a in w.acks:
            old = acked.get(a.base)
            if old is not None:
                st.problems.append(f"{where}: offset {a.base} acknowledged twice ({old.digest} then {a.digest})")
            acked[a.base] = a
            st.acked_batches += 1
            st.acked_records += a.last - a.base + 1
        if os.path.isdir(path) and rng.random() < torn_tail_rate and inject_torn_tail(path, rng):
            st.torn_tails += 1
        if not os.path.isdir(path):
            continue
        rec = recover_in_child(path, config, logdir=logdir)
        if "rc" in rec:
            st.problems.append(f"{where}: recovery died with {rec['rc']}: {rec.get('stderr')}")
            break
        st.recovery_ms.append(rec["ms"])
        # After an unclean shutdown recovery rebuilt the last segment's indexes: they must
        # equal a rebuild by the rule byte for byte (a clean open keeps and checks them).
        res = check_log(path, cfg, acked, exact_indexes=not rec["report"]["clean"], retention=retention)
        st.lost_records += res.lost_records
        st.retained_away += res.retained_away
        if res.lost:
            res.problems.append(
                f"C1: {len(res.lost)} acked batches ({res.lost_records} records) lost or changed, first at {res.lost[0]}"
            )
        # C7. When the writer died before it marked the log unclean (meta-before-rename:1),
        # the first open legitimately took the clean path and kept the active segment's
        # close-time time-index entry, which the next (full) recovery's rebuild drops.
        if rec["report"]["clean"] and res.data_hash_after != rec["data_hash"]:
            res.problems.append("C7: recovering after a clean-path open changed the data or state files")
        if not rec["report"]["clean"] and res.hash_after != rec["hash"]:
            res.problems.append("C7: recovering a second time changed the files")
        if rec["corruption"]:
            res.problems.append(f"recovery reported corruption after a process crash: {rec['corruption']}")
        st.problems += [f"{where}: {p}" for p in res.problems]
        if res.problems:
            break
        # C3: the next append gets last offset + 1
        with PartitionLog(path, cfg) as log:
            recs = make_batch(rng, 1000 + k, 0, int(time.time() * 1000), True)
            r = log.append(recs)
            if r.base_offset != res.leo:
                st.problems.append(f"{where}: next append got {r.base_offset}, log end was {res.leo}")
            acked[r.base_offset] = Ack(-1, k, r.base_offset, r.last_offset, records_digest(recs), 0)
        for base in [b for b, a in acked.items() if a.last < res.log_start]:
            del acked[base]
    return st


def crashed_writer_with_torn_tail(
    path: str, config: dict[str, Any], rng: random.Random, logdir: str, min_acks: int = 20
) -> dict[int, Ack]:
    """A writer killed after ``min_acks`` acks, then a torn batch appended to its tail."""
    w = Child("writer", {"path": path, "config": config, "seed": rng.randrange(1 << 30), "run_s": 60.0}, logdir=logdir)
    if not w.wait_for("R", 120):
        raise AssertionError(f"writer died while opening: {w.stderr()}")
    w.wait_acks(min_acks, 60)
    time.sleep(rng.uniform(0, 0.2))
    if w.kill() != SIGKILL_RC:
        raise AssertionError(f"writer ended by itself: {w.stderr()}")
    if inject_torn_tail(path, rng) <= 0:
        raise AssertionError("could not append a torn tail")
    return {a.base: a for a in w.acks}


RECOVERY_SITES = (
    "meta-before-rename",
    "recovery-after-truncate",
    "recovery-after-index-rebuild",
    "recovery-before-state",
)


def recovery_crash_cycle(
    path: str, config: dict[str, Any], sites: Sequence[str], rng: random.Random, logdir: str
) -> list[str]:
    """Crash a writer, tear its tail; keep a copy recovered once as the reference; crash
    the recovery of the original at each of ``sites`` in turn (each a crash during the
    recovery of a crashed recovery), recover it fully and compare: same files, nothing
    acknowledged lost. Returns the problems found."""
    problems: list[str] = []
    acked = crashed_writer_with_torn_tail(path, config, rng, logdir)
    ref = path + ".ref"
    shutil.rmtree(ref, ignore_errors=True)
    shutil.copytree(path, ref)
    want = recover_in_child(ref, config, logdir=logdir)
    if "rc" in want:
        return [f"reference recovery died: {want}"]
    if want["report"]["bytes_truncated"] <= 0:
        problems.append("the torn tail was not cut")
    for site in sites:
        died = recover_in_child(path, config, logdir=logdir, crash_at=f"{site}:1")
        if died.get("rc") != SIGKILL_RC:
            problems.append(f"recovery did not reach {site}: {died}")
    got = recover_in_child(path, config, logdir=logdir)
    if "rc" in got:
        return problems + [f"recovery after crashed recoveries died: {got}"]
    if got["hash"] != want["hash"]:
        problems.append(f"crashed recoveries ({', '.join(sites)}) then a full one differ from one recovery")
    if (got["start"], got["end"]) != (want["start"], want["end"]):
        problems.append(f"log range {got['start']}..{got['end']} vs {want['start']}..{want['end']}")
    res = check_log(path, LogConfig(**config), acked, retention="retention_bytes" in config)
    problems += res.problems
    if res.lost:
        problems.append(f"C1: {len(res.lost)} acked batches lost")
    if res.hash_after != want["hash"]:
        problems.append("C7: a second recovery changed the files")
    shutil.rmtree(ref, ignore_errors=True)
    return problems


def readers_under_churn(
    path: str,
    config: dict[str, Any],
    *,
    generations: int,
    readers: int,
    seed: int,
    logdir: str,
    kill_s: tuple[float, float] = (0.2, 0.8),
) -> dict[str, Any]:
    """T9: reader processes read random offsets while writer generations roll, delete by
    retention and die with torn tails that the next writer's recovery cuts in place.

    Returns figures and problems; a reader killed by SIGBUS/SIGSEGV is a problem."""
    rng = random.Random(seed)
    cfg = LogConfig(**config)
    PartitionLog(path, cfg).close()
    run_s = 3600.0
    stop = os.path.join(logdir, f"readers-stop-{seed}")
    if os.path.exists(stop):
        os.unlink(stop)
    rs = [
        Child(
            "random_reader",
            {"path": path, "config": config, "seed": seed * 100 + i, "run_s": run_s, "stop_file": stop},
            logdir=logdir,
            capture_stdout=True,
        )
        for i in range(readers)
    ]
    acks: list[Ack] = []
    problems: list[str] = []
    truncations = 0
    for g in range(generations):
        w = Child(
            "writer",
            {"path": path, "config": config, "seed": rng.randrange(1 << 30), "run_s": 60.0, "wid": g},
            logdir=logdir,
        )
        if not w.wait_for("R", 120):
            problems.append(f"generation {g}: writer died opening: {w.stderr()}")
            break
        time.sleep(rng.uniform(*kill_s))
        if w.kill() != SIGKILL_RC:
            problems.append(f"generation {g}: writer ended by itself")
        acks += w.acks
        if inject_torn_tail(path, rng):
            truncations += 1
    with open(stop, "w"):
        pass
    PartitionLog(path, cfg).close()
    counts: dict[str, int] = {}
    fatal = 0
    for r in rs:
        rc = r.wait(300)
        out = r.proc.stdout.read().decode() if r.proc.stdout else ""
        if rc in FATAL_SIGNAL_RCS:
            fatal += 1
            problems.append(f"reader died of signal {-rc}: {r.stderr()[-500:]}")
            continue
        try:
            got = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            problems.append(f"reader exit {rc} without a summary: {r.stderr()[-500:]}")
            continue
        for k, v in got["counts"].items():
            counts[k] = counts.get(k, 0) + v
        problems += [f"reader: {e}" for e in got["errors"][:5]]
    scan = scan_dir(path, cfg.index_interval_bytes)
    problems += scan.problems
    lost = [
        a.base
        for a in acks
        if a.last >= scan.log_start and (scan.batches.get(a.base) is None or scan.batches[a.base].digest != a.digest)
    ]
    if lost:
        problems.append(f"C1: {len(lost)} acked batches lost, first {lost[0]}")
    return {
        "generations": generations,
        "truncations": truncations,
        "fatal_signals": fatal,
        "counts": counts,
        "log_start": scan.log_start,
        "acked_batches": len(acks),
        "problems": problems,
    }


def contention_run(
    path: str,
    config: dict[str, Any],
    *,
    seconds: float,
    writers: int,
    seed: int,
    logdir: str,
    kill_every_s: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Several writer processes and a follower on one partition; optionally kill -9 a
    random writer now and then (and tear its tail) and start a new one in its place.

    Checks: every ack present exactly once, offsets contiguous, each writer's batches in
    its own order, at most one unacknowledged batch per killed writer, and the follower
    saw exactly the log, in order."""
    rng = random.Random(seed)
    PartitionLog(path, LogConfig(**config)).close()
    wstop, fstop = os.path.join(logdir, f"wstop-{seed}"), os.path.join(logdir, f"fstop-{seed}")
    for f in (wstop, fstop):
        if os.path.exists(f):
            os.unlink(f)
    follower = Child("follower", {"path": path, "config": config, "stop_file": fstop}, logdir=logdir)
    wid = 0
    live: list[Child] = []
    done: list[Child] = []

    def start() -> None:
        nonlocal wid
        live.append(
            Child(
                "writer",
                {
                    "path": path,
                    "config": config,
                    "seed": rng.randrange(1 << 30),
                    "wid": wid,
                    "run_s": seconds + 600,
                    "stop_file": wstop,
                },
                logdir=logdir,
            )
        )
        wid += 1

    for _ in range(writers):
        start()
    for w in live:  # the clock starts once every writer is appending
        if not w.wait_for("R", 120):
            raise AssertionError(f"writer died opening: {w.stderr()}")
    killed, torn = 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if kill_every_s is None:
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))
            continue
        time.sleep(rng.uniform(*kill_every_s))
        victim = live.pop(rng.randrange(len(live)))
        victim.kill()
        done.append(victim)
        killed += 1
        if rng.random() < 0.5 and inject_torn_tail(path, rng):
            torn += 1
        start()
    with open(wstop, "w"):
        pass
    problems: list[str] = []
    for w in live:
        rc = w.wait(120)
        if rc != 0:
            problems.append(f"writer exit {rc}: {w.stderr()[-500:]}")
    allw = done + live
    acks = [a for w in allw for a in w.acks]
    scan = scan_dir(path, config.get("index_interval_bytes", 4096))
    problems += scan.problems
    by_base: dict[int, Ack] = {}
    for a in acks:
        if a.base in by_base:
            problems.append(f"offset {a.base} acknowledged twice")
        by_base[a.base] = a
        b = scan.batches.get(a.base)
        if b is None or (b.last, b.digest) != (a.last, a.digest):
            problems.append(f"C1: acked batch {a.base} of writer {a.wid} lost")
    if not acks:
        problems.append("no writer acknowledged anything")
    extra = [b for b in scan.order if b not in by_base]
    if len(extra) > killed:
        problems.append(f"{len(extra)} unacknowledged batches but only {killed} writers were killed")
    for w in allw:
        mine = [a.base for a in sorted(w.acks, key=lambda a: a.seq)]
        if mine != sorted(mine):
            problems.append("a writer's batches are out of its order")
    with open(fstop + ".tmp", "w") as f:
        f.write(str(scan.leo))
    os.replace(fstop + ".tmp", fstop)
    rc = follower.wait(300)
    seen = [int(ln.split()[1]) for ln in follower.lines if ln.startswith("B ")]
    if rc != 0:
        problems.append(f"follower exit {rc}: {follower.stderr()[-500:]}")
    elif seen != scan.order:
        problems.append("the follower did not see exactly the log in order")
    return {
        "writers": wid,
        "killed": killed,
        "torn": torn,
        "acked_batches": len(acks),
        "acked_records": sum(a.last - a.base + 1 for a in acks),
        "unacked_batches": len(extra),
        "leo": scan.leo,
        "problems": problems[:20],
    }


def in_namespace(name: str, args: dict[str, Any], timeout: float = 7200) -> dict[str, Any]:
    """Run a child entry point in a private mount namespace (``unshare``); its JSON.

    ``{"skip": reason}`` when mounting is impossible here."""
    if os.geteuid() != 0:
        return {"skip": "needs root to mount"}
    for tool in ("unshare", "mount", "findmnt", "cp"):
        if shutil.which(tool) is None:
            return {"skip": f"needs {tool}"}
    cmd = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        sys.executable,
        os.path.join(HERE, "_children.py"),
        name,
        json.dumps(args),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), cwd=REPO, timeout=timeout)
    out = p.stdout.strip().splitlines()
    if p.returncode == 77:
        return {"skip": json.loads(out[-1])["skip"] if out else "mount not possible here"}
    if p.returncode != 0 and not out:
        if "unshare failed" in p.stderr or "Operation not permitted" in p.stderr:
            return {"skip": f"unshare --mount not permitted: {p.stderr.strip()[:200]}"}
        return {"rc": p.returncode, "stderr": p.stderr[-3000:], "error": f"{name} exited {p.returncode}"}
    if not out:
        return {"rc": p.returncode, "stderr": p.stderr[-3000:], "error": f"{name} printed nothing"}
    res = json.loads(out[-1])
    res["rc"] = p.returncode
    res["stderr"] = p.stderr[-3000:]
    return res


def percentile(xs: Sequence[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * (len(s) - 1)))))]


def main(argv: list[str]) -> None:
    CHILDREN[argv[1]](json.loads(argv[2]))


if __name__ == "__main__":
    main(sys.argv)
