"""The workloads behind ``logq perf`` (plain functions returning dicts; see logq/cli/perf.py).

- :func:`run_produce`  -- kafka-producer-perf-test: N records of B random letters, through
  ``Producer.send`` (latency = send call -> its batch written) or ``Producer.send_batch``
  (latency = one call); window stats every few seconds, percentiles at the end.
- :func:`run_consume`  -- kafka-consumer-perf-test: poll N records, report MB and records/s.
- :func:`run_latency`  -- a producer process and a consumer process (spawned); each record
  carries its ``time.monotonic_ns()`` send time, which all processes share on Linux.
- :func:`run_seek`     -- logs of growing size; time to reach a random offset / timestamp.

Every loop is bounded by a record count and a deadline; temporary data lives in a
temporary directory removed at the end; spawned processes are joined or terminated. A
child that fails or overstays, or an answer that fails its check, raises
:class:`logq.errors.WorkloadError`, which the CLI prints as its one-line error. The peer
comparison in benchmarks/ drives the same functions (:func:`run_cross_process` takes any
producer and consumer pair).
"""

from __future__ import annotations

import datetime as _dt
import multiprocessing
import os
import shutil
import signal
import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from logq.cli.options import TerminalProgress
from logq.errors import WorkloadError

MIB = 1024 * 1024
T0_MS = 1_700_000_000_000  # timestamps of the logs built by `seek` (retention is off there)
_PAYLOAD_POOL = 1024  # distinct random values cycled through (like Kafka: letters A-Z, seed 0)
_LATENCY_SAMPLES = 500_000  # Kafka keeps at most this many latencies for its percentiles
_CHILD_TIMEOUT_S = 60.0  # startup allowance for a spawned process (imports, opening logs)


# --------------------------------------------------------------------------- stats
def latency_summary(lat_ns: Sequence[int] | np.ndarray, unit: str = "ms") -> dict[str, float]:
    """avg / max / p50 / p95 / p99 / p99.9 of latencies given in ns, converted to ``unit``."""
    div = {"ms": 1e6, "us": 1e3}[unit]
    a = np.asarray(lat_ns, dtype=np.float64)
    if a.size == 0:
        return {k: 0.0 for k in ("avg", "max", "p50", "p95", "p99", "p999")}
    p50, p95, p99, p999 = np.percentile(a, [50, 95, 99, 99.9])
    return {
        "avg": float(a.mean() / div),
        "max": float(a.max() / div),
        "p50": p50 / div,
        "p95": p95 / div,
        "p99": p99 / div,
        "p999": p999 / div,
    }


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median, min and max of repeated runs."""
    v = sorted(float(x) for x in values)
    return {
        "median": float(np.median(v)) if v else 0.0,
        "min": v[0] if v else 0.0,
        "max": v[-1] if v else 0.0,
        "runs": v,
    }


def make_payloads(size: int, count: int = _PAYLOAD_POOL, seed: int = 0) -> list[bytes]:
    """``count`` distinct values of ``size`` random letters A-Z (Kafka's payload, seed 0)."""
    rng = np.random.default_rng(seed)
    return [row.tobytes() for row in rng.integers(65, 91, size=(count, size), dtype=np.uint8)]


# --------------------------------------------------------------------------- produce
class _Window:
    """Kafka's per-window and total accumulators of count, bytes and latency."""

    def __init__(self) -> None:
        self.count = self.bytes = self.lat_sum = self.lat_max = self.lat_n = 0

    def add(self, records: int, nbytes: int, lat_sum: int, lat_n: int, lat_max: int) -> None:
        self.count += records
        self.bytes += nbytes
        self.lat_sum += lat_sum
        self.lat_n += lat_n
        if lat_max > self.lat_max:
            self.lat_max = lat_max

    def stats(self, elapsed_s: float) -> dict[str, Any]:
        el = max(elapsed_s, 1e-9)
        return {
            "records": self.count,
            "records_per_sec": self.count / el,
            "mb_per_sec": self.bytes / MIB / el,
            "avg_latency_ms": self.lat_sum / max(self.lat_n, 1) / 1e6,
            "max_latency_ms": self.lat_max / 1e6,
        }


def _ensure_topic(data_dir: str, topic: str, partitions: int) -> int:
    from logq.errors import TopicExistsError
    from logq.storage.topics import TopicRegistry

    reg = TopicRegistry(data_dir)
    try:
        try:
            return reg.create(topic, partitions).partitions
        except TopicExistsError:
            return reg.get(topic).partitions
    finally:
        reg.close()


class _Meter:
    """The accounting of one produce run: Kafka's total and window accumulators, the sampled
    latencies, a window line every ``report_interval_s`` and the progress line.

    Times are ``time.perf_counter_ns()`` values; ``start`` is when the run began.
    """

    def __init__(
        self,
        start: int,
        record_size: int,
        throughput: float,
        report_interval_s: float,
        on_window: Callable[[dict[str, Any]], None] | None,
        progress: TerminalProgress | None,
    ) -> None:
        self.start, self.record_size, self.throughput = start, record_size, throughput
        self.interval_ns = int(report_interval_s * 1e9)
        self.on_window, self.progress = on_window, progress
        self.total, self.win = _Window(), _Window()
        self.samples: list[int] = []
        self.win_start, self.next_win = start, start + self.interval_ns

    def add(self, n: int, lat_sum: int, lat_n: int, lat_max: int) -> None:
        self.win.add(n, n * self.record_size, lat_sum, lat_n, lat_max)
        self.total.add(n, n * self.record_size, lat_sum, lat_n, lat_max)

    def window(self, now: int) -> None:
        """Close the current window: report it (progress line cleared first), start the next."""
        if self.on_window is not None:
            if self.progress is not None:
                self.progress.clear()
            self.on_window(self.win.stats((now - self.win_start) / 1e9))
        self.win, self.win_start, self.next_win = _Window(), now, now + self.interval_ns

    def throttle(self, sent: int, now: int) -> None:
        """Sleep until record ``sent`` is due at ``throughput`` records/s."""
        ahead = self.start + sent * 1e9 / self.throughput - now
        if ahead >= 1e6:  # sleep only when >= 1 ms ahead: sleep() is too coarse below that
            time.sleep(ahead / 1e9)


def _produce_batches(producer: Any, topic: str, pool: list[bytes], count: int, batch_size: int, m: _Meter) -> None:
    """``send_batch`` of ``batch_size`` values at a time; latency = one call."""
    clock = time.perf_counter_ns
    batches = [[pool[(k * batch_size + j) % len(pool)] for j in range(batch_size)] for k in range(8)]
    sent = k = 0
    while sent < count:
        now = clock()
        if m.throughput > 0:
            m.throttle(sent, now)
        if now >= m.next_win:
            m.window(now)
        n = min(batch_size, count - sent)
        vals = batches[k & 7] if n == batch_size else batches[k & 7][:n]
        t0 = clock()
        producer.send_batch(topic, vals)
        lat = clock() - t0
        m.samples.append(lat)
        m.add(n, lat, 1, lat)
        sent += n
        k += 1
        if m.progress is not None:
            m.progress.update(sent)


def _produce_each(producer: Any, topic: str, pool: list[bytes], count: int, every: int, m: _Meter) -> None:
    """One ``send`` per record; latency = the call to its future's completion.

    Records complete in send order, a batch at a time: send times and futures are kept in
    lists and every completed record is settled at once (sum/min over a slice); one
    latency in ``every`` is sampled for the percentiles.
    """
    clock = time.perf_counter_ns
    times: list[int] = []
    futs: list[Any] = []
    head = 0
    send = producer.send
    mask = len(pool) - 1

    def complete(now: int) -> None:
        nonlocal head
        i = head
        while i < len(futs) and futs[i].done():
            i += 1
        if i == head:
            return
        n = i - head
        chunk = times[head:i]
        m.add(n, n * now - sum(chunk), n, now - chunk[0])
        m.samples.extend([now - t for t in chunk[(-head) % every :: every]])
        head = i
        if head >= 65536:
            del times[:head], futs[:head]
            head = 0

    sent = 0
    while sent < count:
        t0 = clock()
        if m.throughput > 0 and sent % 64 == 0:
            m.throttle(sent, t0)
            t0 = clock()
        if t0 >= m.next_win:
            m.window(t0)
            if m.progress is not None:
                m.progress.update(sent)
        futs.append(send(topic, pool[sent & mask]))
        times.append(t0)
        sent += 1
        if futs[head].done():
            complete(clock())
    producer.flush()
    complete(clock())


def run_produce(
    data_dir: str,
    topic: str,
    num_records: int,
    record_size: int,
    *,
    throughput: float = -1,
    batch_size: int = 1000,
    fsync: str | None = None,
    compression_type: str | None = None,
    partitions: int = 1,
    mode: str = "send_batch",
    report_interval_s: float = 5.0,
    on_window: Callable[[dict[str, Any]], None] | None = None,
    progress: TerminalProgress | None = None,
) -> dict[str, Any]:
    """Produce ``num_records`` values (creating the topic if missing); Kafka's statistics, plus
    the producer's ``compression-rate-avg`` (bytes stored / bytes before compression)."""
    from logq.client.producer import Producer

    parts = _ensure_topic(data_dir, topic, partitions)
    pool = make_payloads(record_size)
    per_batch = batch_size * (record_size + 24) if mode == "send" else 16384
    producer = Producer(data_dir, batch_size=max(per_batch, 1), fsync=fsync, compression_type=compression_type)
    every = max(1, num_records // _LATENCY_SAMPLES) if mode == "send" else 1
    start = time.perf_counter_ns()
    m = _Meter(start, record_size, throughput, report_interval_s, on_window, progress)
    try:
        if mode == "send_batch":
            _produce_batches(producer, topic, pool, num_records, batch_size, m)
        else:
            _produce_each(producer, topic, pool, num_records, every, m)
        end = time.perf_counter_ns()
    finally:
        producer.close()
        if progress is not None:
            progress.clear()
    out = m.total.stats((end - start) / 1e9)
    summary = latency_summary(m.samples, "ms")
    out.update(
        {
            "p50_ms": summary["p50"],
            "p95_ms": summary["p95"],
            "p99_ms": summary["p99"],
            "p999_ms": summary["p999"],
            "elapsed_s": (end - start) / 1e9,
            "mode": mode,
            "fsync": fsync or "topic default",
            "compression_type": compression_type or "topic default",
            "compression_rate": producer.metrics()["compression-rate-avg"],
            "record_size": record_size,
            "batch_size": batch_size,
            "partitions": parts,
        }
    )
    return out


# --------------------------------------------------------------------------- consume
def run_consume(
    data_dir: str,
    topic: str,
    messages: int,
    *,
    group: str | None = None,
    timeout_ms: int = 10_000,
    fetch_size: int = MIB,
    max_poll_records: int = 500,
    progress: TerminalProgress | None = None,
) -> dict[str, Any]:
    """Consume ``messages`` records from the earliest offset (or the group's commits)."""
    from logq.client.consumer import Consumer

    start_wall = time.time()
    start = time.perf_counter()
    consumer = Consumer(
        data_dir,
        topic,
        group_id=group,
        auto_offset_reset="earliest",
        fetch_max_bytes=fetch_size,
        max_poll_records=max_poll_records,
    )
    joined = time.perf_counter()
    n = nbytes = 0
    last_data = joined
    timed_out = False
    try:
        while n < messages:
            recs = consumer.poll(timeout=0.2, max_records=min(max_poll_records, messages - n))
            now = time.perf_counter()
            if not recs:
                if (now - last_data) * 1000 >= timeout_ms:
                    timed_out = True
                    break
                continue
            last_data = now
            n += len(recs)
            nbytes += sum([len(r[5]) for r in recs if r[5] is not None]) + sum(
                [len(r[4]) for r in recs if r[4] is not None]
            )
            if progress is not None:
                progress.update(n)
        end = time.perf_counter()
    finally:
        if progress is not None:
            progress.clear()
        consumer.close()
    end_wall = start_wall + (end - start)
    total_s, fetch_s = max(end - start, 1e-9), max(end - joined, 1e-9)
    mb = nbytes / MIB
    fmt = "%Y-%m-%d %H:%M:%S:"

    def stamp(t: float) -> str:
        d = _dt.datetime.fromtimestamp(t)
        return d.strftime(fmt) + f"{d.microsecond // 1000:03d}"

    return {
        "start.time": stamp(start_wall),
        "end.time": stamp(end_wall),
        "data.consumed.in.MB": mb,
        "MB.sec": mb / total_s,
        "data.consumed.in.nMsg": n,
        "nMsg.sec": n / total_s,
        "rebalance.time.ms": int((joined - start) * 1000),
        "fetch.time.ms": int(fetch_s * 1000),
        "fetch.MB.sec": mb / fetch_s,
        "fetch.nMsg.sec": n / fetch_s,
        "timed_out": timed_out,
    }


# --------------------------------------------------------------------------- latency
STAMP = struct.Struct(">qq")  # send time (monotonic ns), sequence number


def stamped_value(seq: int, pad: bytes) -> bytes:
    return STAMP.pack(time.monotonic_ns(), seq) + pad


def paced(count: int, rate: float) -> Iterator[int]:
    """0 .. count-1, each when it is due at ``rate`` per second.

    Sleeps only when >= 1 ms ahead (sleep() is coarse), so records leave in small bursts.
    A system too slow for the rate is not waited for forever: past twice the planned time
    plus 5 s, the sequence stops early (the caller reports how many were sent).
    """
    start = time.monotonic_ns()
    give_up = start + int((2 * count / rate + 5) * 1e9)
    for i in range(count):
        ahead = start + i * 1e9 / rate - time.monotonic_ns()
        if ahead >= 1e6:
            time.sleep(ahead / 1e9)
        elif ahead < 0 and time.monotonic_ns() > give_up:
            return
        yield i


def more_to_receive(got: int, count: int, sent: Any) -> bool:
    """Consumer loop condition: ``sent.value`` is -1 until the producer says how many it sent."""
    n = sent.value
    return got < count and (n < 0 or got < n)


def _latency_producer(
    data_dir: str, topic: str, rate: float, count: int, record_size: int, fsync: str, sent: Any
) -> None:
    from logq.client.producer import Producer

    pad = b"x" * max(0, record_size - STAMP.size)
    n = 0
    with Producer(data_dir, linger_ms=0, fsync=fsync) as p:  # linger_ms=0: each send writes at once
        for i in paced(count, rate):
            p.send(topic, stamped_value(i, pad))
            n += 1
    sent.value = n


def _latency_consumer(data_dir: str, topic: str, count: int, budget_s: float, sent: Any, ready: Any, conn: Any) -> None:
    from logq.client.consumer import Consumer

    lat = np.zeros(count, dtype=np.int64)
    got = 0
    with Consumer(data_dir, topic, auto_offset_reset="earliest", max_poll_records=10_000) as c:
        ready.set()
        deadline = time.monotonic() + budget_s
        while more_to_receive(got, count, sent) and time.monotonic() < deadline:
            recs = c.poll(timeout=0.05)
            now = time.monotonic_ns()
            for r in recs:
                if got < count:
                    lat[got] = now - STAMP.unpack_from(r.value)[0]
                    got += 1
    conn.send_bytes(lat[:got].tobytes())
    conn.close()


def _child(target: Callable[..., None], *args: Any) -> None:
    """Run ``target`` in a worker process that leaves Ctrl-C to its parent.

    A terminal's Ctrl-C reaches the whole process group; the parent reports it in one line
    and terminates its workers, which would otherwise each print a traceback.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    target(*args)


def run_cross_process(
    producer: Callable[..., None],
    producer_args: tuple,
    consumer: Callable[..., None],
    consumer_args: tuple,
    count: int,
    seconds: float,
) -> tuple[np.ndarray, int]:
    """Latencies (ns) and records sent, from a spawned consumer and a spawned producer.

    ``consumer(*consumer_args, count, budget_s, sent, ready, conn)`` starts first, sets
    ``ready`` and sends back one int64 array of send-to-receive latencies;
    ``producer(*producer_args, sent)`` then sends (see :func:`paced`) and stores how many
    it sent in ``sent.value``. Both are bounded in time and terminated if they overstay.
    """
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    sent = ctx.Value("q", -1)
    recv, send = ctx.Pipe(duplex=False)
    produce_s = 2 * seconds + 5  # paced() gives up past this
    budget = produce_s + 30.0
    cons = ctx.Process(target=_child, args=(consumer, *consumer_args, count, budget, sent, ready, send), daemon=True)
    cons.start()
    send.close()
    prod = None
    try:
        give_up = time.monotonic() + _CHILD_TIMEOUT_S
        while not ready.wait(0.05):
            if not cons.is_alive() or time.monotonic() > give_up:
                raise WorkloadError(f"the latency consumer process did not start (exit code {cons.exitcode})")
        prod = ctx.Process(target=_child, args=(producer, *producer_args, sent), daemon=True)
        prod.start()
        prod.join(_CHILD_TIMEOUT_S + produce_s)
        if prod.exitcode != 0:
            raise WorkloadError(f"the latency producer process failed or overstayed (exit code {prod.exitcode})")
        if not recv.poll(budget + _CHILD_TIMEOUT_S):
            raise WorkloadError("the latency consumer process sent no result in time")
        data = recv.recv_bytes()
        cons.join(_CHILD_TIMEOUT_S)
        return np.frombuffer(data, dtype=np.int64), int(sent.value)
    except EOFError:
        raise WorkloadError(f"the latency consumer process failed (exit code {cons.exitcode})") from None
    finally:
        for p in (prod, cons):
            if p is not None and p.is_alive():
                p.terminate()
                p.join(5)
        recv.close()


def latency_result(lat_ns: np.ndarray, sent: int, rate: float, **extra: Any) -> dict[str, Any]:
    s = latency_summary(lat_ns, "us")
    out = {
        "records_sent": sent,
        "records_received": int(lat_ns.size),
        "rate": rate,
        "avg_us": s["avg"],
        "max_us": s["max"],
        "p50_us": s["p50"],
        "p95_us": s["p95"],
        "p99_us": s["p99"],
        "p999_us": s["p999"],
    }
    out.update(extra)
    return out


def run_latency(
    rate: float, seconds: float, *, record_size: int = 100, fsync: str = "never", work_dir: str | None = None
) -> dict[str, Any]:
    """Send-to-receive latency between a producer process and a consumer process."""
    count = max(1, int(rate * seconds))
    tmp = tempfile.mkdtemp(prefix="logq-perf-", dir=work_dir)
    try:
        _ensure_topic(tmp, "latency", 1)
        lat, sent = run_cross_process(
            _latency_producer,
            (tmp, "latency", rate, count, record_size, fsync),
            _latency_consumer,
            (tmp, "latency"),
            count,
            seconds,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return latency_result(lat, sent, rate, fsync=fsync, record_size=record_size)


# --------------------------------------------------------------------------- seek
def build_log(path: str, records: int, value_size: int = 100, batch: int = 1000) -> None:
    """A closed partition log of ``records`` values; batch k has timestamp T0_MS + k."""
    from logq.config import LogConfig
    from logq.storage.log import PartitionLog

    pool = make_payloads(value_size)
    vals = [pool[i % len(pool)] for i in range(batch)]
    with PartitionLog(path, LogConfig(retention_ms=-1)) as log:
        k = 0
        for first in range(0, records, batch):
            n = min(batch, records - first)
            log.append_values(vals if n == batch else vals[:n], timestamp_ms=T0_MS + k)
            k += 1


def run_seek(
    sizes: Sequence[int], *, targets: int = 1000, value_size: int = 100, batch: int = 1000, work_dir: str | None = None
) -> list[dict[str, Any]]:
    """Per size: time to fetch the batch of a random offset, and of a random timestamp.

    Each answer is checked (the batch holds the offset; batch k starts at k x ``batch``).
    """
    from logq.config import LogConfig
    from logq.storage.log import PartitionLog

    out = []
    rng = np.random.default_rng(1)
    for n in sizes:
        tmp = tempfile.mkdtemp(prefix="logq-perf-", dir=work_dir)
        try:
            build_log(os.path.join(tmp, "seek-0"), n, value_size, batch)
            log = PartitionLog(os.path.join(tmp, "seek-0"), LogConfig(retention_ms=-1), readonly=True)
            try:
                by_off, by_ts, lookups = [], [], []
                offs = rng.integers(0, n, size=targets)
                stamps = rng.integers(T0_MS, T0_MS + (n + batch - 1) // batch, size=targets)
                clock = time.perf_counter_ns
                for off, ts in zip(offs.tolist(), stamps.tolist()):
                    t0 = clock()
                    res = log.read(off, 1)
                    t1 = clock()
                    found = log.offset_for_timestamp(ts)
                    tl = clock()
                    res2 = log.read(found, 1) if found is not None else None
                    t2 = clock()
                    h = res.headers[0] if res.headers else None
                    if (
                        h is None
                        or not h.base_offset <= off <= h.last_offset
                        or found != (ts - T0_MS) * batch
                        or res2 is None
                        or not res2.headers
                    ):
                        raise WorkloadError(f"wrong seek result for offset {off} / timestamp {ts} (found {found})")
                    by_off.append(t1 - t0)
                    by_ts.append(t2 - t1)
                    lookups.append(tl - t1)
                size_mb, segments = log.size_bytes / MIB, log.num_segments
            finally:
                log.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        o, t, lk = np.asarray(by_off) / 1e3, np.asarray(by_ts) / 1e3, np.asarray(lookups) / 1e3
        out.append(
            {
                "records": n,
                "size_mb": size_mb,
                "segments": segments,
                "targets": targets,
                "offset_median_us": float(np.median(o)),
                "offset_min_us": float(o.min()),
                "offset_max_us": float(o.max()),
                "timestamp_median_us": float(np.median(t)),
                "timestamp_min_us": float(t.min()),
                "timestamp_max_us": float(t.max()),
                # the time-index lookup alone (offset_for_timestamp), without reading the batch
                "timestamp_lookup_median_us": float(np.median(lk)),
                "timestamp_lookup_min_us": float(lk.min()),
                "timestamp_lookup_max_us": float(lk.max()),
            }
        )
    return out
