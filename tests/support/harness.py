"""The parent side of the reliability tests' child processes (tests.support.children).

:class:`Child` spawns a child program with an ack pipe drained by a thread and its stderr
kept in a file; :func:`recover_in_child` and :func:`in_namespace` run one to completion. On
top of them the cycles the tests and tools/soak.py repeat: kill chains (T1), crashes during
recovery, readers under churn (T9) and writer contention. Every cycle checks the result with
tests.support.oracle.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from logq.codec.batch import encode_batch
from logq.config import LogConfig
from logq.storage import files
from logq.storage.log import PartitionLog

from tests.support import REPO as _REPO_PATH
from tests.support.oracle import check_log, scan_partition, seg_path
from tests.support.workload import Ack, make_batch, records_digest

REPO = str(_REPO_PATH)
CHILD_MODULE = "tests.support.children"
SIGKILL_RC = -signal.SIGKILL
FATAL_SIGNAL_RCS = {-signal.SIGBUS, -signal.SIGSEGV, -signal.SIGABRT, -signal.SIGILL, -signal.SIGFPE}

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
        cmd = [*prefix, sys.executable, "-m", CHILD_MODULE, name, json.dumps(args)]
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
                "-m",
                CHILD_MODULE,
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


# ------------------------------------------------------------------ kill cycles (T1)
def inject_torn_tail(path: str, rng: random.Random) -> int:
    """Simulate a writer killed mid-pwrite: append part of a valid next batch to the tail.

    Take the partition's op lock like a writer would. Returns the bytes written.
    """
    lock = files.FileLock(os.path.join(path, ".lock"))
    try:
        lock.acquire()
        scan = scan_partition(path, 0)
        if not scan.segments:
            return 0
        base, size = scan.segments[-1]
        recs = [(None, rng.randbytes(rng.choice((10, 300, 5000))), [("src", b"torn")], int(time.time() * 1000))]
        batch = encode_batch(recs, scan.leo)
        cut = rng.randrange(1, len(batch))
        with open(seg_path(path, base), "r+b") as f:
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
    scan = scan_partition(path, cfg.index_interval_bytes)
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
    scan = scan_partition(path, config.get("index_interval_bytes", 4096))
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
        "-m",
        CHILD_MODULE,
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
