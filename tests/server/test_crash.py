"""kill -9 of a `logq serve` process while an idempotent confluent-kafka producer sends with
acks=all to a durable topic (fsync="always"): after a restart on the same port, every
acknowledged record is in the log exactly once, and the producer reconnected on its own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

from logq import Admin, Consumer


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


def test_kill_9_loses_no_acknowledged_record_and_duplicates_none(root: str) -> None:
    import confluent_kafka as ck

    with Admin(root) as a:
        a.create_topic("durable", partitions=2, fsync="always")
    port = _free_port()
    proc = _start(root, port)
    acked: list[bytes] = []
    errors: list[str] = []

    def on_delivery(err: object, msg: object) -> None:
        if err is None:
            acked.append(msg.value())  # type: ignore[attr-defined]
        else:
            errors.append(str(err))

    p = ck.Producer(
        {
            "bootstrap.servers": f"127.0.0.1:{port}",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 200,
            "message.timeout.ms": 60_000,
        }
    )
    stop = threading.Event()

    def send() -> None:
        i = 0
        while not stop.is_set():
            try:
                p.produce("durable", key=b"%d" % (i % 7), value=b"%08d" % i, on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            p.poll(0.001)

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
        left = p.flush(60)
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
