"""The systems ``benchmarks/compare.py`` measures: logq in each fsync mode and its peers.

Each system has a ``name``, a ``durability`` sentence printed next to every figure, and
``start(work_dir)`` / ``run(records, size, seek)`` / ``latency(seconds, work_dir)`` /
``stop()``:

- logq in each fsync mode (never / interval / always), through Producer.send_batch and
  Consumer.poll, plus Producer.send for fsync=never (the workloads of
  logq/cli/perf_workloads.py, the same as ``logq perf``), a consumer group committing
  after every ``poll`` and every ``poll_columns``, and replays (``replay_from`` then the
  first record, then the next 1,000); each mode once with the compiled codec and once
  with the pure-Python one (``logq.codec.batch.use_implementation``, and
  ``LOGQ_PURE_PYTHON=1`` for the processes of the latency run);
- a textbook SQLite queue (stdlib sqlite3, WAL, one table ``q(id INTEGER PRIMARY KEY, v
  BLOB)``, transactions of 1,000 inserts, consumed by rowid ranges, replayed with
  ``WHERE id >= ? ORDER BY id LIMIT 1`` then ``LIMIT 1000``), with synchronous=NORMAL
  and =FULL;
- Redis Streams through redis-py with pipelining, only if the ``redis`` module and a
  ``redis-server`` binary exist: the server is started on 127.0.0.1 on a free port in a
  temporary directory (AOF, appendfsync everysec) and stopped at the end.

The latency runs of every system go through ``run_cross_process``: a spawned consumer and
a spawned producer, each value carrying its ``time.monotonic_ns()`` send time.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
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
    "compiled_codec_error",
    "make_systems",
    "redis_unavailable",
    "replay_offsets",
]

LATENCY_RATE = 5000.0
_SQL_BATCH = 1000
_SQL_IDLE_S = 0.0005  # the textbook polling consumer sleeps this long when it finds nothing


REPLAYS = 21  # replays per run, each from a random offset; a run's figure is their median


def _middle_count(records: int) -> int:
    """Records read after seeking to the middle: 1,000, or what is left of a small log."""
    return min(1000, records - records // 2)


def replay_offsets(records: int, count: int = REPLAYS, seed: int = 11) -> list[int]:
    """Random offsets in the middle half of a log of ``records``, each with 1,000 records
    (or what a small log has) after it; the same for every system of a run."""
    rng = random.Random(seed)
    lo, hi = records // 4, max(records // 4 + 1, min(3 * records // 4, records - _middle_count(records)))
    return [rng.randrange(lo, hi) for _ in range(count)]


def _median(xs: Sequence[float]) -> float:
    return float(np.median(np.asarray(xs, dtype=np.float64)))


class _TempDirSystem:
    """A system under test that keeps its data in a fresh temporary directory."""

    dir = ""

    def start(self, work_dir: str | None) -> None:
        self.dir = tempfile.mkdtemp(prefix="logq-cmp-", dir=work_dir)

    def stop(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------- logq
def compiled_codec_error() -> str | None:
    """None when the compiled codec can be used here, else why not."""
    from logq.codec import batch

    return batch.implementations()["compiled"]


class LogqSystem(_TempDirSystem):
    def __init__(self, fsync: str, codec: str = "compiled") -> None:
        self.fsync = fsync
        self.codec = codec
        self.name = f"logq ({fsync})" if codec == "compiled" else f"logq ({fsync}, {codec})"
        self.durability = {
            "never": "fsync=never: page cache; survives a process crash, not a power loss",
            "interval": "fsync=interval: fdatasync every 1 s in the background",
            "always": "fsync=always: fdatasync before every append returns",
        }[fsync]
        self.dir = ""

    @contextlib.contextmanager
    def _codec(self) -> Iterator[None]:
        """This system's codec for the duration: in this process, and (through the
        environment) in the processes the latency run spawns."""
        from logq.codec import batch
        from logq.codec.batch import PURE_ENV

        if self.codec == "compiled" and compiled_codec_error() is not None:
            yield  # not built: the pure codec runs, and compare.py says so in its notes
            return
        previous = batch.use_implementation(self.codec)
        env = os.environ.get(PURE_ENV)
        os.environ[PURE_ENV] = "1" if self.codec == "pure" else "0"
        try:
            yield
        finally:
            batch.use_implementation(previous)
            if env is None:
                os.environ.pop(PURE_ENV, None)
            else:
                os.environ[PURE_ENV] = env

    def run(self, records: int, size: int, seek: bool) -> dict[str, float]:
        with self._codec():
            return self._run(records, size, seek)

    def _run(self, records: int, size: int, seek: bool) -> dict[str, float]:
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
            out["consume_commit"] = self._consume_committing(topic, records, columns=False)
            out["consume_columns"] = self._consume_committing(topic, records, columns=True)
            out["replay_first"], out["replay_next"] = self._replays(topic, records)
        return out

    def _consume_committing(self, topic: str, records: int, columns: bool) -> float:
        """Records/s of a consumer group that reads the whole log with ``poll`` (or
        ``poll_columns``) of up to 1,000 records and commits after every one."""
        from logq.client.consumer import Consumer

        group = "cols" if columns else "recs"
        # a lone member: the group start-up delay is not what this row measures
        with Consumer(
            self.dir,
            topic,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            initial_rebalance_delay_ms=0,
        ) as c:
            poll = c.poll_columns if columns else c.poll
            got = 0
            t0 = time.perf_counter()
            deadline = t0 + 60
            while got < records and time.perf_counter() < deadline:
                n = len(poll(timeout=1.0, max_records=_SQL_BATCH))
                if n:
                    c.commit()
                    got += n
            return got / (time.perf_counter() - t0)

    def _replays(self, topic: str, records: int) -> tuple[float, float]:
        """Median us, over replays from random offsets, of ``replay_from(offset=o)`` +
        ``poll(max_records=1)``, and of polling the next 1,000 records after that."""
        from logq.client.consumer import Consumer

        first, nxt = [], []
        want = _middle_count(records)
        with Consumer(self.dir, topic, auto_offset_reset="earliest", max_poll_records=1000) as c:
            c.poll(timeout=1.0, max_records=1)  # assignment and open files, as a running consumer has
            for off in replay_offsets(records):
                t0 = time.perf_counter()
                c.replay_from(offset=off)
                got = c.poll(timeout=1.0, max_records=1)
                t1 = time.perf_counter()
                if not got or got[0].offset != off:
                    raise click.ClickException(f"replay from offset {off} returned {got[:1]!r}")
                n = 0
                while n < want and time.perf_counter() < t1 + 30:
                    n += len(c.poll(timeout=1.0, max_records=want - n))
                t2 = time.perf_counter()
                first.append((t1 - t0) * 1e6)
                nxt.append((t2 - t1) * 1e6)
        return _median(first), _median(nxt)

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
        with self._codec():
            return P.run_produce(self.dir, "tsend", records, 100, fsync=self.fsync, mode="send")["records_per_sec"]

    def latency(self, seconds: float, work_dir: str | None) -> dict[str, float]:
        with self._codec():
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
                out["replay_first"], out["replay_next"] = self._replays(con, records)
            return out
        finally:
            con.close()

    @staticmethod
    def _replays(con: sqlite3.Connection, records: int) -> tuple[float, float]:
        """The queue's replay: ``WHERE id >= ? ORDER BY id LIMIT 1`` from a random offset
        (rowids start at 1, offsets at 0), then ``WHERE id > ? ... LIMIT 1000``; median us."""
        first, nxt = [], []
        want = _middle_count(records)
        for off in replay_offsets(records):
            t0 = time.perf_counter()
            row = con.execute("SELECT id, v FROM q WHERE id >= ? ORDER BY id LIMIT 1", (off + 1,)).fetchall()
            t1 = time.perf_counter()
            con.execute("SELECT id, v FROM q WHERE id > ? ORDER BY id LIMIT ?", (row[0][0], want)).fetchall()
            t2 = time.perf_counter()
            first.append((t1 - t0) * 1e6)
            nxt.append((t2 - t1) * 1e6)
        return _median(first), _median(nxt)

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
        wanted = {off: None for off in replay_offsets(records)} if seek else {}
        t0 = time.perf_counter()
        for first in range(0, records, _SQL_BATCH):
            pipe = r.pipeline(transaction=False)
            for i in range(first, min(first + _SQL_BATCH, records)):
                pipe.xadd(key, {b"v": pool[i % len(pool)]})
            ids = pipe.execute()
            if first <= records // 2 < first + len(ids):
                mid_id = ids[records // 2 - first]
            for off in wanted:
                if first <= off < first + len(ids):
                    wanted[off] = ids[off - first]
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
            first_us, next_us = [], []
            for eid in wanted.values():
                t0 = time.perf_counter()
                (entry,) = r.xrange(key, min=eid, max="+", count=1)
                t1 = time.perf_counter()
                r.xrange(key, min=b"(" + entry[0], max="+", count=_middle_count(records))
                t2 = time.perf_counter()
                first_us.append((t1 - t0) * 1e6)
                next_us.append((t2 - t1) * 1e6)
            out["replay_first"], out["replay_next"] = _median(first_us), _median(next_us)
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


SYSTEM_KEYS = (
    "logq-never",
    "logq-interval",
    "logq-always",
    "logq-never-pure",
    "logq-interval-pure",
    "logq-always-pure",
    "sqlite-normal",
    "sqlite-full",
    "redis",
)


def make_systems(keys: Sequence[str]) -> tuple[list[Any], list[dict[str, str]]]:
    """The systems named by ``keys`` (see SYSTEM_KEYS), and the ones skipped with why."""
    systems: list[Any] = []
    skipped = []
    for key in keys:
        kind, _, variant = key.partition("-")
        if kind == "logq":
            fsync, _, codec = variant.partition("-")
            systems.append(LogqSystem(fsync, codec or "compiled"))
        elif kind == "sqlite":
            systems.append(SqliteSystem(variant.upper()))
        else:
            why = redis_unavailable()
            if why is None:
                systems.append(RedisSystem())
            else:
                skipped.append({"system": RedisSystem.name, "reason": why})
    return systems, skipped
