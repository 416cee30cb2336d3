"""Every advertised version of the group APIs, spoken on the wire (requests encoded by kio,
the library the server decodes with; the real clients use one version each)."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from kio.index import load_payload_module
from kio.static.constants import EntityType
from logq import Admin, Server
from logq.server import kio_api
from logq.server.consumer_protocol import assignment_partitions, encode_assignment
from logq.server.handlers.groups import VERSIONS

from tests.server import wire

FIND, JOIN, HEARTBEAT, LEAVE, SYNC, COMMIT, FETCH, DESCRIBE, LIST = 10, 11, 12, 13, 14, 8, 9, 15, 16


def versions(key: int) -> list[int]:
    lo, hi = VERSIONS[key]
    return [v for v in range(lo, hi + 1) if kio_api.has_request(key, v)]


class Conn:
    def __init__(self, port: int) -> None:
        self.sock: socket.socket = wire.connect(port)
        self.corr = 0

    def call(self, api: int, version: int, **fields: Any) -> Any:
        self.corr += 1
        req = kio_api.make(wire.request_class(api, version), **fields)
        self.sock.sendall(wire.request_frame(api, version, self.corr, req, client_id="wire-test"))
        corr, resp = wire.decode_response(api, version, wire.read_frame(self.sock))
        assert corr == self.corr
        return resp


def nested(key: int, version: int, name: str) -> Any:
    return getattr(load_payload_module(key, version, EntityType.request), name)


def subscription(topics: list[str]) -> bytes:
    out = b"\x00\x00" + len(topics).to_bytes(4, "big")
    for t in topics:
        out += len(t).to_bytes(2, "big") + t.encode()
    return out + b"\x00\x00\x00\x00"


def join(c: Conn, v: int, group: str, member_id: str = "") -> Any:
    proto = kio_api.make(nested(JOIN, v, "JoinGroupRequestProtocol"), name="range", metadata=subscription(["t"]))
    return c.call(
        JOIN,
        v,
        group_id=group,
        session_timeout=kio_api.millis(10_000),
        rebalance_timeout=kio_api.millis(10_000),
        member_id=member_id,
        group_instance_id=None,
        protocol_type="consumer",
        protocols=(proto,),
        reason=None,
    )


@pytest.mark.parametrize("v", versions(JOIN))
def test_join_sync_heartbeat_describe_leave_at_each_version(server: Server, root: str, v: int) -> None:
    Admin(root).create_topic("t", partitions=2)
    sv, hv, lv = min(v, max(versions(SYNC))), min(v, max(versions(HEARTBEAT))), min(v, max(versions(LEAVE)))
    c = Conn(server.port)
    r = join(c, v, "wg")
    if v >= 4:
        assert r.error_code == 79 and r.member_id  # MEMBER_ID_REQUIRED, then join with it
        r = join(c, v, "wg", r.member_id)
    assert r.error_code == 0 and r.leader == r.member_id and r.generation_id >= 1
    assert [m.member_id for m in r.members] == [r.member_id]
    if v >= 7:
        assert (r.protocol_type, r.protocol_name) == ("consumer", "range")
    me, gen = r.member_id, r.generation_id
    plan = encode_assignment([("t", 0), ("t", 1)])
    assignment = kio_api.make(nested(SYNC, sv, "SyncGroupRequestAssignment"), member_id=me, assignment=plan)
    s = c.call(
        SYNC,
        sv,
        group_id="wg",
        generation_id=gen,
        member_id=me,
        group_instance_id=None,
        protocol_type="consumer",
        protocol_name="range",
        assignments=(assignment,),
    )
    assert s.error_code == 0 and assignment_partitions(s.assignment) == [("t", 0), ("t", 1)]
    hb = c.call(HEARTBEAT, hv, group_id="wg", generation_id=gen, member_id=me, group_instance_id=None)
    assert hb.error_code == 0
    bad = c.call(HEARTBEAT, hv, group_id="wg", generation_id=gen + 5, member_id=me, group_instance_id=None)
    assert bad.error_code == 22  # ILLEGAL_GENERATION
    unknown = c.call(HEARTBEAT, hv, group_id="wg", generation_id=gen, member_id="nobody", group_instance_id=None)
    assert unknown.error_code == 25  # UNKNOWN_MEMBER_ID
    info = Admin(root).describe_group("wg")
    assert info.members == [me] and info.state == "Stable"
    assert {(p.topic, p.partition): p.consumer_id for p in info.partitions} == {("t", 0): me, ("t", 1): me}
    if lv >= 3:
        who = kio_api.make(nested(LEAVE, lv, "MemberIdentity"), member_id=me, group_instance_id=None, reason=None)
        left = c.call(LEAVE, lv, group_id="wg", members=(who,))
        assert left.error_code == 0 and [m.error_code for m in left.members] == [0]
    else:
        assert c.call(LEAVE, lv, group_id="wg", member_id=me).error_code == 0
    assert Admin(root).describe_group("wg").state == "Empty"
    c.sock.close()


@pytest.mark.parametrize("v", versions(COMMIT))
def test_offset_commit_and_fetch_at_each_version_keep_metadata(server: Server, root: str, v: int) -> None:
    Admin(root).create_topic("t", partitions=2)
    from logq import Producer

    with Producer(root) as p:
        for i in range(5):
            p.send("t", b"x", partition=0)
    c = Conn(server.port)
    part = kio_api.make(
        nested(COMMIT, v, "OffsetCommitRequestPartition"),
        partition_index=0,
        committed_offset=3,
        committed_leader_epoch=-1,
        committed_metadata=f"v{v}",
    )
    beyond = kio_api.make(
        nested(COMMIT, v, "OffsetCommitRequestPartition"),
        partition_index=1,
        committed_offset=9,
        committed_leader_epoch=-1,
        committed_metadata=None,
    )
    topics = (
        kio_api.make(nested(COMMIT, v, "OffsetCommitRequestTopic"), name="t", partitions=(part, beyond)),
        kio_api.make(nested(COMMIT, v, "OffsetCommitRequestTopic"), name="nope", partitions=(part,)),
    )
    r = c.call(
        COMMIT,
        v,
        group_id="cg",
        generation_id_or_member_epoch=-1,
        generation_id=-1,
        member_id="",
        group_instance_id=None,
        retention_time=kio_api.millis(-1),
        topics=topics,
    )
    errors = {(t.name, p.partition_index): p.error_code for t in r.topics for p in t.partitions}
    assert errors == {("t", 0): 0, ("t", 1): 1, ("nope", 0): 3}  # stored / beyond the log end / no topic
    assert Admin(root).committed_offsets("cg") == {("t", 0): 3}
    fv = min(v, max(versions(FETCH)))
    got = fetch(c, fv, "cg", [0, 1])
    assert got == {0: (3, f"v{v}"), 1: (-1, "")}


def fetch(c: Conn, v: int, group: str, partitions: list[int]) -> dict[int, tuple[int, str]]:
    if v >= 8:
        t = kio_api.make(nested(FETCH, v, "OffsetFetchRequestTopics"), name="t", partition_indexes=tuple(partitions))
        g = kio_api.make(nested(FETCH, v, "OffsetFetchRequestGroup"), group_id=group, topics=(t,))
        r = c.call(FETCH, v, groups=(g,), require_stable=False)
        (grp,) = r.groups
        assert grp.error_code == 0
        topics = grp.topics
    else:
        t = kio_api.make(nested(FETCH, v, "OffsetFetchRequestTopic"), name="t", partition_indexes=tuple(partitions))
        topics = c.call(FETCH, v, group_id=group, topics=(t,), require_stable=False).topics
    return {p.partition_index: (p.committed_offset, p.metadata) for t in topics for p in t.partitions}


@pytest.mark.parametrize("v", [v for v in versions(FETCH) if v >= 2])
def test_offset_fetch_of_every_committed_offset(server: Server, root: str, v: int) -> None:
    Admin(root).create_topic("t", partitions=1)
    from logq import Producer

    with Producer(root) as p:
        p.send("t", b"x")
    Admin(root).reset_offsets("all", {("t", 0): 1})
    c = Conn(server.port)
    if v >= 8:
        g = kio_api.make(nested(FETCH, v, "OffsetFetchRequestGroup"), group_id="all", topics=None)
        (grp,) = c.call(FETCH, v, groups=(g,), require_stable=False).groups
        topics = grp.topics
    else:
        topics = c.call(FETCH, v, group_id="all", topics=None, require_stable=False).topics
    assert [(t.name, p.partition_index, p.committed_offset) for t in topics for p in t.partitions] == [("t", 0, 1)]


@pytest.mark.parametrize("v", versions(FIND))
def test_find_coordinator_names_this_broker(server: Server, v: int) -> None:
    c = Conn(server.port)
    r = c.call(FIND, v, key="g", key_type=0, coordinator_keys=("g", "h"))
    if v >= 4:
        assert [(x.key, x.node_id, x.port, x.error_code) for x in r.coordinators] == [
            ("g", 0, server.port, 0),
            ("h", 0, server.port, 0),
        ]
    else:
        assert (r.error_code, r.node_id, r.host, r.port) == (0, 0, "127.0.0.1", server.port)
    if v >= 1:
        txn = c.call(FIND, v, key="tx", key_type=1, coordinator_keys=("tx",))
        assert (txn.coordinators[0].error_code if v >= 4 else txn.error_code) == 15


@pytest.mark.parametrize("v", versions(LIST))
def test_list_and_describe_groups_show_network_and_embedded_groups(server: Server, root: str, v: int) -> None:
    Admin(root).create_topic("t", partitions=1)
    from logq import Consumer

    c = Conn(server.port)
    r = join(c, 5, "net")
    r = join(c, 5, "net", r.member_id)
    with Consumer(root, "t", group_id="emb") as emb:
        emb.poll(0.1)
        listed = c.call(LIST, v, states_filter=())
        assert {g.group_id for g in listed.groups} == {"net", "emb"}
        assert {g.protocol_type for g in listed.groups} == {"consumer"}
        if v >= 4:
            states = {g.group_id: g.group_state for g in listed.groups}
            assert states == {"net": "CompletingRebalance", "emb": "Stable"}
            only = c.call(LIST, v, states_filter=("Stable",))
            assert [g.group_id for g in only.groups] == ["emb"]
        for dv in versions(DESCRIBE):
            d = c.call(DESCRIBE, dv, groups=("net", "emb", "ghost", "bad group!"), include_authorized_operations=False)
            by = {g.group_id: g for g in d.groups}
            assert by["net"].group_state == "CompletingRebalance" and by["net"].protocol_data == "range"
            assert [m.member_id for m in by["net"].members] == [r.member_id]
            assert by["emb"].group_state == "Stable" and len(by["emb"].members) == 1
            assert (by["ghost"].group_state, by["ghost"].error_code) == ("Dead", 0)
            assert by["bad group!"].error_code == 24  # INVALID_GROUP_ID


def test_a_join_waiting_at_shutdown_is_answered_not_coordinator(root: str) -> None:
    Admin(root).create_topic("t", partitions=1)
    server = Server(root, port=0).start()
    try:
        a, b = Conn(server.port), Conn(server.port)
        r = join(a, 3, "sd")
        assert r.error_code == 0
        b.corr += 1  # b's join waits for a to rejoin, which it never does
        proto = kio_api.make(nested(JOIN, 3, "JoinGroupRequestProtocol"), name="range", metadata=subscription(["t"]))
        req = kio_api.make(
            wire.request_class(JOIN, 3),
            group_id="sd",
            session_timeout=kio_api.millis(10_000),
            rebalance_timeout=kio_api.millis(60_000),
            member_id="",
            protocol_type="consumer",
            protocols=(proto,),
        )
        b.sock.sendall(wire.request_frame(JOIN, 3, b.corr, req))
        for _ in range(1000):  # until the server has b's join: a is told to rejoin
            hb = a.call(HEARTBEAT, 1, group_id="sd", generation_id=r.generation_id, member_id=r.member_id)
            if hb.error_code == 27:
                break
        assert hb.error_code == 27
    finally:
        server.stop()
    _, resp = wire.decode_response(JOIN, 3, wire.read_frame(b.sock))
    assert resp.error_code == 16  # NOT_COORDINATOR: the client looks for the coordinator again


DELETE = 42


@pytest.mark.parametrize("v", versions(DELETE))
def test_delete_groups_deletes_empty_groups_only(server: Server, root: str, v: int) -> None:
    from logq import Consumer

    Admin(root).create_topic("t", partitions=1)
    Admin(root).reset_offsets("old", {("t", 0): 0})
    c = Conn(server.port)
    r = join(c, 5, "busy")
    join(c, 5, "busy", r.member_id)
    with Consumer(root, "t", group_id="emb") as emb:
        emb.poll(0.1)
        d = c.call(DELETE, v, groups_names=("old", "busy", "emb", "ghost", "bad group!"))
    assert {x.group_id: x.error_code for x in d.results} == {
        "old": 0,
        "busy": 68,  # NON_EMPTY_GROUP: a network member
        "emb": 68,  # an embedded member
        "ghost": 69,  # GROUP_ID_NOT_FOUND
        "bad group!": 24,
    }
    assert "old" not in Admin(root).list_groups() and Admin(root).committed_offsets("old") == {}


def test_kafka_python_admin_lists_describes_reads_and_deletes_groups(server: Server, root: str, bootstrap: str) -> None:
    from kafka import KafkaAdminClient
    from kafka.structs import OffsetAndMetadata, TopicPartition

    Admin(root).create_topic("t", partitions=1)
    Admin(root).reset_offsets("gone", {("t", 0): 0})
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        assert admin.list_groups() == [{"group_id": "gone", "protocol_type": "consumer", "group_state": "Empty"}]
        assert admin.describe_groups(["gone"])["gone"]["group_state"] == "Empty"
        assert admin.list_group_offsets("gone") == {"gone": {TopicPartition("t", 0): OffsetAndMetadata(0, "", -1)}}
        assert admin.delete_groups(["gone", "ghost"]) == {"gone": "OK", "ghost": "GroupIdNotFoundError"}
    finally:
        admin.close()
    assert "gone" not in Admin(root).list_groups()


def test_confluent_admin_lists_describes_reads_and_deletes_groups(server: Server, root: str, bootstrap: str) -> None:
    from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions
    from confluent_kafka.admin import AdminClient

    Admin(root).create_topic("t", partitions=1)
    Admin(root).reset_offsets("gone", {("t", 0): 0})
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    listed = admin.list_consumer_groups().result(10)
    assert [(g.group_id, g.state) for g in listed.valid] == [("gone", ConsumerGroupState.EMPTY)]
    described = admin.describe_consumer_groups(["gone"])["gone"].result(10)
    assert (described.state, described.members) == (ConsumerGroupState.EMPTY, [])
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("gone")])["gone"].result(10)
    assert [(tp.topic, tp.partition, tp.offset) for tp in offsets.topic_partitions] == [("t", 0, 0)]
    assert admin.delete_consumer_groups(["gone"])["gone"].result(10) is None
    assert "gone" not in Admin(root).list_groups()


def test_many_groups_commit_with_a_bounded_number_of_open_stores(
    server: Server, root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from logq.server import group_service

    monkeypatch.setattr(group_service, "MAX_OPEN_STORES", 3)
    Admin(root).create_topic("t", partitions=1)
    from logq import Producer

    with Producer(root) as p:
        p.send("t", b"x")
    c = Conn(server.port)
    for i in range(8):
        part = kio_api.make(
            nested(COMMIT, 3, "OffsetCommitRequestPartition"),
            partition_index=0,
            committed_offset=1,
            committed_metadata=str(i),
        )
        topic = kio_api.make(nested(COMMIT, 3, "OffsetCommitRequestTopic"), name="t", partitions=(part,))
        r = c.call(
            COMMIT,
            3,
            group_id=f"many{i}",
            generation_id=-1,
            member_id="",
            retention_time=kio_api.millis(-1),
            topics=(topic,),
        )
        assert r.topics[0].partitions[0].error_code == 0
    assert all(fetch(c, 3, f"many{i}", [0]) == {0: (1, str(i))} for i in range(8))
    svc = server._broker.extensions["groups"]  # type: ignore[union-attr]
    assert len(svc._stores) == 3
