"""`logq serve` next to Redis Streams and NATS JetStream, in one run, 100-byte records.

Each server runs as its own process on a free 127.0.0.1 port in a fresh temporary directory;
the clients run in this process, as each system's Python users would run them:

- logq serve: confluent-kafka (librdkafka), as in ``bench_server.py`` (producer acks=1,
  linger 5 ms; consumer assigned the partition; latency with linger 0, one record per ms).
  The topics are created first with ``fsync=interval`` (a background flush every second,
  the nearest to Redis's ``appendfsync everysec``); ``--fsync never`` is logq's default;
- Redis Streams (``redis-server``, AOF with ``appendfsync everysec``): redis-py, produce as
  ``XADD`` in pipelines of 1,000, consume as ``XREAD COUNT 10000`` from the first id,
  latency with one ``XADD`` per ms and a reader thread blocked in ``XREAD BLOCK``;
- NATS JetStream (``nats-server -js``, file storage, the server's default sync): nats-py,
  produce with ``publish_async`` (acks awaited together, at most 4,000 in flight, nats-py's
  default), consume with a pull consumer (``AckPolicy.NONE``, like a Kafka consumer that
  commits no offsets) fetching batches of 5,000, latency with one ``publish_async`` per ms
  and a task waiting in ``fetch(1)``.

For each: produce records/s (all records acknowledged), consume records/s (all records
read, from the first; timed from the first batch received, whose records are not counted,
as in ``bench_server.py``), p50/p99 of receive time minus send time, and the CPU seconds of the
server process and of this (client) process in the produce and the consume phase. A peer
whose server binary or Python client is missing is skipped, with the reason printed::

    python benchmarks/bench_server_peers.py --records 300000 [--latency-records 2000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from logq import Admin

import bench_server as B
from support import size

VALUE = B.VALUE
_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- measuring
def server_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_S


@contextlib.contextmanager
def phase(out: dict[str, float], name: str, pid: int) -> Iterator[None]:
    """Adds ``<name>_server_cpu_s`` and ``<name>_client_cpu_s`` (this process) to ``out``."""
    s0, c0 = server_cpu_s(pid), time.process_time()
    yield
    out[f"{name}_server_cpu_s"] = round(server_cpu_s(pid) - s0, 3)
    out[f"{name}_client_cpu_s"] = round(time.process_time() - c0, 3)


def stamped() -> bytes:
    """A 100-byte value starting with its send time (perf_counter_ns, 20 digits)."""
    return b"%020d" % time.perf_counter_ns() + VALUE[20:]


def since_us(value: bytes) -> float:
    return (time.perf_counter_ns() - int(value[:20])) / 1000


def p50_p99(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples), statistics.quantiles(samples, n=100)[98]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start (exit status {proc.poll()})")
        time.sleep(0.05)


@contextlib.contextmanager
def server_process(argv: list[str], port: int, what: str) -> Iterator[int]:
    """Runs ``argv`` until the block ends; yields its pid once ``port`` accepts connections."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, proc, what)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


# ----------------------------------------------------------------------------- logq serve
def run_logq(work: str, n: int, lat_n: int, fsync: str) -> dict[str, float]:
    data = os.path.join(work, "logq")
    os.mkdir(data)
    with Admin(data) as admin:
        for topic in ("bench", "latency"):
            admin.create_topic(topic, 1, fsync=fsync)
    port = _free_port()
    argv = [sys.executable, "-m", "logq", "serve", "--data", data, "--listen", f"127.0.0.1:{port}"]
    out: dict[str, float] = {}
    with server_process(argv, port, "logq serve") as pid:
        bootstrap = f"127.0.0.1:{port}"
        with phase(out, "produce", pid):
            out["produce"] = B.produce(bootstrap, "bench", n)
        with phase(out, "consume", pid):
            out["consume"] = B.consume(bootstrap, "bench", n)
        with phase(out, "latency", pid):
            out["p50_us"], out["p99_us"] = B.latency(bootstrap, "latency", lat_n)
    return out


# ----------------------------------------------------------------------------- Redis Streams
def redis_missing() -> str | None:
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the redis module is not installed (pip install redis; it is in logq's bench extra)"
    if shutil.which("redis-server") is None:
        return "no redis-server on PATH (Debian package redis-server)"
    return None


def redis_produce(r: Any, n: int) -> float:
    t0 = time.perf_counter()
    for first in range(0, n, 1000):
        pipe = r.pipeline(transaction=False)
        for _ in range(min(1000, n - first)):
            pipe.xadd("bench", {b"v": VALUE})
        pipe.execute()
    return n / (time.perf_counter() - t0)


def redis_consume(r: Any, n: int) -> float:
    got, last = 0, "0-0"
    clock = B.FirstBatchClock()
    while got < n:
        for _, entries in r.xread({"bench": last}, count=10_000, block=1000):
            clock.got(len(entries))
            got += len(entries)
            last = entries[-1][0]
    return clock.rate(n)


def redis_latency(port: int, n: int) -> tuple[float, float]:
    import redis

    w, rd = redis.Redis(port=port), redis.Redis(port=port)
    last = w.xadd("lat", {b"v": b"warm-up"})
    samples: list[float] = []
    ready = threading.Event()

    def reader() -> None:
        nonlocal last
        while len(samples) < n:
            resp = rd.xread({"lat": last}, count=100, block=200)
            ready.set()
            for _, entries in resp:
                for eid, fields in entries:
                    last = eid
                    samples.append(since_us(fields[b"v"]))

    t = threading.Thread(target=reader)
    t.start()
    ready.wait(10)
    time.sleep(0.5)
    for _ in range(n):
        w.xadd("lat", {b"v": stamped()})
        time.sleep(0.001)
    t.join(60)
    w.close()
    rd.close()
    return p50_p99(samples)


def run_redis(work: str, n: int, lat_n: int, fsync: str) -> dict[str, float]:
    import redis

    port = _free_port()
    d = os.path.join(work, "redis")
    os.mkdir(d)
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", d, "--save", ""]
    argv += ["--appendonly", "yes", "--appendfsync", "everysec"]
    out: dict[str, float] = {}
    with server_process(argv, port, "redis-server") as pid:
        r = redis.Redis(port=port)
        r.ping()
        with phase(out, "produce", pid):
            out["produce"] = redis_produce(r, n)
        with phase(out, "consume", pid):
            out["consume"] = redis_consume(r, n)
        r.close()
        with phase(out, "latency", pid):
            out["p50_us"], out["p99_us"] = redis_latency(port, lat_n)
    return out


# ----------------------------------------------------------------------------- NATS JetStream
def nats_missing() -> str | None:
    try:
        import nats  # noqa: F401
    except ImportError:
        return "the nats module is not installed (pip install nats-py; it is in logq's bench extra)"
    if shutil.which("nats-server") is None:
        return "no nats-server on PATH (Debian package nats-server)"
    return None


async def nats_produce(js: Any, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await js.publish_async("bench", VALUE)  # waits only while 4,000 acks are pending
    await js.publish_async_completed()
    return n / (time.perf_counter() - t0)


async def nats_consume(js: Any, n: int) -> float:
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    cfg = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL)
    sub = await js.pull_subscribe("bench", durable="bench", config=cfg)
    got = 0
    clock = B.FirstBatchClock()
    while got < n:
        with contextlib.suppress(asyncio.TimeoutError):
            k = len(await sub.fetch(min(5000, n - got), timeout=5))
            clock.got(k)
            got += k
    rate = clock.rate(n)
    await sub.unsubscribe()
    return rate


async def nats_latency(js: Any, n: int) -> tuple[float, float]:
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    cfg = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.NEW)
    sub = await js.pull_subscribe("lat", durable="lat", config=cfg)
    samples: list[float] = []

    async def reader() -> None:
        while len(samples) < n:
            with contextlib.suppress(asyncio.TimeoutError):
                for m in await sub.fetch(1, timeout=1):
                    samples.append(since_us(m.data))

    task = asyncio.create_task(reader())
    await asyncio.sleep(0.5)
    for _ in range(n):
        await js.publish_async("lat", stamped())
        await asyncio.sleep(0.001)
    await js.publish_async_completed()
    await asyncio.wait_for(task, 60)
    return p50_p99(samples)


async def _nats_all(port: int, n: int, lat_n: int, pid: int) -> dict[str, float]:
    import nats
    from nats.js.api import StorageType, StreamConfig

    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    js = nc.jetstream()
    for name in ("bench", "lat"):
        await js.add_stream(StreamConfig(name=name.upper(), subjects=[name], storage=StorageType.FILE))
    out: dict[str, float] = {}
    with phase(out, "produce", pid):
        out["produce"] = await nats_produce(js, n)
    with phase(out, "consume", pid):
        out["consume"] = await nats_consume(js, n)
    with phase(out, "latency", pid):
        out["p50_us"], out["p99_us"] = await nats_latency(js, lat_n)
    await nc.close()
    return out


def run_nats(work: str, n: int, lat_n: int, fsync: str) -> dict[str, float]:
    port = _free_port()
    d = os.path.join(work, "nats")
    os.mkdir(d)
    argv = ["nats-server", "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", d]
    with server_process(argv, port, "nats-server") as pid:
        return asyncio.run(_nats_all(port, n, lat_n, pid))


# ----------------------------------------------------------------------------- the run
Runner = Callable[[str, int, int, str], dict[str, float]]
SYSTEMS: list[tuple[str, Callable[[], str | None], Runner]] = [
    ("logq serve", lambda: None, run_logq),
    ("Redis Streams", redis_missing, run_redis),
    ("NATS JetStream", nats_missing, run_nats),
]


def run_all(n: int, lat_n: int, fsync: str = "interval") -> list[dict[str, Any]]:
    """One row per system: its figures, or ``skipped`` with the reason."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as work:
        for name, missing, run in SYSTEMS:
            reason = missing()
            row: dict[str, Any] = {"system": name, "records": n, "record_bytes": len(VALUE)}
            if reason is not None:
                row["skipped"] = reason
            else:
                row.update({k: round(v, 3) for k, v in run(work, n, lat_n, fsync).items()})
            rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """A markdown table; ``x`` columns are logq's figure over the peer's (latency: the peer's
    over logq's, so that above 1 means logq is better everywhere)."""
    lq = rows[0]
    lines = [
        "| system | produce rec/s | consume rec/s | p50 us | p99 us | logq produce x | logq consume x | logq p50 x |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['system']} | skipped: {r['skipped']} | | | | | | |")
            continue
        ratios = [lq["produce"] / r["produce"], lq["consume"] / r["consume"], r["p50_us"] / lq["p50_us"]]
        lines.append(
            f"| {r['system']} | {r['produce']:,.0f} | {r['consume']:,.0f} | {r['p50_us']:,.0f} | {r['p99_us']:,.0f} | "
            + " | ".join(f"{x:.2f}" for x in ratios)
            + " |"
        )
    lines += ["", "| CPU seconds | produce: server | client | consume: server | client | latency: server | client |"]
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "skipped" not in r:
            cells = [
                f"{r[f'{p}_{side}_cpu_s']:.2f}"
                for p in ("produce", "consume", "latency")
                for side in ("server", "client")
            ]
            lines.append(f"| {r['system']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--latency-records", type=int, default=2000)
    ap.add_argument("--fsync", choices=["never", "interval", "always"], default="interval")
    ap.add_argument("--json", action="store_true", help="one JSON line per system instead of the table")
    args = ap.parse_args()
    load = os.getloadavg()
    rows = run_all(args.records, args.latency_records, args.fsync)
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(f"{args.records:,} records of {len(VALUE)} B; load average before the run {load[0]:.2f}")
        print(table(rows))


def test_logq_serve_and_its_peers_on_the_same_records(benchmark) -> None:  # type: ignore[no-untyped-def]
    """Every system that is installed reads back every record it was sent; missing ones say why."""
    n = size(100_000, 2_000)
    benchmark.extra_info.update(records=n, bytes=n * len(VALUE))
    rows = benchmark.pedantic(run_all, args=(n, size(500, 20)), rounds=1)
    assert [r["system"] for r in rows] == [s[0] for s in SYSTEMS]
    assert "skipped" not in rows[0]
    for r in rows:
        assert "skipped" in r or (r["produce"] > 0 and r["consume"] > 0 and 0 < r["p50_us"] <= r["p99_us"])
    assert "logq serve" in table(rows)


if __name__ == "__main__":
    main()
