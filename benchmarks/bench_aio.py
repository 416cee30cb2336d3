"""The asyncio clients (logq.aio): wake-up latency, idle cost and event-loop stalls.

- wake-up latency: a producer in another process sends one record at a time (``linger_ms=0``,
  a pause between records) carrying its CLOCK_MONOTONIC send time (shared by the processes of
  one host); a waiting ``AIOConsumer.getmany(timeout_ms=None)`` receives it. p50/p99 of
  receive - send, next to a sync ``Consumer.poll`` waiting the same way;
- idle CPU: the CPU time (user + system, all threads) of a process whose AIOConsumer waits
  5 s for records that do not come, with ``assign`` (no group) and as a group member;
- loop stalls: a probe task asks to wake every 1 ms and records how late it woke, while
  (a) an AIOConsumer follows a 1M-record burst that another process writes (``getmany`` of
  10,000 and of 500 records, and ``async for``; and a backlog written before reading starts,
  with no writer competing for the CPU), and (b) an AIOProducer sends 1M records
  (``await send()`` each). The worst and p99 lateness, the most CPU time the loop's thread
  spent within one tick (work that held the loop, as opposed to the machine descheduling
  the process), the records/s of the burst, and the
  longest full collection of Python's cyclic garbage collector meanwhile (a stall of the
  whole interpreter that logq does not cause but the Records it builds trigger).

Run on asyncio's loop and on uvloop (when installed)::

    python benchmarks/bench_aio.py [--records 1000000] [--wakeups 500] [--idle-s 5]

As a pytest-benchmark suite (``make bench``) it times one AIOConsumer pass over a log.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from logq import Admin, AIOConsumer, AIOProducer, Consumer, Producer

from support import size

VALUE = b"v" * 100
PROBE_S = 0.001

# The producer child: sends ``n`` records, one at a time, each carrying its send time.
WAKE_CHILD = """
import sys, time
from logq import Producer
root, n, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
time.sleep(0.3)  # the consumer is waiting by now
with Producer(root, linger_ms=0) as p:
    for i in range(n):
        p.send("wake", str(time.monotonic_ns()).encode(), partition=0)
        time.sleep(gap)
"""

# The burst child: writes ``n`` records of 100 bytes as fast as send_batch goes.
BURST_CHILD = """
import sys
from logq import Producer
root, n = sys.argv[1], int(sys.argv[2])
with Producer(root) as p:
    for start in range(0, n, 10000):
        p.send_batch("burst", [b"v" * 100] * min(10000, n - start), partition=0)
"""


def loop_runner(kind: str) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    if kind == "uvloop":
        import uvloop

        return lambda coro: uvloop.run(coro)
    return asyncio.run


def child(code: str, *args: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)])


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


# ---------------------------------------------------------------- wake-up latency
async def aio_wakeups(root: str, n: int, gap_s: float) -> list[float]:
    lat: list[float] = []
    async with AIOConsumer(root, "wake", auto_offset_reset="latest") as c:
        proc = child(WAKE_CHILD, root, n, gap_s)
        while len(lat) < n:
            got = await c.getmany(timeout_ms=None)
            now = time.monotonic_ns()
            lat += [(now - int(r.value)) / 1000 for recs in got.values() for r in recs]
        await asyncio.to_thread(proc.wait)
    return lat


def sync_wakeups(root: str, n: int, gap_s: float) -> list[float]:
    lat: list[float] = []
    with Consumer(root, "wake", auto_offset_reset="latest") as c:
        proc = child(WAKE_CHILD, root, n, gap_s)
        while len(lat) < n:
            recs = c.poll(timeout=None)
            now = time.monotonic_ns()
            lat += [(now - int(r.value)) / 1000 for r in recs]
        proc.wait()
    return lat


# ---------------------------------------------------------------- idle cost
def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def aio_idle(root: str, seconds: float, group: bool) -> tuple[float, int]:
    args: dict[str, Any] = {"group_id": "idle"} if group else {}
    async with AIOConsumer(root, "wake", **args) as c:
        await c.getmany(timeout_ms=500)  # joined and settled
        waiting = asyncio.ensure_future(c.getmany(timeout_ms=None))
        await asyncio.sleep(0.1)  # its first read is done: it waits now
        fetches, before = c.read_stats()["fetches"], cpu_s()
        await asyncio.sleep(seconds)
        used, fetched = cpu_s() - before, c.read_stats()["fetches"] - fetches
        waiting.cancel()
        return used, fetched


# ---------------------------------------------------------------- loop stalls
async def probe(stop: asyncio.Event, lateness: list[float], busy: list[float]) -> None:
    """Per 1 ms tick: how late it woke (wall), and the loop thread's CPU time in that tick.

    A late tick whose CPU time is small was not held up by work on the loop but by the
    machine (the process descheduled, or another thread holding the GIL)."""
    while not stop.is_set():  # perf_counter: uvloop's loop.time() counts whole milliseconds
        t, cpu = time.perf_counter(), time.thread_time()
        await asyncio.sleep(PROBE_S)
        lateness.append((time.perf_counter() - t - PROBE_S) * 1e6)
        busy.append((time.thread_time() - cpu) * 1e6)


class GcPauses:
    """The longest full (generation 2) collection of the cyclic garbage collector meanwhile."""

    def __init__(self) -> None:
        self.started = 0.0
        self.longest_us = 0.0
        self.full = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        elif info["generation"] == 2:
            self.full += 1
            self.longest_us = max(self.longest_us, (time.perf_counter() - self.started) * 1e6)


async def with_probe(work: Callable[[], Awaitable[int]]) -> dict[str, float]:
    stop, lateness, busy = asyncio.Event(), [], []
    prober = asyncio.ensure_future(probe(stop, lateness, busy))
    pauses = GcPauses()
    gc.callbacks.append(pauses)
    t0 = time.perf_counter()
    try:
        n = await work()
    finally:
        gc.callbacks.remove(pauses)
    took = time.perf_counter() - t0
    stop.set()
    await prober
    return {
        "records_per_s": n / took,
        "stall_max_us": max(lateness),
        "stall_p99_us": pct(lateness, 0.99),
        "loop_cpu_in_a_tick_max_us": max(busy),
        "loop_cpu_in_a_tick_p99_us": pct(busy, 0.99),
        "stalls_over_5ms": sum(1 for x in lateness if x > 5000),
        "ticks": len(lateness),
        "gc_full_collections": pauses.full,
        "gc_full_longest_us": pauses.longest_us,
    }


async def consume_burst(root: str, n: int, max_records: int | None, backlog: bool = False) -> dict[str, float]:
    """Follow a burst another process writes: getmany(max_records) or, with None, ``async for``.

    With ``backlog`` the writer finishes first (no process competes for the CPU meanwhile)."""
    if backlog:
        await asyncio.to_thread(child(BURST_CHILD, root, n).wait)

    async def work() -> int:
        got = 0
        async with AIOConsumer(root, "burst", auto_offset_reset="earliest") as c:
            proc = child("pass") if backlog else child(BURST_CHILD, root, n)
            if max_records is None:
                async for _ in c:
                    got += 1
                    if got == n:
                        break
            while got < n:
                batches = await c.getmany(timeout_ms=None, max_records=max_records)
                got += sum(len(v) for v in batches.values())
            await asyncio.to_thread(proc.wait)
        return got

    return await with_probe(work)


async def produce_burst(root: str, n: int) -> dict[str, float]:
    async def work() -> int:
        async with AIOProducer(root) as p:
            last = None
            for _ in range(n):
                last = await p.send("burst", VALUE, partition=0)
            if last is not None:
                await last
        return n

    return await with_probe(work)


# ---------------------------------------------------------------- the script
def fresh(base: str, name: str) -> str:
    root = os.path.join(base, name)
    shutil.rmtree(root, ignore_errors=True)
    with Admin(root) as admin:
        admin.create_topic("wake", partitions=1, retention_ms=-1)
        admin.create_topic("burst", partitions=1, retention_ms=-1)
    return root


def run_all(records: int, wakeups: int, idle_s: float) -> dict[str, Any]:
    base = tempfile.mkdtemp(prefix="bench-aio-")
    out: dict[str, Any] = {}
    try:
        lat = sync_wakeups(fresh(base, "sync"), wakeups, 0.002)
        out["sync Consumer.poll"] = {"wake_p50_us": pct(lat, 0.5), "wake_p99_us": pct(lat, 0.99)}
        kinds = ["asyncio"]
        try:
            import uvloop  # noqa: F401

            kinds.append("uvloop")
        except ImportError:
            print("uvloop is not installed: asyncio's loop only", file=sys.stderr)
        for kind in kinds:
            run = loop_runner(kind)
            row: dict[str, Any] = {}
            lat = run(aio_wakeups(fresh(base, kind), wakeups, 0.002))
            row["wake_p50_us"], row["wake_p99_us"] = pct(lat, 0.5), pct(lat, 0.99)
            row["idle_cpu_s"], row["idle_fetches"] = run(aio_idle(fresh(base, kind), idle_s, False))
            row["idle_cpu_s_group"], row["idle_fetches_group"] = run(aio_idle(fresh(base, kind), idle_s, True))
            for max_records in (10_000, 500, None):
                name = f"consume_burst_getmany_{max_records}" if max_records else "consume_burst_async_for"
                row[name] = run(consume_burst(fresh(base, kind), records, max_records))
            row["consume_backlog_getmany_500"] = run(consume_burst(fresh(base, kind), records, 500, backlog=True))
            row["produce_burst"] = run(produce_burst(fresh(base, kind), records))
            out[f"AIOConsumer/AIOProducer on {kind}"] = row
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--wakeups", type=int, default=500)
    ap.add_argument("--idle-s", type=float, default=5.0)
    a = ap.parse_args()
    print(json.dumps(run_all(a.records, a.wakeups, a.idle_s), indent=2))


# ---------------------------------------------------------------- pytest-benchmark
RECORDS = size(200_000, 5_000)


def test_aio_consumer_reads_a_log(benchmark, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = str(tmp_path / "data")
    with Admin(root) as admin:
        admin.create_topic("burst", partitions=1, retention_ms=-1)
    with Producer(root) as p:
        p.send_batch("burst", [VALUE] * RECORDS, partition=0)

    async def read_all() -> int:
        got = 0
        async with AIOConsumer(root, "burst", auto_offset_reset="earliest") as c:
            while got < RECORDS:
                got += sum(len(v) for v in (await c.getmany(timeout_ms=1000, max_records=10_000)).values())
        return got

    assert benchmark.pedantic(lambda: asyncio.run(read_all()), rounds=3) == RECORDS


if __name__ == "__main__":
    main()
