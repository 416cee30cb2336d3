"""Share groups end to end: acquire + accept of 100-byte records by 4 consumers (measured, not asserted).

Each system's queue is filled first (not timed); then 4 consumers, started and connected
before the clock starts, take records in batches of ``--batch`` and acknowledge each, until
every record was acknowledged; records/s = records / wall time from the start signal to the
last acknowledgement. Every consumer counts what it got: the total must equal the records
(persist-queue in processes excepted, see below), or the run fails.

- logq ShareConsumer, 4 processes on a 1-partition topic (and once on 4 partitions), explicit mode: ``poll(max_records=batch)``, ``acknowledge``
  each record "accept"; the acknowledgements are applied (journaled, in the page cache) at
  the next poll, ``commit()`` once at the end ("page cache": survives kill -9, not a power
  cut) — and a second time with ``commit()`` after every poll (fdatasync per batch);
- Redis Streams: one consumer group, ``XREADGROUP COUNT batch`` then one ``XACK`` of the
  batch's ids, 4 processes (redis-server with AOF, appendfsync everysec; skipped when
  redis-server or redis-py is missing);
- SQLite ``UPDATE ... RETURNING`` queue (stdlib sqlite3, WAL, synchronous=NORMAL), 4
  processes: ``UPDATE q SET state=1, owner=?, deadline=? WHERE id IN (SELECT id FROM q WHERE
  state=0 ORDER BY id LIMIT batch) RETURNING id, v`` then ``UPDATE q SET state=2 WHERE id IN
  (...)``, each an autocommit transaction;
- persist-queue's SQLiteAckQueue (its defaults: WAL, synchronous=FULL, so every ``get`` and
  ``ack`` is a transaction with an fsync), one record per ``get``/``ack`` (its API): 4
  threads sharing one queue (``multithreading=True``, the mode it supports). Its ``get`` is
  a SELECT then an UPDATE guarded by a thread lock, so 4 *processes* on one file deliver
  some records twice; that run is shown too, with its duplicates, and is not a fair peer.

    python benchmarks/bench_share.py                      # all, 50,000 records each
    python benchmarks/bench_share.py --records 20000 --pq-records 3000 --only logq,sqlite

Prints a table and one JSON line. ``make bench`` runs a tiny logq-only version.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import pickle
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import RedisSystem, redis_unavailable  # noqa: E402
from support import size  # noqa: E402

CTX = mp.get_context("spawn")
VALUE = b"v" * 100
CONSUMERS = 4


class Shared:
    """What the consumers of one run share: the start signal and the count acknowledged."""

    def __init__(self, consumers: int) -> None:
        self.ready = CTX.Barrier(consumers + 1)
        self.done = CTX.Value("q", 0)
        self.results = CTX.Queue()


def _count(shared: Any, n: int) -> int:
    with shared.done.get_lock():
        shared.done.value += n
        return int(shared.done.value)


# ----------------------------------------------------------------------------- consumers


def logq_consumer(root: str, total: int, batch: int, commit_each: bool, shared: Any) -> None:
    import logq

    got = 0
    with logq.ShareConsumer(
        root,
        ["jobs"],
        group_id="bench",
        acknowledgement_mode="explicit",
        auto_offset_reset="earliest",
        lock_duration_ms=600_000,
    ) as sc:
        shared.ready.wait()
        while shared.done.value < total:
            recs = sc.poll(timeout=0.05, max_records=batch)
            for r in recs:
                sc.acknowledge(r, "accept")
            if commit_each and recs:
                sc.commit()
            got += len(recs)
            if recs:
                _count(shared, len(recs))
        sc.commit()
    shared.results.put(got)


def redis_consumer(port: int, total: int, batch: int, name: str, shared: Any) -> None:
    import redis

    r = redis.Redis(host="127.0.0.1", port=port)
    got = 0
    shared.ready.wait()
    while shared.done.value < total:
        resp = r.xreadgroup("bench", name, {"jobs": ">"}, count=batch, block=50)
        ids = [eid for _, entries in resp or [] for eid, _ in entries]
        if ids:
            r.xack("jobs", "bench", *ids)
            got += len(ids)
            _count(shared, len(ids))
    r.close()
    shared.results.put(got)


def sqlite_consumer(path: str, total: int, batch: int, name: str, shared: Any) -> None:
    con = sqlite3.connect(path, timeout=60, isolation_level=None)
    con.execute("PRAGMA synchronous=NORMAL")
    acquire = (
        "UPDATE q SET state=1, owner=?, deadline=? WHERE id IN "
        f"(SELECT id FROM q WHERE state=0 ORDER BY id LIMIT {batch}) RETURNING id, v"
    )
    got = 0
    shared.ready.wait()
    while shared.done.value < total:
        rows = con.execute(acquire, (name, time.time_ns() // 1_000_000 + 600_000)).fetchall()
        if rows:
            ids = [row[0] for row in rows]
            con.execute(f"UPDATE q SET state=2 WHERE id IN ({','.join('?' * len(ids))})", ids)
            got += len(ids)
            _count(shared, len(ids))
        else:
            time.sleep(0.0005)
    con.close()
    shared.results.put(got)


def pq_consumer(q: Any, total: int, shared: Any) -> None:
    from persistqueue.exceptions import Empty

    got = 0
    shared.ready.wait()
    while shared.done.value < total:
        try:
            item = q.get(block=False, raw=True)
        except Empty:
            time.sleep(0.0005)
            continue
        q.ack(item)
        got += 1
        _count(shared, 1)
    shared.results.put(got)


def pq_process(path: str, total: int, shared: Any) -> None:
    import persistqueue

    pq_consumer(persistqueue.SQLiteAckQueue(path, auto_resume=False), total, shared)


# ----------------------------------------------------------------------------- systems


def _timed(shared: Shared, workers: list[Any], total: int) -> dict[str, Any]:
    """Start the consumers, release them at once, wait for every acknowledgement."""
    for w in workers:
        w.start()
    shared.ready.wait()
    t0 = time.perf_counter()
    counts = [shared.results.get(timeout=600) for _ in workers]
    took = time.perf_counter() - t0
    for w in workers:
        w.join(60)
    return {"records": total, "seconds": round(took, 3), "records_per_s": round(total / took), "got": sum(counts)}


def run_logq(work: str, total: int, batch: int, commit_each: bool, partitions: int = 1) -> dict[str, Any]:
    import logq

    root = os.path.join(work, "logq")
    with logq.Admin(root) as a:
        a.create_topic("jobs", partitions=partitions)
    with logq.Producer(root) as p:
        for i in range(0, total, 1000):
            p.send_batch("jobs", [VALUE] * min(1000, total - i), partition=(i // 1000) % partitions)
    shared = Shared(CONSUMERS)
    workers = [
        CTX.Process(target=logq_consumer, args=(root, total, batch, commit_each, shared)) for _ in range(CONSUMERS)
    ]
    return _timed(shared, workers, total)


def run_redis(work: str, total: int, batch: int) -> dict[str, Any]:
    server = RedisSystem()
    server.start(work)
    try:
        r = server.client
        assert r is not None
        for i in range(0, total, 1000):
            pipe = r.pipeline(transaction=False)
            for _ in range(min(1000, total - i)):
                pipe.xadd("jobs", {b"v": VALUE})
            pipe.execute()
        r.xgroup_create("jobs", "bench", id="0")
        shared = Shared(CONSUMERS)
        workers = [
            CTX.Process(target=redis_consumer, args=(server.port, total, batch, f"c{i}", shared))
            for i in range(CONSUMERS)
        ]
        return _timed(shared, workers, total)
    finally:
        server.stop()


def run_sqlite(work: str, total: int, batch: int) -> dict[str, Any]:
    path = os.path.join(work, "queue.db")
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE q (id INTEGER PRIMARY KEY, v BLOB, state INTEGER NOT NULL, owner TEXT, deadline INTEGER)")
    con.execute("CREATE INDEX q_state ON q (state, id)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO q (v, state) VALUES (?, 0)", ((VALUE,) for _ in range(total)))
    con.execute("COMMIT")
    con.close()
    shared = Shared(CONSUMERS)
    workers = [
        CTX.Process(target=sqlite_consumer, args=(path, total, batch, f"c{i}", shared)) for i in range(CONSUMERS)
    ]
    return _timed(shared, workers, total)


def _pq_fill(path: str, total: int) -> None:
    """Fill the queue in one transaction (its put() commits and fsyncs each record: setup
    would take minutes); rows as its put() writes them (pickled data, status 'inited')."""
    import persistqueue

    q = persistqueue.SQLiteAckQueue(path)
    table, db = q._table_name, os.path.join(path, q.db_file_name or "data.db")
    q.close()
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("BEGIN")
    row = (pickle.dumps(VALUE), time.time())
    con.executemany(f"INSERT INTO {table} (data, timestamp, status) VALUES (?, ?, 0)", (row for _ in range(total)))
    con.execute("COMMIT")
    con.close()


def run_pq_threads(work: str, total: int) -> dict[str, Any]:
    import persistqueue

    path = os.path.join(work, "pq-threads")
    _pq_fill(path, total)
    q = persistqueue.SQLiteAckQueue(path, multithreading=True)
    shared = Shared(CONSUMERS)
    workers = [threading.Thread(target=pq_consumer, args=(q, total, shared)) for _ in range(CONSUMERS)]
    out = _timed(shared, workers, total)
    q.close()
    return out


def run_pq_processes(work: str, total: int) -> dict[str, Any]:
    path = os.path.join(work, "pq-procs")
    _pq_fill(path, total)
    shared = Shared(CONSUMERS)
    workers = [CTX.Process(target=pq_process, args=(path, total, shared)) for _ in range(CONSUMERS)]
    return _timed(shared, workers, total)


# ----------------------------------------------------------------------------- main


def systems(args: argparse.Namespace) -> list[tuple[str, str, Callable[[str], dict[str, Any]]]]:
    n, pq, b = args.records, args.pq_records, args.batch
    out: list[tuple[str, str, Callable[[str], dict[str, Any]]]] = [
        ("logq", "logq ShareConsumer (page cache; commit at the end)", lambda w: run_logq(w, n, b, False)),
        ("logq", "logq ShareConsumer (commit = fdatasync per poll)", lambda w: run_logq(w, n, b, True)),
        ("logq4", "logq ShareConsumer, 4 partitions (page cache)", lambda w: run_logq(w, n, b, False, 4)),
        ("redis", "Redis Streams XREADGROUP + XACK (AOF everysec)", lambda w: run_redis(w, n, b)),
        ("sqlite", "SQLite UPDATE ... RETURNING (WAL, NORMAL)", lambda w: run_sqlite(w, n, b)),
        ("pq", "persist-queue SQLiteAckQueue, 4 threads (FULL)", lambda w: run_pq_threads(w, pq)),
        ("pq", "persist-queue SQLiteAckQueue, 4 processes (unsafe)", lambda w: run_pq_processes(w, pq)),
    ]
    return [s for s in out if s[0] in args.only.split(",")]


def skipped(key: str) -> str | None:
    if key == "redis":
        return redis_unavailable()
    if key == "pq":
        try:
            import persistqueue  # noqa: F401
        except ImportError:
            return "persist-queue is not installed (it is in logq's 'bench' extra)"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--pq-records", type=int, default=5_000, help="persist-queue fsyncs per record: fewer")
    ap.add_argument("--batch", type=int, default=100, help="records per poll / XREADGROUP / UPDATE")
    ap.add_argument("--only", default="logq,logq4,redis,sqlite,pq")
    args = ap.parse_args()
    rows = []
    for key, name, run in systems(args):
        why = skipped(key)
        if why is not None:
            rows.append({"system": name, "skipped": why})
            print(f"{name:55s} skipped: {why}", flush=True)
            continue
        work = tempfile.mkdtemp(prefix="bench-share-")
        try:
            row = {"system": name, **run(work)}
        finally:
            shutil.rmtree(work, ignore_errors=True)
        rows.append(row)
        dup = "" if row["got"] == row["records"] else f"  ({row['got'] - row['records']} delivered twice)"
        print(f"{name:55s} {row['records_per_s']:>10,} records/s{dup}", flush=True)
    print(json.dumps({"consumers": CONSUMERS, "value_bytes": len(VALUE), "batch": args.batch, "rows": rows}))


def test_share_acquire_accept_by_four_processes(benchmark, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """logq only: every record is acquired and accepted exactly once by 4 processes."""
    n = size(20_000, 400)
    benchmark.extra_info.update(records=n, bytes=n * len(VALUE))
    out = benchmark.pedantic(run_logq, args=(str(tmp_path), n, 100, False), rounds=1)
    assert out["got"] == n


if __name__ == "__main__":
    main()
