"""Share groups over the wire with a real client: confluent-kafka's ShareConsumer
(librdkafka's KIP-932 client) against `logq serve`, in one group with embedded
``logq.ShareConsumer`` members in other processes (logq/server/handlers/share.py).

Each test checks what a user sees: every record delivered to someone and finished once,
acknowledgements of both kinds of member durable in the group's files, a released record
delivered again with its delivery count one higher, a rejected one archived and written to
the dead-letter topic, and the records of a member killed with kill -9 (the network client,
or the server itself) delivered again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from logq import Admin, Consumer, Producer, Server, ShareConsumer

ck = pytest.importorskip("confluent_kafka")
if not hasattr(ck, "ShareConsumer"):
    pytest.skip("confluent-kafka without ShareConsumer", allow_module_level=True)

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _net_consumer(port: int, group: str, **extra: Any) -> Any:
    conf = {
        "bootstrap.servers": f"127.0.0.1:{port}",
        "group.id": group,
        "socket.timeout.ms": 3000,
        **extra,
    }
    c = ck.ShareConsumer(conf)
    c.subscribe(["jobs"])
    return c


def _poll_until(c: Any, n: int, timeout_s: float = 30.0) -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        for m in c.poll(0.5):
            assert m.error() is None, m.error()
            out.append(m)
    return out


def _produce(root: str, n: int, partitions: int = 1) -> None:
    with Producer(root) as p:
        for i in range(n):
            p.send("jobs", b"job-%d" % i, partition=i % partitions)


def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


EMBEDDED_WORKER = """
import json, os, sys, time
import logq
root, stop = sys.argv[1], sys.argv[2]
with logq.ShareConsumer(root, "jobs", group_id="workers", auto_offset_reset="earliest",
                        acknowledgement_mode="explicit") as sc:
    print("ready", flush=True)
    while True:
        records = sc.poll(timeout=0.2, max_records=5)
        for r in records:
            time.sleep(0.02)  # slow work: the network member gets its share meanwhile
            sc.acknowledge(r, "accept")
            print(json.dumps([r.partition, r.offset, r.delivery_count]), flush=True)
        sc.commit()
        if not records and os.path.exists(stop):
            break
"""


@pytest.fixture
def served(root: str) -> Iterator[Server]:
    Admin(root).create_topic("jobs", partitions=2)
    with Server(root, port=0, share_auto_offset_reset="earliest") as s:
        yield s


def test_network_and_embedded_share_consumers_finish_every_record_exactly_once(
    root: str, served: Server, tmp_path: Any
) -> None:
    total = 300
    _produce(root, total, partitions=2)
    stop = str(tmp_path / "stop")
    worker = _spawn(EMBEDDED_WORKER, root, stop)
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "ready"
    c = _net_consumer(served.port, "workers")
    net: list[tuple[int, int, int]] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            msgs = c.poll(0.5)
            net += [(m.partition(), m.offset(), m.delivery_count()) for m in msgs]
            if msgs:
                c.commit_sync()  # implicit mode: the records of the last poll are accepted
            info = Admin(root).describe_share_group("workers").info
            if sum(p.totals.get("acknowledged", 0) for p in info.partitions) == total:
                break
    finally:
        c.close()
        open(stop, "w").close()
        out, _ = worker.communicate(timeout=30)
    embedded = [tuple(json.loads(line)) for line in out.splitlines() if line.startswith("[")]
    done = [(p, o) for p, o, _ in net] + [(p, o) for p, o, _ in embedded]
    assert sorted(done) == sorted((i % 2, i // 2) for i in range(total))  # each once, none lost
    assert net and embedded  # the two kinds of member shared the partitions
    assert {d for _, _, d in net + embedded} == {1}
    info = Admin(root).describe_share_group("workers").info
    assert {(p.partition, p.start_offset, p.end_offset) for p in info.partitions} == {(0, 150, 150), (1, 150, 150)}
    # durable: a new member of the group finds nothing left to do
    with ShareConsumer(root, "jobs", group_id="workers", auto_offset_reset="earliest") as sc:
        assert sc.poll(timeout=0.5) == []


def test_release_is_delivered_again_with_count_plus_one_and_reject_is_dead_lettered(root: str) -> None:
    Admin(root).create_topic("jobs", partitions=1)
    Admin(root).create_topic("dlq", partitions=1)
    _produce(root, 3)
    with Server(root, port=0, share_auto_offset_reset="earliest", share_dead_letter_topic="dlq") as srv:
        c = _net_consumer(srv.port, "acks", **{"share.acknowledgement.mode": "explicit"})
        try:
            first = sorted(_poll_until(c, 3), key=lambda m: m.offset())
            assert [(m.offset(), m.delivery_count()) for m in first] == [(0, 1), (1, 1), (2, 1)]
            c.acknowledge(first[0], ck.AcknowledgeType.ACCEPT)
            c.acknowledge(first[1], ck.AcknowledgeType.RELEASE)
            c.acknowledge(first[2], ck.AcknowledgeType.REJECT)
            assert all(err is None for err in c.commit_sync().values())
            again = _poll_until(c, 1)
            assert [(m.offset(), m.value(), m.delivery_count()) for m in again] == [(1, b"job-1", 2)]
            c.acknowledge(again[0], ck.AcknowledgeType.ACCEPT)
            assert all(err is None for err in c.commit_sync().values())
        finally:
            c.close()
    with Consumer(root, "dlq", group_id=None, auto_offset_reset="earliest") as dead:
        letters = dead.poll(timeout=5)
    assert [r.value for r in letters] == [b"job-2"]
    headers = dict(letters[0].headers)
    assert headers["__dlq.errors.offset"] == b"2" and headers["__dlq.errors.reason"] == b"rejected"
    assert headers["__dlq.errors.group"] == b"acks" and headers["__dlq.errors.delivery_count"] == b"1"
    (part,) = Admin(root).describe_share_group("acks").info.partitions
    assert (part.start_offset, part.totals.get("acknowledged"), part.totals.get("rejected")) == (3, 2, 1)


NET_WORKER = """
import sys, time
import confluent_kafka as ck
c = ck.ShareConsumer({"bootstrap.servers": "127.0.0.1:" + sys.argv[1], "group.id": "crash",
                      "share.acknowledgement.mode": "explicit"})
c.subscribe(["jobs"])
got = 0
while got < int(sys.argv[2]):
    for m in c.poll(0.5):
        got += 1
        print(m.offset(), flush=True)
time.sleep(600)  # holds the records, acknowledges nothing
"""


def test_kill_9_of_a_network_consumer_returns_its_records_after_its_session_timeout(root: str) -> None:
    Admin(root).create_topic("jobs", partitions=1)
    _produce(root, 5)
    with Server(
        root,
        port=0,
        share_auto_offset_reset="earliest",
        share_session_timeout_ms=1500,
        share_heartbeat_interval_ms=300,
        share_lock_duration_ms=600_000,  # the lock outlives the test: only the dead session frees them
    ) as srv:
        proc = _spawn(NET_WORKER, str(srv.port), "5")
        try:
            assert proc.stdout is not None
            held = sorted(int(proc.stdout.readline()) for _ in range(5))
            assert held == [0, 1, 2, 3, 4]
            with ShareConsumer(root, "jobs", group_id="crash", lock_duration_ms=600_000) as sc:
                assert sc.poll(timeout=0.3) == []  # a live network member holds them
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                back: list[Any] = []
                deadline = time.monotonic() + 30
                while len(back) < 5 and time.monotonic() < deadline:
                    back += sc.poll(timeout=1)
                assert sorted((r.offset, r.delivery_count) for r in back) == [(i, 2) for i in range(5)]
        finally:
            proc.kill()
            proc.wait()


SERVER = """
import sys, time
import logq
with logq.Server(sys.argv[1], port=0, share_auto_offset_reset="earliest",
                 share_lock_duration_ms=600_000) as s:
    print(s.port, flush=True)
    time.sleep(600)
"""


def test_kill_9_of_the_server_returns_the_records_its_network_members_held(root: str) -> None:
    Admin(root).create_topic("jobs", partitions=1)
    _produce(root, 4)
    proc = _spawn(SERVER, root)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        c = _net_consumer(port, "served", **{"share.acknowledgement.mode": "explicit", "socket.timeout.ms": 1000})
        try:
            assert sorted(m.offset() for m in _poll_until(c, 4)) == [0, 1, 2, 3]
            with ShareConsumer(root, "jobs", group_id="served", lock_duration_ms=600_000) as sc:
                assert sc.poll(timeout=0.3) == []
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                back = sc.poll(timeout=10)
                assert sorted((r.offset, r.delivery_count) for r in back) == [(i, 2) for i in range(4)]
        finally:
            c.close()
    finally:
        proc.kill()
        proc.wait()


def test_close_without_commit_releases_the_last_poll_which_is_delivered_again(root: str, served: Server) -> None:
    # librdkafka 2.16's close() sends no acknowledgement for the last poll of an implicit-mode
    # consumer (its closing ShareAcknowledge carries none): closing the share session releases
    # those records, and the next member gets them with the delivery counted
    _produce(root, 6, partitions=2)
    c = _net_consumer(served.port, "implicit")
    assert len(_poll_until(c, 6)) == 6
    c.close()
    info = Admin(root).describe_share_group("implicit").info
    assert info.members == [] and {p.start_offset for p in info.partitions} == {0}
    with ShareConsumer(root, "jobs", group_id="implicit") as sc:
        back = sc.poll(timeout=5)
    assert sorted((r.partition, r.offset, r.delivery_count) for r in back) == [
        (p, o, 2) for p in (0, 1) for o in range(3)
    ]


def test_two_network_share_consumers_split_the_records_without_duplicates(root: str, served: Server) -> None:
    _produce(root, 400, partitions=2)
    a = _net_consumer(served.port, "pair", **{"max.poll.records": 20})
    b = _net_consumer(served.port, "pair", **{"max.poll.records": 20})
    seen: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}
    deadline = time.monotonic() + 60
    try:
        while len(seen["a"]) + len(seen["b"]) < 400 and time.monotonic() < deadline:
            for name, c in (("a", a), ("b", b)):
                msgs = c.poll(0.2)
                seen[name] += [(m.partition(), m.offset()) for m in msgs]
                if msgs:
                    c.commit_sync()
    finally:
        a.close()
        b.close()
    assert sorted(seen["a"] + seen["b"]) == sorted((i % 2, i // 2) for i in range(400))
    assert seen["a"] and seen["b"]


EMBEDDED_HOLDER = """
import sys, time
import logq
with logq.ShareConsumer(sys.argv[1], "jobs", group_id="held", auto_offset_reset="earliest",
                        acknowledgement_mode="explicit", lock_duration_ms=600_000) as sc:
    got = sc.poll(timeout=10)
    print(len(got), flush=True)
    time.sleep(600)  # holds them, acknowledges nothing
"""


def test_records_of_a_killed_embedded_member_go_to_a_waiting_network_consumer(root: str, served: Server) -> None:
    _produce(root, 4, partitions=1)
    holder = _spawn(EMBEDDED_HOLDER, root)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "4"
        c = _net_consumer(served.port, "held")
        try:
            assert len(c.poll(1.0)) == 0  # all four are held by the embedded member
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait()
            back = _poll_until(c, 4)
            assert sorted((m.partition(), m.offset(), m.delivery_count()) for m in back) == [
                (0, o, 2) for o in range(4)
            ]
            c.commit_sync()
        finally:
            c.close()
    finally:
        holder.kill()
        holder.wait()
