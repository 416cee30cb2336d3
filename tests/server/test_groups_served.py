"""The files of a group served to network members (logq/groups/served.py): what logq's tools
see, the embedded-or-served rule, and a `logq serve` killed with kill -9."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import logq
import pytest
from logq import Admin, GroupNotEmptyError, GroupServedError
from logq.groups.member import GroupMember
from logq.groups.served import ServedGroup, is_served

INFO = {"topics": {"t": 2}, "session_ms": 3000, "max_poll_ms": 30000, "pid": os.getpid(), "network": True}


def test_one_server_serves_a_group_and_embedded_members_are_refused_meanwhile(root: str) -> None:
    Admin(root).create_topic("t", partitions=2)
    first = ServedGroup(root, "g")
    first.acquire()
    try:
        with pytest.raises(GroupServedError, match="another logq serve"):
            ServedGroup(root, "g").acquire()
        with pytest.raises(GroupServedError, match="logq serve coordinates it") as err:
            GroupMember(root, "g", lambda: {"t": 2}, heartbeat_thread=False)
        assert err.value.group == "g" and err.value.hint
    finally:
        first.release()
    assert not is_served(first.gdir)
    with GroupMember(root, "g", lambda: {"t": 2}, heartbeat_thread=False):
        with pytest.raises(GroupServedError, match="1 embedded logq member"):
            ServedGroup(root, "g").acquire()


def test_published_members_are_group_members_for_every_logq_tool(root: str) -> None:
    Admin(root).create_topic("t", partitions=2)
    Admin(root).reset_offsets("g", {("t", 0): 0})
    sg = ServedGroup(root, "g")
    sg.acquire()
    sg.publish(5, {"net-1": INFO, "net-2": INFO}, {"net-1": [("t", 0)], "net-2": [("t", 1)]})
    info = Admin(root).describe_group("g")
    assert (info.state, info.generation, sorted(info.members)) == ("Stable", 5, ["net-1", "net-2"])
    assert {(p.partition, p.consumer_id) for p in info.partitions} == {(0, "net-1"), (1, "net-2")}
    with pytest.raises(GroupNotEmptyError):
        Admin(root).reset_offsets("g", {("t", 0): 0})
    sg.publish(6, {"net-1": INFO}, {"net-1": [("t", 0), ("t", 1)]})
    info = Admin(root).describe_group("g")
    assert info.members == ["net-1"] and {p.consumer_id for p in info.partitions} == {"net-1"}
    sg.release()
    sg.release()  # twice is fine
    info = Admin(root).describe_group("g")
    assert (info.state, info.members) == ("Empty", [])
    Admin(root).reset_offsets("g", {("t", 0): 0})


def test_the_generation_continues_from_the_files(root: str) -> None:
    Admin(root).create_topic("t", partitions=2)
    with GroupMember(root, "g", lambda: {"t": 2}, heartbeat_thread=False) as m:
        m.poll_assignment()
        gen = m.generation
    sg = ServedGroup(root, "g")
    assert sg.acquire() >= gen >= 1
    sg.release()


SERVE = """
import sys, logq
srv = logq.Server(sys.argv[1], port=0)
with srv:
    print(srv.port, flush=True)
    sys.stdin.read()
"""


def test_a_server_killed_with_kill_9_leaves_the_group_to_embedded_members(root: str) -> None:
    from kafka import KafkaConsumer

    Admin(root).create_topic("t", partitions=2)
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, root], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        c = KafkaConsumer("t", bootstrap_servers=f"127.0.0.1:{port}", group_id="g", reconnect_backoff_max_ms=100)
        deadline = time.monotonic() + 30
        while not c.assignment() and time.monotonic() < deadline:
            c.poll(100)
        member = Admin(root).describe_group("g").members
        assert len(member) == 1 and re.match(r"kafka-python", member[0])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert Admin(root).describe_group("g").members == []  # its flocks went with it
        with logq.Consumer(root, "t", group_id="g") as emb:
            deadline = time.monotonic() + 30
            while len(emb.assignment()) < 2 and time.monotonic() < deadline:
                emb.poll(0.1)
            assert emb.assignment() == {("t", 0), ("t", 1)}
        c.close(autocommit=False)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
