"""The systems ``benchmarks/compare.py`` measures: logq in each fsync mode and its peers.

Each system has a ``name``, a ``durability`` sentence printed next to every figure, and
``start(work_dir)`` / ``run(records, size, seek)`` / ``latency(seconds, work_dir)`` /
``stop()``:

- logq in each fsync mode (never / interval / always), through Producer.send_batch and
  Consumer.poll, plus Producer.send for fsync=never (the workloads of
  logq/cli/perf_workloads.py, the same as ``logq perf``);
- a textbook SQLite queue (stdlib sqlite3, WAL, one table ``q(id INTEGER PRIMARY KEY, v
  BLOB)``, transactions of 1,000 inserts, consumed by rowid ranges), with
  synchronous=NORMAL and =FULL;
- Redis Streams through redis-py with pipelining, only if the ``redis`` module and a
  ``redis-server`` binary exist: the server is started on 127.0.0.1 on a free port in a
  temporary directory (AOF, appendfsync everysec) and stopped at the end.

The latency runs of every system go through ``run_cross_process``: a spawned consumer and
a spawned producer, each value carrying its ``time.monotonic_ns()`` send time.
"""

from __future__ import annotations

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

__all__ = [
    "LATENCY_RATE",
    "SYSTEM_KEYS",
    "LogqSystem",
    "SqliteSystem",
    "RedisSystem",
    "make_systems",
    "redis_unavailable",
]

LATENCY_RATE = 5000.0
_SQL_BATCH = 1000
_SQL_IDLE_S = 0.0005  # the textbook polling consumer sleeps this long when it finds nothing


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
