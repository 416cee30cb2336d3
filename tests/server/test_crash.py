"""kill -9 of a `logq serve` process while an idempotent producer (confluent-kafka, and
kafka-python) sends with acks=all to a durable topic (fsync="always"): after a restart on
the same port, every acknowledged record is in the log exactly once, and the producer
reconnected on its own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from logq import Admin, Consumer

Ack = Callable[[bytes], None]
Fail = Callable[[str], None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(root: str, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "logq", "serve", "--data", root, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "listening on" in line, line
    return proc


class _Confluent:
    def __init__(self, bootstrap: str, ack: Ack, fail: Fail) -> None:
        import confluent_kafka as ck

        self.ack, self.fail = ack, fail
        self.p = ck.Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                "reconnect.backoff.ms": 50,
                "reconnect.backoff.max.ms": 200,
                "message.timeout.ms": 60_000,
            }
        )

    def _done(self, err: Any, msg: Any) -> None:
        if err is None:
            self.ack(msg.value())
        else:
            self.fail(str(err))

    def send(self, key: bytes, value: bytes) -> None:
        try:
            self.p.produce("durable", key=key, value=value, on_delivery=self._done)
        except BufferError:
            pass
        self.p.poll(0.001)

    def flush(self) -> int:
        return int(self.p.flush(60))


class _KafkaPython:
    def __init__(self, bootstrap: str, ack: Ack, fail: Fail) -> None:
        from kafka import KafkaProducer

        self.ack, self.fail = ack, fail
        self.p = KafkaProducer(
            bootstrap_servers=bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=2,
            reconnect_backoff_ms=50,
            reconnect_backoff_max_ms=200,
            delivery_timeout_ms=60_000,
            request_timeout_ms=10_000,
        )

    def send(self, key: bytes, value: bytes) -> None:
        fut = self.p.send("durable", key=key, value=value)
        fut.add_callback(lambda _md: self.ack(value))
        fut.add_errback(lambda e: self.fail(repr(e)))
        time.sleep(0.0005)

    def flush(self) -> int:
        self.p.flush(60)
        self.p.close(10)
        return 0


@pytest.mark.parametrize("client", [_Confluent, _KafkaPython], ids=["confluent-kafka", "kafka-python"])
def test_kill_9_loses_no_acknowledged_record_and_duplicates_none(root: str, client: Any) -> None:
    with Admin(root) as a:
        a.create_topic("durable", partitions=2, fsync="always")
    port = _free_port()
    proc = _start(root, port)
    acked: list[bytes] = []
    errors: list[str] = []
    producer = client(f"127.0.0.1:{port}", acked.append, errors.append)
    stop = threading.Event()

    def send() -> None:
        i = 0
        while not stop.is_set():
            producer.send(b"%d" % (i % 7), b"%08d" % i)
            i += 1

    sender = threading.Thread(target=send)
    sender.start()
    try:
        deadline = time.monotonic() + 30
        while len(acked) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before_kill = len(acked)
        time.sleep(0.3)
        proc = _start(root, port)
        deadline = time.monotonic() + 30
        while len(acked) < before_kill + 300 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        sender.join()
        left = producer.flush()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0  # SIGTERM: a clean stop
    assert left == 0 and not errors, errors[:3]
    assert len(acked) >= before_kill + 300  # it reconnected and went on
    with Consumer(root, "durable", group_id=None, auto_offset_reset="earliest") as c:
        stored: list[bytes] = []
        while True:
            got = c.poll(timeout=1)
            if not got:
                break
            stored += [r.value for r in got]
    counts = Counter(stored)
    assert [v for v, n in counts.items() if n > 1] == []  # no duplicates
    assert set(acked) <= set(counts)  # no acknowledged record lost
