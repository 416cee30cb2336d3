"""`logq serve` with confluent-kafka clients on loopback, 100-byte records (measured, not asserted).

Runs a `logq serve` process on a fresh data directory and reports, as one JSON line:

- produce records/s: one confluent-kafka producer (acks=1, linger 5 ms, no compression,
  idempotence off) sends ``--records`` records to a 1-partition topic and flushes;
- consume records/s: one consumer assigned that partition from the beginning reads them all
  (timed from the first batch it receives, whose records are not counted);
- produce-to-consume latency: one record per millisecond (linger 0), a consumer thread
  long-polling the partition; p50/p99 of receive time minus send time in microseconds;
- the same through the server alone (``raw_latency``): a parked Fetch on one socket, a
  one-record Produce on another, both encoded here with kio, no client library.

    python benchmarks/bench_server.py --records 500000

``--durable`` measures only acks=all: ``--producers`` idempotent producers at once (threads)
send ``--records`` in all to a topic with ``fsync="always"`` and ``--partitions`` partitions,
and the server's fsync/fdatasync calls and requests (all kinds, warm-up included) are counted::

    python benchmarks/bench_server.py --durable --producers 4 --records 200000 [--partitions 1] [--batch-records 10]

As a pytest-benchmark suite (``make bench``) it times the produce of 100,000 records to an
in-process ``logq.Server`` (2,000 under ``LOGQ_BENCH_SCALE=tiny``) and checks that every
record is consumed; ``benchmarks/bench_server_peers.py`` puts these figures next to Redis
Streams and NATS JetStream.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import confluent_kafka as ck
from logq import Admin, Server

from support import size

VALUE = b"x" * 100


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# `logq serve` with os.fsync and os.fdatasync counted; the count is written to argv[1] at exit.
COUNTING_SERVER = """
import atexit, os, sys
out, calls = sys.argv.pop(1), [0]
def counted(real):
    def call(fd):
        calls[0] += 1
        return real(fd)
    return call
os.fsync, os.fdatasync = counted(os.fsync), counted(os.fdatasync)
atexit.register(lambda: open(out, "w").write(str(calls[0])))
from logq.cli import main
main(sys.argv[1:], prog_name="logq")
"""


def start_server(data: str, port: int, syncs_to: str | None = None, log_to: str | None = None) -> subprocess.Popen[str]:
    """``logq serve`` on ``port``; with ``syncs_to``, its fsync/fdatasync calls are counted
    into that file at exit; with ``log_to``, its log goes there."""
    serve = ["serve", "--data", data, "--listen", f"127.0.0.1:{port}"]
    head = [sys.executable, "-c", COUNTING_SERVER, syncs_to] if syncs_to else [sys.executable, "-m", "logq"]
    proc = subprocess.Popen(
        head + serve,
        stdout=subprocess.PIPE,
        stderr=open(log_to, "w") if log_to else subprocess.DEVNULL,  # noqa: SIM115 (the child holds it)
        text=True,
    )
    assert proc.stdout is not None
    if not proc.stdout.readline():  # it prints where it listens, or exits
        raise RuntimeError(f"logq serve did not start (exit status {proc.wait(30)})")
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


def _frame(api_key: int, version: int, body: Any) -> bytes:
    """A request frame for a kio request object (header v1/v2, client id "raw")."""
    from kio.serial import entity_writer

    header = struct.pack(">hhih", api_key, version, 1, 3) + b"raw"
    if type(body).__header_schema__.__version__ >= 2:
        header += b"\x00"
    buf = io.BytesIO()
    entity_writer(type(body))(buf, body)
    return struct.pack(">i", len(header) + buf.tell()) + header + buf.getvalue()


def _read_frame(sock: socket.socket) -> bytes:
    def exact(n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("logq serve closed the connection")
            out += chunk
        return out

    return exact(struct.unpack(">i", exact(4))[0])


def raw_latency(port: int, topic: str, n: int) -> tuple[float, float]:
    """p50/p99 (us) of produce-to-consume through the server alone: a Fetch (v11) waits on
    one socket; a one-record Produce (v7, acks=1) goes out on another; the time is from
    sending the Produce to reading the Fetch's answer, with no Kafka client library in the
    path. ``topic`` must not exist yet (it is auto-created; its offsets start at 0)."""
    from kio.schema.fetch.v11.request import FetchPartition, FetchRequest, FetchTopic
    from kio.schema.metadata.v5.request import MetadataRequest, MetadataRequestTopic
    from kio.schema.produce.v7.request import PartitionProduceData, ProduceRequest, TopicProduceData
    from logq.codec.batch import encode_batch

    produce = _frame(
        0,
        7,
        ProduceRequest(
            transactional_id=None,
            acks=1,
            timeout=datetime.timedelta(seconds=10),
            topic_data=(
                TopicProduceData(
                    name=topic,
                    partition_data=(
                        PartitionProduceData(index=0, records=bytes(encode_batch([(None, VALUE, None, 1)]))),
                    ),
                ),
            ),
        ),
    )

    def fetch(offset: int) -> bytes:
        part = FetchPartition(partition=0, fetch_offset=offset, partition_max_bytes=1 << 20)
        req = FetchRequest(
            max_wait=datetime.timedelta(seconds=5),
            min_bytes=1,
            topics=(FetchTopic(topic=topic, partitions=(part,)),),
            forgotten_topics_data=(),
        )
        return _frame(1, 11, req)

    samples: list[float] = []
    with socket.create_connection(("127.0.0.1", port)) as a, socket.create_connection(("127.0.0.1", port)) as b:
        for s in (a, b):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        b.sendall(
            _frame(3, 5, MetadataRequest(topics=(MetadataRequestTopic(name=topic),), allow_auto_topic_creation=True))
        )
        _read_frame(b)  # the topic exists now (auto-created)
        b.sendall(produce)  # offset 0, and a warm path
        _read_frame(b)
        for i in range(1, n + 1):
            a.sendall(fetch(i))
            time.sleep(0.001)  # the fetch is parked by now
            t0 = time.perf_counter_ns()
            b.sendall(produce)
            answer = _read_frame(a)
            samples.append((time.perf_counter_ns() - t0) / 1000)
            _read_frame(b)
            if len(answer) < len(VALUE):
                raise RuntimeError(f"the fetch at offset {i} was answered without the record")
    q = statistics.quantiles(samples, n=100)
    return statistics.median(samples), q[98]


def measure(bootstrap: str, records: int, latency_records: int) -> dict[str, int]:
    """produce and consume records/s, then the latency p50/p99 in microseconds."""
    out = {"records": records, "record_bytes": len(VALUE)}
    out["produce_records_per_s"] = round(produce(bootstrap, "bench", records))
    out["consume_records_per_s"] = round(consume(bootstrap, "bench", records))
    p50, p99 = latency(bootstrap, "latency", latency_records)
    out["latency_p50_us"], out["latency_p99_us"] = round(p50), round(p99)
    p50, p99 = raw_latency(int(bootstrap.rsplit(":", 1)[1]), "raw-latency", latency_records)
    out["server_only_latency_p50_us"], out["server_only_latency_p99_us"] = round(p50), round(p99)
    return out


def durable(
    bootstrap: str, topic: str, producers: int, records_each: int, linger_ms: int, batch: int = 10_000
) -> float:
    """Records/s of ``producers`` idempotent acks=all producers (one thread each) sending
    ``records_each`` records at once; each is acknowledged after its batch's fdatasync when
    the topic has fsync=always."""
    failures: list[object] = []

    def one() -> None:
        p = ck.Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": linger_ms,
                "batch.num.messages": batch,
            }
        )
        for _ in range(records_each):
            while True:
                try:
                    p.produce(topic, VALUE, on_delivery=lambda err, msg: err and failures.append(err))
                    break
                except BufferError:
                    p.poll(0.001)
            p.poll(0)
        if p.flush(300):
            failures.append("not flushed")

    threads = [threading.Thread(target=one) for _ in range(producers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"{len(failures)} records failed: {failures[0]}")
    return producers * records_each / (time.perf_counter() - t0)


def measure_durable(port: int, args: argparse.Namespace) -> dict[str, object]:
    bootstrap = f"127.0.0.1:{port}"
    durable(bootstrap, "durable", 1, 10, 0)  # warm-up: connection, producer id, topic metadata
    each = args.records // args.producers
    rate = durable(bootstrap, "durable", args.producers, each, args.linger_ms, args.batch_records)
    out: dict[str, object] = {"producers": args.producers, "partitions": args.partitions, "linger_ms": args.linger_ms}
    out["batch_records"] = args.batch_records
    out.update(records=args.records, record_bytes=len(VALUE), durable_records_per_s=round(rate))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--latency-records", type=int, default=2000)
    ap.add_argument("--durable", action="store_true", help="only acks=all producers on an fsync=always topic")
    ap.add_argument("--producers", type=int, default=4, help="with --durable: concurrent producers")
    ap.add_argument("--partitions", type=int, default=1, help="with --durable: partitions of the topic")
    ap.add_argument("--linger-ms", type=int, default=5, help="with --durable: the producers' linger.ms")
    ap.add_argument("--batch-records", type=int, default=10_000, help="with --durable: batch.num.messages")
    args = ap.parse_args()
    data = tempfile.mkdtemp(prefix="bench-server-")
    if args.durable:
        with Admin(data) as admin:
            admin.create_topic("durable", args.partitions, fsync="always")
    port = _free_port()
    syncs, log = os.path.join(data, "syncs"), os.path.join(data, "serve.log")
    proc = start_server(data, port, syncs, log) if args.durable else start_server(data, port)
    try:
        if args.durable:
            out = measure_durable(port, args)
        else:
            print(json.dumps(measure(f"127.0.0.1:{port}", args.records, args.latency_records)))
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(30)
    if args.durable:  # the server's syncs and requests, its warm-up's included
        out["fsyncs"] = int(open(syncs).read())
        out["requests"] = sum(int(n) for n in re.findall(r"closed \((\d+) requests\)", open(log).read()))
        print(json.dumps(out))
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
        p50, p99 = raw_latency(server.port, "raw-latency", lat_n)  # raises if a record is missing
        assert 0 < p50 <= p99


if __name__ == "__main__":
    main()
