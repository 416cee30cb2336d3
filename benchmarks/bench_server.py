"""`logq serve` with confluent-kafka clients on loopback, 100-byte records (measured, not asserted).

Runs a `logq serve` process on a fresh data directory and reports, as one JSON line:

- produce records/s: one confluent-kafka producer (acks=1, linger 5 ms, no compression,
  idempotence off) sends ``--records`` records to a 1-partition topic and flushes;
- consume records/s: one consumer assigned that partition from the beginning reads them all
  (timed from the first batch it receives, whose records are not counted);
- produce-to-consume latency: one record per millisecond (linger 0), a consumer thread
  long-polling the partition; p50/p99 of receive time minus send time in microseconds.

    python benchmarks/bench_server.py --records 500000

As a pytest-benchmark suite (``make bench``) it times the produce of 100,000 records to an
in-process ``logq.Server`` (2,000 under ``LOGQ_BENCH_SCALE=tiny``) and checks that every
record is consumed; ``benchmarks/bench_server_peers.py`` puts these figures next to Redis
Streams and NATS JetStream.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import confluent_kafka as ck
from logq import Server

from support import size

VALUE = b"x" * 100


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data: str, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "logq", "serve", "--data", data, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc


def produce(bootstrap: str, topic: str, n: int) -> float:
    p = ck.Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "acks": 1,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    p.produce(topic, VALUE)
    p.flush(30)  # topic created, connection up
    t0 = time.perf_counter()
    for _ in range(n):
        while True:
            try:
                p.produce(topic, VALUE)
                break
            except BufferError:
                p.poll(0.001)
    p.flush(120)
    return n / (time.perf_counter() - t0)


class FirstBatchClock:
    """Records/s after the first batch received: a consumer's start-up and its first round
    trip are not throughput. When the first batch holds every record, the whole read is timed."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.t0 = 0.0
        self.first = 0

    def got(self, records: int) -> None:
        if records and not self.t0:
            self.t0, self.first = time.perf_counter(), records

    def rate(self, n: int) -> float:
        end = time.perf_counter()
        return (n - self.first) / (end - self.t0) if n > self.first else n / (end - self.start)


def consume(bootstrap: str, topic: str, n: int) -> float:
    """Records/s of reading ``n`` records from the start (FirstBatchClock)."""
    c = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
            # librdkafka stops fetching for fetch.queue.backoff.ms (1 s) once queued.min.messages
            # (100,000) wait in its queue: that pause, not the server, set the pace
            "queued.min.messages": 1_000_000,
            "fetch.queue.backoff.ms": 1,
        }
    )
    c.assign([ck.TopicPartition(topic, 0, 1)])  # offset 0 is the warm-up record
    got = 0
    clock = FirstBatchClock()
    deadline = time.monotonic() + 300
    while got < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"consumed {got} of {n} records in 300 s")
        k = sum(1 for m in c.consume(min(10_000, n - got), 1.0) if not m.error())
        clock.got(k)
        got += k
    rate = clock.rate(n)
    c.close()
    return rate


def latency(bootstrap: str, topic: str, n: int) -> tuple[float, float]:
    p = ck.Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": 1})
    p.produce(topic, VALUE)
    p.flush(30)
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "lat", "fetch.wait.max.ms": 500, "fetch.min.bytes": 1})
    c.assign([ck.TopicPartition(topic, 0, ck.OFFSET_END)])
    samples: list[float] = []
    ready = threading.Event()

    def reader() -> None:
        while len(samples) < n:
            m = c.poll(0.2)
            ready.set()
            if m is not None and not m.error():
                samples.append((time.perf_counter_ns() - int(m.value()[:20])) / 1000)

    t = threading.Thread(target=reader)
    t.start()
    ready.wait(10)
    time.sleep(0.5)
    for _ in range(n):
        p.produce(topic, b"%020d" % time.perf_counter_ns() + VALUE[20:])
        p.poll(0)
        time.sleep(0.001)
    p.flush(30)
    t.join(60)
    c.close()
    q = statistics.quantiles(samples, n=100)
    return statistics.median(samples), q[98]


def measure(bootstrap: str, records: int, latency_records: int) -> dict[str, int]:
    """produce and consume records/s, then the latency p50/p99 in microseconds."""
    out = {"records": records, "record_bytes": len(VALUE)}
    out["produce_records_per_s"] = round(produce(bootstrap, "bench", records))
    out["consume_records_per_s"] = round(consume(bootstrap, "bench", records))
    p50, p99 = latency(bootstrap, "latency", latency_records)
    out["latency_p50_us"], out["latency_p99_us"] = round(p50), round(p99)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--latency-records", type=int, default=2000)
    args = ap.parse_args()
    data = tempfile.mkdtemp(prefix="bench-server-")
    port = _free_port()
    proc = start_server(data, port)
    try:
        print(json.dumps(measure(f"127.0.0.1:{port}", args.records, args.latency_records)))
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(30)
        shutil.rmtree(data, ignore_errors=True)


def test_confluent_kafka_through_logq_serve(benchmark, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Produce, consume and latency through an in-process server; every record arrives."""
    n, lat_n = size(100_000, 2_000), size(2_000, 20)
    with Server(str(tmp_path), port=0) as server:
        benchmark.extra_info.update(records=n, bytes=n * len(VALUE))
        benchmark.pedantic(produce, args=(server.address, "bench", n), rounds=1)
        assert consume(server.address, "bench", n) > 0  # returns only once n records were read
        p50, p99 = latency(server.address, "latency", lat_n)
        assert 0 < p50 <= p99


if __name__ == "__main__":
    main()
