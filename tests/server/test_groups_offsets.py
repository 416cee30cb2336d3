"""Committed offsets over `logq serve` are the group's logq offsets, with real clients.

Commit and resume (a new consumer continues where the last commit says), metadata strings
round-trip, offsets committed over the network are what ``Admin.committed_offsets`` and
``logq groups describe`` show, offsets committed by an embedded consumer are where a network
consumer of the same group starts, and one group is embedded or served, never both at once.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from typing import Any

import logq
import pytest
from click.testing import CliRunner
from logq import Admin, GroupServedError, Server

N = 20
WAIT_S = 30.0


@pytest.fixture
def topic(root: str) -> str:
    Admin(root).create_topic("r", partitions=1)
    with logq.Producer(root) as p:
        for i in range(N):
            p.send("r", b"v%d" % i, partition=0)
    return "r"


# ----------------------------------------------------------------------------- per client


def kp_read_commit(bootstrap: str, group: str, count: int, metadata: str) -> list[int]:
    from kafka import KafkaConsumer
    from kafka.structs import OffsetAndMetadata, TopicPartition

    c = KafkaConsumer(
        "r", bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    got: list[int] = []
    deadline = time.monotonic() + WAIT_S
    while len(got) < count and time.monotonic() < deadline:
        for recs in c.poll(200, max_records=count - len(got)).values():
            got += [r.offset for r in recs]
    if count:
        c.commit({TopicPartition("r", 0): OffsetAndMetadata(got[-1] + 1, metadata, -1)})
        assert c.committed(TopicPartition("r", 0), metadata=True).metadata == metadata
    c.close(autocommit=False)
    return got


def rdk_read_commit(bootstrap: str, group: str, count: int, metadata: str) -> list[int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe(["r"])
    got: list[int] = []
    deadline = time.monotonic() + WAIT_S
    while len(got) < count and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            got.append(m.offset())
    if count:
        c.commit(offsets=[TopicPartition("r", 0, got[-1] + 1, metadata=metadata)], asynchronous=False)
        (tp,) = c.committed([TopicPartition("r", 0)], timeout=10)
        assert (tp.offset, tp.metadata) == (got[-1] + 1, metadata)
    c.close()
    return got


def aio_read_commit(bootstrap: str, group: str, count: int, metadata: str) -> list[int]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import OffsetAndMetadata, TopicPartition

    async def main() -> list[int]:
        c = AIOKafkaConsumer(
            "r", bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
        )
        await c.start()
        got: list[int] = []
        try:
            deadline = time.monotonic() + WAIT_S
            while len(got) < count and time.monotonic() < deadline:
                for recs in (await c.getmany(timeout_ms=200, max_records=count - len(got))).values():
                    got += [r.offset for r in recs]
            if count:
                await c.commit({TopicPartition("r", 0): OffsetAndMetadata(got[-1] + 1, metadata)})
                assert await c.committed(TopicPartition("r", 0)) == got[-1] + 1
        finally:
            await c.stop()
        return got

    return asyncio.run(main())


CLIENTS: dict[str, Any] = {
    "kafka-python": kp_read_commit,
    "confluent-kafka": rdk_read_commit,
    "aiokafka": aio_read_commit,
}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_commit_then_a_new_consumer_resumes_from_the_committed_offset(
    server: Server, root: str, bootstrap: str, topic: str, client: str
) -> None:
    read = CLIENTS[client]
    assert read(bootstrap, "g", 7, "first part") == list(range(7))
    assert Admin(root).committed_offsets("g") == {("r", 0): 7}
    assert read(bootstrap, "g", 5, "second part") == list(range(7, 12))
    assert Admin(root).committed_offsets("g") == {("r", 0): 12}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_offsets_committed_by_an_embedded_consumer_are_where_a_network_consumer_starts(
    server: Server, root: str, bootstrap: str, topic: str, client: str
) -> None:
    with logq.Consumer(root, "r", group_id="g", auto_offset_reset="earliest", enable_auto_commit=False) as c:
        deadline = time.monotonic() + WAIT_S
        while not c.assignment() and time.monotonic() < deadline:
            c.poll(0.1)
        c.commit({logq.TopicPartition("r", 0): 15})
    assert CLIENTS[client](bootstrap, "g", 3, "") == [15, 16, 17]


def test_network_commit_and_members_show_in_logq_groups_describe(
    server: Server, root: str, bootstrap: str, topic: str
) -> None:
    from kafka import KafkaConsumer
    from kafka.structs import OffsetAndMetadata, TopicPartition

    c = KafkaConsumer("r", bootstrap_servers=bootstrap, group_id="g", auto_offset_reset="earliest")
    try:
        deadline = time.monotonic() + WAIT_S
        while not c.assignment() and time.monotonic() < deadline:
            c.poll(100)
        c.commit({TopicPartition("r", 0): OffsetAndMetadata(9, "", -1)})
        from logq.cli.app import main as cli

        out = CliRunner().invoke(cli, ["--data", root, "groups", "describe", "g", "--json"])
        assert out.exit_code == 0, out.output
        rows = [json.loads(line) for line in out.output.splitlines() if line.strip()]
        row = next(r for r in rows if r["partition"] == 0)
        assert (row["currentOffset"], row["lag"]) == (9, N - 9)
        assert row["consumerId"].startswith(c.config["client_id"])  # the network member owns it
    finally:
        c.close(autocommit=False)
    assert Admin(root).describe_group("g").state == "Empty"
    assert Admin(root).committed_offsets("g") == {("r", 0): 9}


def test_embedded_member_cannot_join_a_group_served_to_network_members(
    server: Server, root: str, bootstrap: str, topic: str
) -> None:
    from kafka import KafkaConsumer

    c = KafkaConsumer("r", bootstrap_servers=bootstrap, group_id="g", auto_offset_reset="earliest")
    try:
        deadline = time.monotonic() + WAIT_S
        while not c.assignment() and time.monotonic() < deadline:
            c.poll(100)
        with pytest.raises(GroupServedError) as err:
            with logq.Consumer(root, "r", group_id="g") as emb:
                emb.poll(0.5)
        assert "logq serve" in str(err.value) and err.value.group == "g"
    finally:
        c.close()
    with logq.Consumer(root, "r", group_id="g", auto_offset_reset="earliest") as emb:  # given back when empty
        deadline = time.monotonic() + WAIT_S
        while not emb.assignment() and time.monotonic() < deadline:
            emb.poll(0.1)
        assert emb.assignment() == {("r", 0)}


def refused_join_error(client: str, bootstrap: str) -> str:
    """The error a client reports when its JoinGroup is refused (the name of Kafka's code)."""
    if client == "kafka-python":
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        c = KafkaConsumer("r", bootstrap_servers=bootstrap, group_id="g")
        try:
            c.poll(5000)
        except KafkaError as e:
            return type(e).__name__
        finally:
            c.close(autocommit=False)
        return "no error"
    if client == "confluent-kafka":
        from confluent_kafka import Consumer

        rc = Consumer({"bootstrap.servers": bootstrap, "group.id": "g", "log_level": 0})
        rc.subscribe(["r"])
        try:
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                m = rc.poll(0.2)
                if m is not None and m.error() is not None:
                    return str(m.error().name())
        finally:
            rc.close()
        return "no error"
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaError as AioKafkaError

    async def main() -> str:
        ac = AIOKafkaConsumer("r", bootstrap_servers=bootstrap, group_id="g")
        try:
            await ac.start()
        except AioKafkaError as e:
            return type(e).__name__
        finally:
            await ac.stop()
        return "no error"

    return asyncio.run(main())


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_network_join_is_refused_while_embedded_members_are_live(
    server: Server, root: str, bootstrap: str, topic: str, caplog: pytest.LogCaptureFixture, client: str
) -> None:
    with logq.Consumer(root, "r", group_id="g", auto_offset_reset="earliest") as emb:
        emb.poll(0.2)
        assert refused_join_error(client, bootstrap) in (
            "InconsistentGroupProtocolError",
            "INCONSISTENT_GROUP_PROTOCOL",
        )
    assert any("embedded logq member" in r.getMessage() for r in caplog.records)


def test_admin_commit_from_a_manually_assigned_consumer(server: Server, root: str, bootstrap: str, topic: str) -> None:
    from kafka import KafkaConsumer
    from kafka.structs import OffsetAndMetadata, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id="manual", enable_auto_commit=False)
    c.assign([TopicPartition("r", 0)])
    c.commit({TopicPartition("r", 0): OffsetAndMetadata(4, "by hand", -1)})
    assert c.committed(TopicPartition("r", 0), metadata=True) == OffsetAndMetadata(4, "by hand", -1)
    c.close()
    assert Admin(root).committed_offsets("manual") == {("r", 0): 4}


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (Debian package kcat)")
def test_kcat_balanced_consumer_reads_and_commits_the_group_offsets(server: Server, root: str, bootstrap: str) -> None:
    Admin(root).create_topic("k", partitions=2)
    with logq.Producer(root) as p:
        for i in range(6):
            p.send("k", b"v%d" % i, partition=i % 2)
    out = subprocess.run(
        ["kcat", "-b", bootstrap, "-G", "kg", "-o", "beginning", "-e", "-q", "-f", "%p %o %s\\n", "k"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.splitlines()) == ["0 0 v0", "0 1 v2", "0 2 v4", "1 0 v1", "1 1 v3", "1 2 v5"]
    assert Admin(root).committed_offsets("kg") == {("k", 0): 3, ("k", 1): 3}
