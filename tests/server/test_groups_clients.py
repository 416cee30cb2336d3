"""Consumer groups of `logq serve` with real clients in real processes.

For kafka-python, aiokafka and confluent-kafka: two consumer processes split a topic's
partitions; when one leaves (close) or is killed (kill -9, the survivor takes over after
the session timeout) the other gets every partition. Short session timeouts (3 s: 1.5 s let a
heartbeat thread starved by a loaded machine evict a live member) keep it quick;
every wait is bounded so a failure fails instead of hanging (no timing is asserted).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from logq import Admin, Server

PARTITIONS = 4
WAIT_S = 60.0

CHILD = r"""
import sys, threading, json
client, bootstrap, group, topic, strategy = sys.argv[1:6]
stop = threading.Event()

def watch_stdin():
    for line in sys.stdin:
        if line.strip() == "leave":
            break
    stop.set()

threading.Thread(target=watch_stdin, daemon=True).start()
last = None

def report(parts):
    global last
    parts = sorted(parts)
    if parts != last:
        last = parts
        print("ASSIGNED " + json.dumps(parts), flush=True)

if client == "kafka-python":
    from kafka import KafkaConsumer
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, session_timeout_ms=3000,
                      heartbeat_interval_ms=300, max_poll_interval_ms=20000, auto_offset_reset="earliest",
                      enable_auto_commit=False)
    while not stop.is_set():
        c.poll(100)
        report([tp.partition for tp in c.assignment()])
    c.close()
elif client == "confluent-kafka":
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "session.timeout.ms": 3000,
                  "heartbeat.interval.ms": 300, "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "partition.assignment.strategy": strategy})
    c.subscribe([topic])
    while not stop.is_set():
        c.poll(0.1)
        report([tp.partition for tp in c.assignment()])
    c.close()
else:
    import asyncio
    from aiokafka import AIOKafkaConsumer
    async def main():
        c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, session_timeout_ms=3000,
                             heartbeat_interval_ms=300, auto_offset_reset="earliest", enable_auto_commit=False)
        await c.start()
        while not stop.is_set():
            await c.getmany(timeout_ms=100)
            report([tp.partition for tp in c.assignment()])
        await c.stop()
    asyncio.run(main())
print("CLOSED", flush=True)
"""


class Child:
    """One consumer process; its ASSIGNED lines are collected by a reader thread."""

    def __init__(self, client: str, bootstrap: str, group: str, topic: str, strategy: str = "range") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, client, bootstrap, group, topic, strategy],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.assigned: list[int] | None = None
        self.closed = False
        self._cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        import json

        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cv:
                if line.startswith("ASSIGNED "):
                    self.assigned = json.loads(line[9:])
                elif line.startswith("CLOSED"):
                    self.closed = True
                self._cv.notify_all()

    def leave(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("leave\n")
        self.proc.stdin.flush()
        assert self.proc.wait(WAIT_S) == 0

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(WAIT_S)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT_S)


def wait_for(children: list[Child], want: list[list[int]]) -> None:
    """Until the children report exactly the given assignments (order of ``want`` free)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        got = sorted((c.assigned or []) for c in children)
        if got == sorted(want):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"assignments {got}, wanted {sorted(want)}")
        time.sleep(0.05)


def split_of(children: list[Child]) -> list[list[int]]:
    return [c.assigned or [] for c in children]


@pytest.fixture
def children() -> Iterator[list[Child]]:
    made: list[Child] = []
    yield made
    for c in made:
        c.stop()


CASES = [
    ("kafka-python", "range"),
    ("aiokafka", "roundrobin"),
    ("confluent-kafka", "range"),
    ("confluent-kafka", "cooperative-sticky"),
]


@pytest.mark.parametrize("how", ["leave", "kill"])
@pytest.mark.parametrize(("client", "strategy"), CASES)
def test_two_processes_split_partitions_and_the_survivor_takes_all(
    server: Server, root: str, bootstrap: str, children: list[Child], client: str, strategy: str, how: str
) -> None:
    Admin(root).create_topic("t", partitions=PARTITIONS)
    a = Child(client, bootstrap, "g", "t", strategy)
    children.append(a)
    wait_for([a], [[0, 1, 2, 3]])
    b = Child(client, bootstrap, "g", "t", strategy)
    children.append(b)
    deadline = time.monotonic() + WAIT_S
    while not (a.assigned and b.assigned and len(a.assigned) == len(b.assigned) == 2):
        assert time.monotonic() < deadline, f"no split: {split_of([a, b])}"
        time.sleep(0.05)
    assert sorted(a.assigned + b.assigned) == [0, 1, 2, 3]
    info = Admin(root).describe_group("g")  # network members are group members in logq's files
    assert len(info.members) == 2 and info.state in ("Stable", "Rebalancing")
    if how == "leave":
        b.leave()
    else:
        b.kill()
    wait_for([a], [[0, 1, 2, 3]])
    deadline = time.monotonic() + WAIT_S
    while len(Admin(root).describe_group("g").members) != 1:  # the member file of b is gone
        assert time.monotonic() < deadline
        time.sleep(0.05)
    a.leave()
    assert a.closed
    assert Admin(root).describe_group("g").state == "Empty"


def test_static_members_restart_into_their_place(server: Server, root: str, bootstrap: str) -> None:
    from confluent_kafka import Consumer
    from kafka import KafkaConsumer

    Admin(root).create_topic("s", partitions=2)
    ids = []
    for _ in range(2):  # session timeout far longer than the test: the restart replaces the old id
        c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "st",
                "group.instance.id": "worker-1",
                "session.timeout.ms": 60000,
            }
        )
        c.subscribe(["s"])
        deadline = time.monotonic() + WAIT_S
        while not c.assignment() and time.monotonic() < deadline:
            c.poll(0.05)
        assert sorted(p.partition for p in c.assignment()) == [0, 1]
        (member,) = Admin(root).describe_group("st").members
        assert member.startswith("worker-1-")
        ids.append(member)
        c.close()
    assert ids[0] != ids[1]
    for _ in range(2):
        k = KafkaConsumer(
            "s", bootstrap_servers=bootstrap, group_id="st2", group_instance_id="w1", session_timeout_ms=60000
        )
        deadline = time.monotonic() + WAIT_S
        while not k.assignment() and time.monotonic() < deadline:
            k.poll(50)
        assert sorted(p.partition for p in k.assignment()) == [0, 1]
        k.close()


@pytest.mark.parametrize("client", ["confluent-kafka", "kafka-python"])
def test_a_group_member_rejoins_after_the_server_restarts(root: str, client: str) -> None:
    import logq

    Admin(root).create_topic("r", partitions=1)
    with logq.Producer(root) as p:
        for i in range(5):
            p.send("r", b"before %d" % i)
    first = Server(root, port=0).start()
    port = first.port
    second: Server | None = None
    got: list[int] = []
    poll, commit, close = _in_process_consumer(client, f"127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + WAIT_S
        while len(got) < 5 and time.monotonic() < deadline:
            got += poll()
        commit()
        first.stop()
        second = Server(root, port=port).start()
        with logq.Producer(root) as p:
            for i in range(5):
                p.send("r", b"after %d" % i)
        deadline = time.monotonic() + WAIT_S
        while len(set(got)) < 10 and time.monotonic() < deadline:
            got += poll()
        commit()
        assert sorted(set(got)) == list(range(10))
        assert Admin(root).committed_offsets("rs") == {("r", 0): 10}
    finally:
        close()
        first.stop()
        if second is not None:
            second.stop()


def _in_process_consumer(client: str, bootstrap: str) -> tuple[Any, Any, Any]:
    """(poll() -> offsets, commit(), close()) of a consumer of topic r in group rs."""
    if client == "confluent-kafka":
        from confluent_kafka import Consumer

        c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "rs",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 3000,
                "heartbeat.interval.ms": 300,
                "reconnect.backoff.max.ms": 200,
                "log_level": 0,
            }
        )
        c.subscribe(["r"])

        def poll() -> list[int]:
            m = c.poll(0.1)
            return [m.offset()] if m is not None and m.error() is None else []

        def commit() -> None:
            deadline = time.monotonic() + WAIT_S
            while True:  # a commit during the rejoin is refused: retry, as applications do
                try:
                    c.commit(asynchronous=False)
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    c.poll(0.1)

        return poll, commit, c.close
    from kafka import KafkaConsumer

    k = KafkaConsumer(
        "r",
        bootstrap_servers=bootstrap,
        group_id="rs",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=3000,
        heartbeat_interval_ms=300,
        reconnect_backoff_max_ms=200,
    )

    def kpoll() -> list[int]:
        return [r.offset for recs in k.poll(100).values() for r in recs]

    def kcommit() -> None:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                k.commit()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                k.poll(100)

    return kpoll, kcommit, lambda: k.close(autocommit=False)
