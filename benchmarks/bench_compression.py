"""Producer compression: what each codec costs in produce speed, and saves on disk.

pytest-benchmark (``make bench``): ``Producer.send`` of 1,000 records then ``flush()``, per
codec (none, gzip, snappy, lz4, zstd), for 100 B and 1 KiB values; ``extra_info`` holds the
bytes the records took on disk.

``python benchmarks/bench_compression.py [--records N] [--runs N]`` prints the table of
docs/benchmarks.md ("Compression"): produce and consume records/s and bytes on disk per
record, median of ``--runs`` interleaved runs, for two payloads: Kafka's perf-test values
(random letters A-Z: about 4.7 bits of entropy per byte, so at best ~0.6 of the size) and
JSON events (repetitive field names and values, as application logs are).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytest
from logq.cli.perf_workloads import make_payloads
from logq.client.admin import Admin
from logq.client.consumer import Consumer
from logq.client.producer import Producer
from logq.codec import batch as codec_batch
from logq.codec.compression import CODECS, missing_library
from logq.types import TopicPartition

if __package__ in (None, ""):  # run as a script: support.py sits beside this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from support import size, values

N = size(1000, 50)
CODEC_NAMES = list(CODECS)


def json_values(n: int, value_bytes: int, seed: int = 0) -> list[bytes]:
    """``n`` JSON events of about ``value_bytes`` bytes: a service log line, padded by a message."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        event = {
            "ts": 1_700_000_000_000 + i,
            "level": rng.choice(["INFO", "INFO", "INFO", "WARN", "ERROR"]),
            "service": rng.choice(["checkout", "search", "auth", "payments"]),
            "user_id": rng.randrange(100_000),
            "path": rng.choice(["/api/v1/orders", "/api/v1/cart", "/login", "/api/v1/search"]),
            "status": rng.choice([200, 200, 200, 201, 404, 500]),
            "msg": "",
        }
        base = len(json.dumps(event))
        words = ["request", "handled", "in", "ms", "cache", "hit", "miss", "retry", "upstream", "timeout"]
        msg = " ".join(rng.choice(words) for _ in range(max(0, value_bytes - base) // 5 + 1))
        event["msg"] = msg[: max(0, value_bytes - base)]
        out.append(json.dumps(event).encode())
    return out


def _disk_bytes(root: str, topic: str) -> int:
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(root, f"{topic}-*", "*.log")))


def _skip_if_missing(name: str) -> None:
    why = missing_library(CODECS[name])
    if why:
        pytest.skip(why)


@pytest.mark.parametrize("value_bytes", [100, 1024])
@pytest.mark.parametrize("name", CODEC_NAMES)
def test_send_1000_then_flush_compressed(benchmark, tmp_path: Path, name: str, value_bytes: int) -> None:
    """1,000 sends (batch_size 16 KiB, linger 5 ms) with ``compression_type=name``, then flush()."""
    _skip_if_missing(name)
    root = str(tmp_path)
    with Admin(root) as admin:
        admin.create_topic("bench", 1, retention_ms=-1)
    vals = values(N, value_bytes)
    p = Producer(root, compression_type=name)

    def run() -> None:
        send = p.send
        for v in vals:
            send("bench", v)
        p.flush()

    rounds = size(50, 2)
    benchmark.pedantic(run, rounds=rounds, warmup_rounds=size(2, 0))
    p.close()
    runs = rounds + size(2, 0)
    benchmark.extra_info.update(
        records=N, bytes=N * value_bytes, disk_bytes_per_record=_disk_bytes(root, "bench") / (runs * N)
    )


# --------------------------------------------------------------------------- the docs table


def _one_run(work: str, name: str, vals: list[bytes], batch_size: int) -> tuple[float, float, float]:
    """(produce records/s, consume records/s, disk bytes per record) for one fresh topic."""
    root = tempfile.mkdtemp(dir=work)
    with Admin(root) as admin:
        admin.create_topic("t", 1, retention_ms=-1)
    t0 = time.perf_counter()
    with Producer(root, compression_type=name, batch_size=batch_size) as p:
        send = p.send
        for v in vals:
            send("t", v)
        p.flush()
    produce_s = time.perf_counter() - t0
    disk = _disk_bytes(root, "t")
    t0 = time.perf_counter()
    got = 0
    with Consumer(root, auto_offset_reset="earliest") as c:
        c.assign([TopicPartition("t", 0)])
        while got < len(vals):
            got += len(c.poll(1.0))
    consume_s = time.perf_counter() - t0
    return len(vals) / produce_s, len(vals) / consume_s, disk / len(vals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16384, help="the Producer's batch_size (bytes)")
    args = ap.parse_args()
    names = [n for n in CODEC_NAMES if missing_library(CODECS[n]) is None]
    print(
        f"codec implementation: {codec_batch.describe_implementation()}; records per run: {args.records} "
        f"(a fifth of that for 1 KiB values); batch_size {args.batch_size}"
    )
    print("| payload | value | codec | produce rec/s | consume rec/s | disk B/record | vs none |")
    print("|---|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as work:
        for payload in ("letters", "json"):
            for value_bytes in (100, 1024):
                n = args.records if value_bytes == 100 else max(1, args.records // 5)
                # every letters value distinct: support.values() repeats a pool of payloads,
                # which a codec with a large window (zstd) would find in a large batch
                vals = make_payloads(value_bytes, count=n) if payload == "letters" else json_values(n, value_bytes)
                runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
                for _ in range(args.runs):  # interleaved: drifting load hits every codec alike
                    for name in names:
                        runs[name].append(_one_run(work, name, vals, args.batch_size))
                none_disk = statistics.median(r[2] for r in runs["none"])
                mean_bytes = sum(map(len, vals)) / n  # JSON events are at least ~130 B
                for name in names:
                    prod, cons, disk = (statistics.median(r[i] for r in runs[name]) for i in range(3))
                    print(
                        f"| {payload} | {mean_bytes:,.0f} B | {name} | {prod:,.0f} | {cons:,.0f} | "
                        f"{disk:,.1f} | {disk / none_disk:.2f} |"
                    )


if __name__ == "__main__":
    main()
