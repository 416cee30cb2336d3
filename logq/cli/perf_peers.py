"""``logq perf compare``: the same workloads against logq and what users would pick instead.

Systems, each with its durability stated next to every figure:

- logq in each fsync mode (never / interval / always), through Producer.send_batch and
  Consumer.poll, plus Producer.send for fsync=never;
- a textbook SQLite queue (stdlib sqlite3, WAL, one table ``q(id INTEGER PRIMARY KEY, v
  BLOB)``, transactions of 1,000 inserts, consumed by rowid ranges), with
  synchronous=NORMAL and =FULL;
- Redis Streams through redis-py with pipelining, only if the ``redis`` module and a
  ``redis-server`` binary exist: the server is started on 127.0.0.1 on a free port in a
  temporary directory (AOF, appendfsync everysec) and stopped at the end.

Workloads: N records of 100 bytes produced then consumed, N/10 records of 1 KiB, seek to
the middle and read 1,000, send-to-receive latency at 5,000 records/s across two processes.
Runs are interleaved (run 1 of every system, then run 2, ...) so that drifting load on a
shared machine hits every system alike; each figure is the median of the runs, with min
and max.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import click
import numpy as np

from logq.cli import perf_workloads as P

LATENCY_RATE = 5000.0
MARK_BEGIN = "<!-- perf:begin -->"
MARK_END = "<!-- perf:end -->"
_SQL_BATCH = 1000
_SQL_IDLE_S = 0.0005  # the textbook polling consumer sleeps this long when it finds nothing

# workload name -> (unit, higher is better)
WORKLOADS: dict[str, tuple[str, bool]] = {
    "produce 100 B": ("records/s", True),
    "produce 100 B, send()": ("records/s", True),
    "consume 100 B": ("records/s", True),
    "produce 1 KiB": ("MB/s", True),
    "consume 1 KiB": ("MB/s", True),
    "seek to middle + read 1,000": ("us", False),
    "latency p50 at 5,000/s": ("us", False),
    "latency p99 at 5,000/s": ("us", False),
}


def _middle_count(records: int) -> int:
    """Records read after seeking to the middle: 1,000, or what is left of a small log."""
    return min(1000, records - records // 2)


class _TempDirSystem:
    """A system under test that keeps its data in a fresh temporary directory."""

    dir = ""

    def start(self, work_dir: str | None) -> None:
        self.dir = tempfile.mkdtemp(prefix="logq-cmp-", dir=work_dir)

    def stop(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------- logq
class LogqSystem(_TempDirSystem):
    def __init__(self, fsync: str) -> None:
        self.fsync = fsync
        self.name = f"logq ({fsync})"
        self.durability = {
            "never": "fsync=never: page cache; survives a process crash, not a power loss",
            "interval": "fsync=interval: fdatasync every 1 s in the background",
            "always": "fsync=always: fdatasync before every append returns",
        }[fsync]
        self.dir = ""

    def run(self, records: int, size: int, seek: bool) -> dict[str, float]:
        topic = f"t{size}"
        p = P.run_produce(self.dir, topic, records, size, fsync=self.fsync, mode="send_batch")
        c = P.run_consume(self.dir, topic, records, timeout_ms=10_000)
        out = {
            "produce": p["records_per_sec"],
            "produce_mb": p["mb_per_sec"],
            "consume": c["nMsg.sec"],
            "consume_mb": c["MB.sec"],
        }
        if seek:
            out["seek"] = self._seek_middle(topic, records)
        return out

    def _seek_middle(self, topic: str, records: int) -> float:
        from logq.client.consumer import Consumer, TopicPartition

        with Consumer(self.dir, topic, auto_offset_reset="earliest", max_poll_records=1000) as c:
            want = _middle_count(records)
            t0 = time.perf_counter()
            c.seek(TopicPartition(topic, 0), records // 2)
            got, deadline = 0, t0 + 30
            while got < want and time.perf_counter() < deadline:
                got += len(c.poll(timeout=1.0, max_records=want - got))
            return (time.perf_counter() - t0) * 1e6

    def send_mode(self, records: int) -> float:
        return P.run_produce(self.dir, "tsend", records, 100, fsync=self.fsync, mode="send")["records_per_sec"]

    def latency(self, seconds: float, work_dir: str | None) -> dict[str, float]:
        s = P.run_latency(LATENCY_RATE, seconds, fsync=self.fsync, work_dir=work_dir)
        return {"p50": s["p50_us"], "p99": s["p99_us"], "sent": s["records_sent"], "received": s["records_received"]}


# --------------------------------------------------------------------------- SQLite
def _sqlite_connect(path: str, synchronous: str) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None, timeout=30)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={synchronous}")
    con.execute("CREATE TABLE IF NOT EXISTS q (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
    return con


def _sqlite_latency_producer(path: str, synchronous: str, rate: float, count: int, size: int, sent: Any) -> None:
    con = _sqlite_connect(path, synchronous)
    pad = b"x" * max(0, size - 16)
    n = 0
    for i in P.paced(count, rate):
        con.execute("INSERT INTO q(v) VALUES (?)", (P.stamped_value(i, pad),))  # autocommit: one row
        n += 1
    con.close()
    sent.value = n


def _sqlite_latency_consumer(
    path: str, synchronous: str, count: int, budget_s: float, sent: Any, ready: Any, conn: Any
) -> None:
    con = _sqlite_connect(path, synchronous)
    lat = np.zeros(count, dtype=np.int64)
    got, last = 0, 0
    ready.set()
    deadline = time.monotonic() + budget_s
    while P.more_to_receive(got, count, sent) and time.monotonic() < deadline:
        rows = con.execute("SELECT id, v FROM q WHERE id > ? ORDER BY id LIMIT 1000", (last,)).fetchall()
        now = time.monotonic_ns()
        if not rows:
            time.sleep(_SQL_IDLE_S)
            continue
        for _rid, v in rows:
            if got < count:
                lat[got] = now - P.STAMP.unpack_from(v)[0]
                got += 1
        last = rows[-1][0]
    con.close()
    conn.send_bytes(lat[:got].tobytes())
    conn.close()


class SqliteSystem(_TempDirSystem):
    def __init__(self, synchronous: str) -> None:
        self.sync = synchronous
        self.name = f"SQLite ({synchronous})"
        self.durability = {
            "NORMAL": "WAL, synchronous=NORMAL: survives a process crash; fsync at checkpoints",
            "FULL": "WAL, synchronous=FULL: fsync at every commit (1,000 rows; 1 row in the latency run)",
        }[synchronous]
        self.dir = ""

    def run(self, records: int, size: int, seek: bool) -> dict[str, float]:
        path = os.path.join(self.dir, f"q{size}.db")
        con = _sqlite_connect(path, self.sync)
        try:
            pool = P.make_payloads(size)
            rows = [(pool[i % len(pool)],) for i in range(_SQL_BATCH)]
            t0 = time.perf_counter()
            for first in range(0, records, _SQL_BATCH):
                n = min(_SQL_BATCH, records - first)
                con.execute("BEGIN")
                con.executemany("INSERT INTO q(v) VALUES (?)", rows if n == _SQL_BATCH else rows[:n])
                con.execute("COMMIT")
            t1 = time.perf_counter()
            got = nbytes = last = 0
            while got < records:
                batch = con.execute("SELECT id, v FROM q WHERE id > ? ORDER BY id LIMIT 1000", (last,)).fetchall()
                if not batch:
                    break
                got += len(batch)
                nbytes += sum([len(v) for _, v in batch])
                last = batch[-1][0]
            t2 = time.perf_counter()
            out = {
                "produce": records / (t1 - t0),
                "produce_mb": records * size / P.MIB / (t1 - t0),
                "consume": got / (t2 - t1),
                "consume_mb": nbytes / P.MIB / (t2 - t1),
            }
            if seek:
                t0 = time.perf_counter()
                con.execute(
                    "SELECT id, v FROM q WHERE id > ? ORDER BY id LIMIT ?", (records // 2, _middle_count(records))
                ).fetchall()
                out["seek"] = (time.perf_counter() - t0) * 1e6
            return out
        finally:
            con.close()

    def latency(self, seconds: float, work_dir: str | None) -> dict[str, float]:
        path = os.path.join(self.dir, "latency.db")
        _sqlite_connect(path, self.sync).close()
        count = max(1, int(LATENCY_RATE * seconds))
        lat, sent = P.run_cross_process(
            _sqlite_latency_producer,
            (path, self.sync, LATENCY_RATE, count, 100),
            _sqlite_latency_consumer,
            (path, self.sync),
            count,
            seconds,
        )
        s = P.latency_summary(lat, "us")
        return {"p50": s["p50"], "p99": s["p99"], "sent": sent, "received": int(lat.size)}


# --------------------------------------------------------------------------- Redis
def redis_unavailable() -> str | None:
    """None when Redis Streams can be measured, else why not."""
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the 'redis' Python module is not installed (it is in logq's 'bench' extra)"
    if shutil.which("redis-server") is None:
        return "no redis-server binary on PATH (install the redis-server package)"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_client(port: int) -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=port)


def _redis_latency_producer(port: int, rate: float, count: int, size: int, sent: Any) -> None:
    r = _redis_client(port)
    pad = b"x" * max(0, size - 16)
    n = 0
    for i in P.paced(count, rate):
        r.xadd("latency", {b"v": P.stamped_value(i, pad)})
        n += 1
    r.close()
    sent.value = n


def _redis_latency_consumer(port: int, count: int, budget_s: float, sent: Any, ready: Any, conn: Any) -> None:
    r = _redis_client(port)
    lat = np.zeros(count, dtype=np.int64)
    got, last = 0, "0-0"
    ready.set()
    deadline = time.monotonic() + budget_s
    while P.more_to_receive(got, count, sent) and time.monotonic() < deadline:
        resp = r.xread({"latency": last}, count=1000, block=100)
        now = time.monotonic_ns()
        for _stream, entries in resp or []:
            for eid, fields in entries:
                if got < count:
                    lat[got] = now - P.STAMP.unpack_from(fields[b"v"])[0]
                    got += 1
                last = eid
    r.close()
    conn.send_bytes(lat[:got].tobytes())
    conn.close()


class RedisSystem:
    name = "Redis Streams"
    durability = "AOF, appendfsync everysec (redis-py, pipelines of 1,000)"

    def __init__(self) -> None:
        self.dir, self.port, self.proc, self.client = "", 0, None, None

    def start(self, work_dir: str | None) -> None:
        self.dir = tempfile.mkdtemp(prefix="logq-cmp-redis-", dir=work_dir)
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                self.dir,
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = _redis_client(self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                return
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise click.ClickException("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def run(self, records: int, size: int, seek: bool) -> dict[str, float]:
        r, key = self.client, f"s{size}"
        r.delete(key)
        pool = P.make_payloads(size)
        mid_id = None
        t0 = time.perf_counter()
        for first in range(0, records, _SQL_BATCH):
            pipe = r.pipeline(transaction=False)
            for i in range(first, min(first + _SQL_BATCH, records)):
                pipe.xadd(key, {b"v": pool[i % len(pool)]})
            ids = pipe.execute()
            if first <= records // 2 < first + len(ids):
                mid_id = ids[records // 2 - first]
        t1 = time.perf_counter()
        got = nbytes = 0
        last = "-"
        while got < records:
            entries = r.xrange(key, min=last, max="+", count=1000)
            if not entries:
                break
            got += len(entries)
            nbytes += sum([len(f[b"v"]) for _, f in entries])
            last = b"(" + entries[-1][0]
        t2 = time.perf_counter()
        out = {
            "produce": records / (t1 - t0),
            "produce_mb": records * size / P.MIB / (t1 - t0),
            "consume": got / (t2 - t1),
            "consume_mb": nbytes / P.MIB / (t2 - t1),
        }
        if seek and mid_id is not None:
            t0 = time.perf_counter()
            r.xrange(key, min=mid_id, max="+", count=_middle_count(records))
            out["seek"] = (time.perf_counter() - t0) * 1e6
        r.delete(key)
        return out

    def latency(self, seconds: float, work_dir: str | None) -> dict[str, float]:
        self.client.delete("latency")
        count = max(1, int(LATENCY_RATE * seconds))
        lat, sent = P.run_cross_process(
            _redis_latency_producer,
            (self.port, LATENCY_RATE, count, 100),
            _redis_latency_consumer,
            (self.port,),
            count,
            seconds,
        )
        s = P.latency_summary(lat, "us")
        return {"p50": s["p50"], "p99": s["p99"], "sent": sent, "received": int(lat.size)}


# --------------------------------------------------------------------------- the comparison
def _fmt(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


SYSTEM_KEYS = ("logq-never", "logq-interval", "logq-always", "sqlite-normal", "sqlite-full", "redis")


def make_systems(keys: Sequence[str]) -> tuple[list[Any], list[dict[str, str]]]:
    """The systems named by ``keys`` (see SYSTEM_KEYS), and the ones skipped with why."""
    systems: list[Any] = []
    skipped = []
    for key in keys:
        kind, _, variant = key.partition("-")
        if kind == "logq":
            systems.append(LogqSystem(variant))
        elif kind == "sqlite":
            systems.append(SqliteSystem(variant.upper()))
        else:
            why = redis_unavailable()
            if why is None:
                systems.append(RedisSystem())
            else:
                skipped.append({"system": RedisSystem.name, "reason": why})
    return systems, skipped


def disk_fdatasync_mb_s(work_dir: str | None, mib: int = 256) -> float | None:
    """The disk's sequential write bandwidth with fdatasync, measured by ``dd`` (MB/s)."""
    d = tempfile.mkdtemp(prefix="logq-dd-", dir=work_dir)
    try:
        t0 = time.perf_counter()
        done = subprocess.run(
            ["dd", "if=/dev/zero", f"of={os.path.join(d, 'dd.bin')}", "bs=1M", f"count={mib}", "conv=fdatasync"],
            capture_output=True,
            timeout=300,
        )
        secs = time.perf_counter() - t0
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return mib * (1 << 20) / secs / 1e6 if done.returncode == 0 else None


def run_compare(
    records: int,
    runs: int,
    latency_seconds: float,
    work_dir: str | None,
    progress: P.Progress | None = None,
    keys: Sequence[str] = SYSTEM_KEYS,
) -> dict[str, Any]:
    """Every workload on every available system; figures, ratios, seek growth, targets."""
    systems, skipped = make_systems(keys)
    big = max(1000, records // 10)
    dd_mb = disk_fdatasync_mb_s(work_dir)
    values: dict[tuple[str, str], list[float]] = {}
    notes: list[str] = []
    step = 0
    if progress is not None:
        progress.total = runs * len(systems) + 1

    def add(workload: str, system: Any, v: float) -> None:
        values.setdefault((workload, system.name), []).append(v)

    for run in range(runs):
        for s in systems:
            if progress is not None:
                progress.label = f"compare: run {run + 1}/{runs}, {s.name}"
                progress.update(step)
            s.start(work_dir)
            try:
                small = s.run(records, 100, seek=True)
                add("produce 100 B", s, small["produce"])
                add("consume 100 B", s, small["consume"])
                if "seek" in small:
                    add("seek to middle + read 1,000", s, small["seek"])
                if isinstance(s, LogqSystem) and s.fsync == "never":
                    add("produce 100 B, send()", s, s.send_mode(records))
                large = s.run(big, 1024, seek=False)
                add("produce 1 KiB", s, large["produce_mb"])
                add("consume 1 KiB", s, large["consume_mb"])
                if latency_seconds > 0:
                    lat = s.latency(latency_seconds, work_dir)
                    add("latency p50 at 5,000/s", s, lat["p50"])
                    add("latency p99 at 5,000/s", s, lat["p99"])
                    planned = max(1, int(LATENCY_RATE * latency_seconds))
                    if lat["sent"] < planned or lat["received"] < lat["sent"]:
                        notes.append(
                            f"{s.name}, latency run {run + 1}: {lat['sent']:,} of {planned:,} records sent "
                            f"(the producer could not keep 5,000/s), {lat['received']:,} received"
                        )
            finally:
                s.stop()
            step += 1
    if progress is not None:
        progress.label = "compare: seek growth"
        progress.update(step)
    seek = P.run_seek([max(1000, records // 10), records], targets=200, work_dir=work_dir)
    by_name = {s.name: s for s in systems}
    figures = []
    for workload, (unit, higher) in WORKLOADS.items():
        for s in systems:
            if (workload, s.name) in values:
                figures.append(
                    {
                        "workload": workload,
                        "system": s.name,
                        "durability": s.durability,
                        "unit": unit,
                        "higher_is_better": higher,
                        **P.spread(values[(workload, s.name)]),
                    }
                )
    med = {(f["workload"], f["system"]): f["median"] for f in figures}
    ratios = []
    logqs = [s.name for s in systems if isinstance(s, LogqSystem)]
    peers = [s.name for s in systems if not isinstance(s, LogqSystem)]
    for workload, (_unit, higher) in WORKLOADS.items():
        for lq in logqs:
            for peer in peers:
                a, b = med.get((workload, lq)), med.get((workload, peer))
                if a and b:
                    ratios.append({"workload": workload, "logq": lq, "peer": peer, "ratio": a / b if higher else b / a})
    return {
        "records": records,
        "records_1k": big,
        "runs": runs,
        "latency_seconds": latency_seconds,
        "figures": figures,
        "ratios": ratios,
        "seek": seek,
        "skipped": skipped,
        "notes": notes,
        "disk_fdatasync_mb_s": dd_mb,
        "targets": targets(med, ratios, seek, dd_mb),
        "durability": {n: s.durability for n, s in by_name.items()},
    }


def targets(
    med: dict[tuple[str, str], float],
    ratios: list[dict[str, Any]],
    seek: list[dict[str, Any]],
    dd_mb: float | None = None,
) -> list[dict[str, Any]]:
    """The issue's targets against the measured medians (never asserted, only reported)."""

    def m(workload: str, system: str = "logq (never)") -> float | None:
        return med.get((workload, system))

    def ratio(workload: str, lq: str, peer: str) -> float | None:
        return next((r["ratio"] for r in ratios if (r["workload"], r["logq"], r["peer"]) == (workload, lq, peer)), None)

    out = []

    def row(target: str, measured: str, met: bool | None) -> None:
        out.append({"target": target, "measured": measured, "met": met})

    def thr(target: str, workload: str, goal: float, unit: str) -> None:
        v = m(workload)
        row(
            target, "not measured" if v is None else f"{_fmt(v)} {unit} (fsync=never)", None if v is None else v >= goal
        )

    thr("produce >= 1,500,000 records/s (send_batch, 100 B)", "produce 100 B", 1.5e6, "records/s")
    thr("produce >= 500,000 records/s (send, 100 B)", "produce 100 B, send()", 5e5, "records/s")
    thr("consume >= 1,000,000 records/s (100 B)", "consume 100 B", 1e6, "records/s")
    pk, ck = m("produce 1 KiB"), m("consume 1 KiB")
    if pk is not None and ck is not None:
        row(
            "1 KiB values >= 500 MB/s",
            f"produce {_fmt(pk)} MB/s, consume {_fmt(ck)} MB/s (fsync=never)",
            pk >= 500 and ck >= 500,
        )
    ak = m("produce 1 KiB", "logq (always)")
    if ak is not None and dd_mb:
        row(
            "1 KiB, fsync=always >= 60% of the disk's fdatasync bandwidth (dd, same run)",
            f"{_fmt(ak)} MB/s = {100 * ak / dd_mb:.0f}% of dd's {_fmt(dd_mb)} MB/s",
            ak >= 0.6 * dd_mb,
        )
    p50, p99 = m("latency p50 at 5,000/s"), m("latency p99 at 5,000/s")
    if p50 is not None and p99 is not None:
        row(
            "cross-process latency p50 <= 100 us, p99 <= 1 ms",
            f"p50 {_fmt(p50)} us, p99 {_fmt(p99)} us (fsync=never)",
            p50 <= 100 and p99 <= 1000,
        )
    if len(seek) >= 2:
        a, b = seek[0], seek[-1]
        grow = b["offset_median_us"] / max(a["offset_median_us"], 1e-9)
        limit = 1.25 * math.log(b["records"]) / math.log(max(a["records"], 2))
        row(
            "seek <= 100 us, growing at most logarithmically",
            f"by offset {_fmt(a['offset_median_us'])} us at {a['records']:,} records, {_fmt(b['offset_median_us'])} us at "
            f"{b['records']:,} (x{grow:.2f}; log bound x{limit:.2f}); by timestamp {_fmt(b['timestamp_median_us'])} us",
            max(a["offset_median_us"], b["offset_median_us"], b["timestamp_median_us"]) <= 100 and grow <= limit,
        )
    for peer, lq, goal in (
        ("Redis Streams", "logq (interval)", 10),
        ("SQLite (NORMAL)", "logq (never)", 5),
        ("SQLite (FULL)", "logq (always)", 5),
    ):
        rp, rc = ratio("produce 100 B", lq, peer), ratio("consume 100 B", lq, peer)
        target = f">= {goal}x {peer} ({lq}, same durability class)"
        if rp is None or rc is None:
            row(target, "not measured", None)
        else:
            row(target, f"produce x{rp:.2f}, consume x{rc:.2f}", rp >= goal and rc >= goal)
    return out


def markdown(res: dict[str, Any], machine: dict[str, Any]) -> str:
    """The generated part of docs/benchmarks.md."""
    L = [
        f"Measured {machine['date']} by `logq perf compare` with {res['records']:,} records of 100 B, "
        f"{res['records_1k']:,} of 1 KiB, latency runs of {res['latency_seconds']:g} s (0: none); each figure is the "
        f"median of {res['runs']} runs (min and max beside it).",
        "",
        "| machine | |",
        "|---|---|",
    ]
    L += [f"| {k} | {v} |" for k, v in machine.items()]
    L += [
        "",
        "#### Results",
        "",
        "| workload | system | durability | median | min | max | unit |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for f in res["figures"]:
        L.append(
            f"| {f['workload']} | {f['system']} | {f['durability']} | {_fmt(f['median'])} | {_fmt(f['min'])} | "
            f"{_fmt(f['max'])} | {f['unit']} |"
        )
    peers = [
        f["system"] for f in res["figures"] if f["workload"] == "produce 100 B" and not f["system"].startswith("logq")
    ]
    if peers:
        L += [
            "",
            "#### Ratios",
            "",
            "How many times better logq is: logq / peer for throughput, peer / logq for times (> 1: logq wins).",
            "",
            "| workload | logq | " + " | ".join(f"vs {p}" for p in peers) + " |",
            "|---|---|" + "---:|" * len(peers),
        ]
        keys = []
        for r in res["ratios"]:
            if (r["workload"], r["logq"]) not in keys:
                keys.append((r["workload"], r["logq"]))
        for w, lq in keys:
            cells = [
                next(
                    (
                        f"x{r['ratio']:.2f}"
                        for r in res["ratios"]
                        if (r["workload"], r["logq"], r["peer"]) == (w, lq, p)
                    ),
                    "-",
                )
                for p in peers
            ]
            L.append(f"| {w} | {lq} | " + " | ".join(cells) + " |")
    L += [
        "",
        "#### Seek as the log grows (logq, by offset and by timestamp)",
        "",
        "| records | MB | segments | by offset, median us | min | max | by timestamp, median us | min | max |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in res["seek"]:
        L.append(
            f"| {s['records']:,} | {s['size_mb']:.1f} | {s['segments']} | {_fmt(s['offset_median_us'])} | "
            f"{_fmt(s['offset_min_us'])} | {_fmt(s['offset_max_us'])} | {_fmt(s['timestamp_median_us'])} | "
            f"{_fmt(s['timestamp_min_us'])} | {_fmt(s['timestamp_max_us'])} |"
        )
    L += ["", "#### Targets", "", "| target | measured | met |", "|---|---|---|"]
    for t in res["targets"]:
        L.append(f"| {t['target']} | {t['measured']} | {'-' if t['met'] is None else ('yes' if t['met'] else 'no')} |")
    for s in res["skipped"]:
        L += ["", f"Skipped {s['system']}: {s['reason']}."]
    if res["notes"]:
        L += ["", "Notes:", ""] + [f"- {n}." for n in res["notes"]]
    return "\n".join(L) + "\n"


def write_markdown(path: str, body: str) -> None:
    """Replace the text between the perf markers of ``path``, or write the whole file."""
    block = f"{MARK_BEGIN}\n{body}{MARK_END}\n"
    try:
        with open(path, encoding="utf-8") as f:
            old = f.read()
    except FileNotFoundError:
        old = ""
    i, j = old.find(MARK_BEGIN), old.find(MARK_END)
    if i >= 0 and j > i:
        new = old[:i] + block + old[j + len(MARK_END) :].lstrip("\n")
    else:
        new = block
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(new)
    os.replace(tmp, path)


def compare(
    *,
    quick: bool,
    records: int | None,
    runs: int,
    latency_seconds: float | None,
    markdown_file: str | None,
    work_dir: str | None,
    as_json: bool,
    systems: Sequence[str] = SYSTEM_KEYS,
) -> None:
    n = records or (20_000 if quick else 1_000_000)
    secs = (0.5 if quick else 5.0) if latency_seconds is None else latency_seconds
    from logq.cli.perf import machine_info

    machine = machine_info(work_dir)
    progress = P.Progress("compare", runs)
    why = redis_unavailable()
    if why is not None and "redis" in systems:
        click.echo(f"logq perf compare: skipping Redis Streams: {why}.", err=True)
    try:
        res = run_compare(n, runs, secs, work_dir, progress, systems)
    finally:
        progress.clear()
    body = markdown(res, machine)
    if markdown_file:
        write_markdown(markdown_file, body)
    if not as_json:
        click.echo(body, nl=False)
        return
    click.echo(json.dumps({"type": "machine", **machine}))
    for f in res["figures"]:
        click.echo(json.dumps({"type": "figure", **f}))
    for r in res["ratios"]:
        click.echo(json.dumps({"type": "ratio", **r}))
    for s in res["seek"]:
        click.echo(json.dumps({"type": "seek", **s}))
    for t in res["targets"]:
        click.echo(json.dumps({"type": "target", **t}))
    for s in res["skipped"]:
        click.echo(json.dumps({"type": "skipped", **s}))
    for n in res["notes"]:
        click.echo(json.dumps({"type": "note", "text": n}))
