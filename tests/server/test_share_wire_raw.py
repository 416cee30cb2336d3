"""The share-group APIs on the wire, request by request (encoded by kio, the library the
server decodes with): membership epochs, share-session epochs, acknowledgement errors, the
records and acquired ranges of a ShareFetch, and what ApiVersions and Metadata tell a share
consumer. The real client (confluent-kafka) is in test_share_wire.py."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kio.index import load_payload_module
from kio.static.constants import EntityType
from logq import Admin, Consumer, Producer, Server, ShareConsumer
from logq.codec.batch import read_header
from logq.errors import ConfigError
from logq.server import kio_api

from tests.server import wire

HB, FETCH, ACK, METADATA, API_VERSIONS = 76, 78, 79, 3, 18
INVALID_REQUEST, UNKNOWN_MEMBER_ID, UNKNOWN_TOPIC_ID, FENCED_MEMBER_EPOCH = 42, 25, 100, 110
INVALID_RECORD_STATE, SHARE_SESSION_NOT_FOUND, INVALID_SHARE_SESSION_EPOCH = 121, 122, 123


def nested(key: int, name: str, version: int = 1) -> Any:
    return getattr(load_payload_module(key, version, EntityType.request), name)


class Conn:
    def __init__(self, port: int) -> None:
        self.sock: socket.socket = wire.connect(port)
        self.corr = 0
        self.topic_id = uuid.UUID(int=0)  # of "jobs", set from Metadata

    def call(self, api: int, version: int, **fields: Any) -> Any:
        self.corr += 1
        req = kio_api.make(wire.request_class(api, version), **fields)
        self.sock.sendall(wire.request_frame(api, version, self.corr, req, client_id="share-wire"))
        corr, resp = wire.decode_response(api, version, wire.read_frame(self.sock))
        assert corr == self.corr
        return resp

    def heartbeat(self, member: str, epoch: int, topics: tuple[str, ...] | None = ("jobs",)) -> Any:
        return self.call(HB, 1, group_id="g", member_id=member, member_epoch=epoch, subscribed_topic_names=topics)

    def fetch(
        self,
        member: str,
        epoch: int,
        parts: dict[int, list[Any]],
        *,
        max_records: int = 100,
        wait_ms: int = 0,
        version: int = 1,
        **extra: Any,
    ) -> Any:
        topics = (
            nested(FETCH, "FetchTopic", version)(
                topic_id=self.topic_id,
                partitions=tuple(
                    nested(FETCH, "FetchPartition", version)(partition_index=p, acknowledgement_batches=tuple(b))
                    for p, b in parts.items()
                ),
            ),
        )
        return self.call(
            FETCH,
            version,
            group_id="g",
            member_id=member,
            share_session_epoch=epoch,
            max_wait=kio_api.millis(wait_ms),
            min_bytes=1,
            max_bytes=1 << 20,
            max_records=max_records,
            batch_size=max_records,
            topics=topics if parts else (),
            forgotten_topics_data=(),
            **extra,
        )

    def ack(self, member: str, epoch: int, parts: dict[int, list[Any]], version: int = 1) -> Any:
        topics = (
            nested(ACK, "AcknowledgeTopic", version)(
                topic_id=self.topic_id,
                partitions=tuple(
                    nested(ACK, "AcknowledgePartition", version)(partition_index=p, acknowledgement_batches=tuple(b))
                    for p, b in parts.items()
                ),
            ),
        )
        return self.call(ACK, version, group_id="g", member_id=member, share_session_epoch=epoch, topics=topics)


def batch(key: int, first: int, last: int, *types: int, version: int = 1) -> Any:
    return nested(key, "AcknowledgementBatch", version)(first_offset=first, last_offset=last, acknowledge_types=types)


def acquired(resp: Any) -> list[tuple[int, int, int, int]]:
    """(partition, first, last, delivery count) of a ShareFetch response."""
    assert resp.error_code == 0, resp
    return sorted(
        (p.partition_index, a.first_offset, a.last_offset, a.delivery_count)
        for t in resp.responses
        for p in t.partitions
        for a in p.acquired_records
    )


def part_field(resp: Any, name: str) -> dict[int, Any]:
    return {p.partition_index: getattr(p, name) for t in resp.responses for p in t.partitions}


@pytest.fixture
def conn(root: str) -> Iterator[Conn]:
    Admin(root).create_topic("jobs", partitions=2)
    with Producer(root) as p:
        for i in range(6):
            p.send("jobs", b"r%d" % i, partition=i % 2)
    with Server(root, port=0, share_auto_offset_reset="earliest", share_lock_duration_ms=60_000) as srv:
        c = Conn(srv.port)
        md = c.call(
            METADATA,
            12,
            topics=(nested(METADATA, "MetadataRequestTopic", 12)(topic_id=None, name="jobs"),),
            allow_auto_topic_creation=False,
            include_topic_authorized_operations=False,
        )
        c.topic_id = md.topics[0].topic_id
        yield c
        c.sock.close()


def test_api_versions_advertise_share_apis_at_v1_and_metadata_with_topic_ids(conn: Conn) -> None:
    resp = conn.call(API_VERSIONS, 3, client_software_name="t", client_software_version="1")
    ranges = {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}
    assert ranges[HB] == (1, 1) and ranges[FETCH] == ranges[ACK] == (1, 2)
    assert ranges[METADATA] == (0, 12)


def test_metadata_v12_names_a_topic_by_its_id_and_refuses_an_unknown_id(conn: Conn) -> None:
    topic = nested(METADATA, "MetadataRequestTopic", 12)
    resp = conn.call(
        METADATA,
        12,
        topics=(topic(topic_id=conn.topic_id, name=None), topic(topic_id=uuid.uuid4(), name=None)),
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
    )
    assert [(t.name, t.error_code, len(t.partitions)) for t in resp.topics] == [
        ("jobs", 0, 2),
        (None, UNKNOWN_TOPIC_ID, 0),
    ]
    assert conn.topic_id != uuid.UUID(int=0)


def test_heartbeat_epochs_join_fence_and_leave(conn: Conn) -> None:
    joined = conn.heartbeat("m1", 0)
    assert (joined.error_code, joined.member_id, joined.member_epoch) == (0, "m1", 1)
    (tp,) = joined.assignment.topic_partitions
    assert (tp.topic_id, tuple(tp.partitions)) == (conn.topic_id, (0, 1))  # every member gets every partition
    assert conn.heartbeat("m1", 1, None).member_epoch == 1  # null subscription: unchanged
    assert conn.heartbeat("m1", 7).error_code == FENCED_MEMBER_EPOCH
    assert conn.heartbeat("nobody", 3).error_code == UNKNOWN_MEMBER_ID
    left = conn.heartbeat("m1", -1)
    assert (left.error_code, left.member_epoch) == (0, -1)
    assert conn.heartbeat("m1", 1).error_code == UNKNOWN_MEMBER_ID
    assert conn.fetch("m1", 0, {0: []}).error_code == UNKNOWN_MEMBER_ID


def test_share_fetch_returns_whole_batches_and_the_acquired_ranges(conn: Conn) -> None:
    conn.heartbeat("m1", 0)
    resp = conn.fetch("m1", 0, {0: [], 1: []})
    assert acquired(resp) == [(0, 0, 2, 1), (1, 0, 2, 1)]
    assert kio_api.timestamp_ms(resp.acquisition_lock_timeout) == 60_000
    for p, records in part_field(resp, "records").items():
        header = read_header(bytes(records), 0)
        assert header.base_offset == 0 and header.last_offset_delta >= 0, p
    again = conn.fetch("m1", 1, {})
    assert acquired(again) == []  # everything is held by m1 already


def test_share_session_epochs_are_checked(conn: Conn) -> None:
    conn.heartbeat("m1", 0)
    assert conn.fetch("m1", 3, {0: []}).error_code == SHARE_SESSION_NOT_FOUND
    assert conn.ack("m1", 0, {0: [batch(ACK, 0, 0, 1)]}).error_code == INVALID_SHARE_SESSION_EPOCH
    assert conn.fetch("m1", 0, {0: []}).error_code == 0
    assert conn.fetch("m1", 5, {}).error_code == INVALID_SHARE_SESSION_EPOCH
    assert conn.fetch("m1", 1, {}).error_code == 0
    assert conn.ack("m1", 2, {0: [batch(ACK, 0, 0, 1)]}).error_code == 0
    assert conn.fetch("m1", 3, {}).error_code == 0


def test_acknowledgements_accept_release_reject_and_a_record_not_held(conn: Conn, root: str) -> None:
    conn.heartbeat("m1", 0)
    assert acquired(conn.fetch("m1", 0, {0: []})) == [(0, 0, 2, 1)]
    # per-offset types: 0 accept, 1 release, 2 reject
    resp = conn.ack("m1", 1, {0: [batch(ACK, 0, 2, 1, 2, 3)]})
    assert part_field(resp, "error_code") == {0: 0}
    info = {p.partition: p for p in Admin(root).describe_share_group("g").info.partitions}
    assert info[0].totals.get("acknowledged") == 1 and info[0].totals.get("rejected") == 1
    redelivered = conn.fetch("m1", 2, {})
    assert acquired(redelivered) == [(0, 1, 1, 2)]
    # offset 0 is not held any more: refused, the rest applied
    resp = conn.fetch("m1", 3, {0: [batch(FETCH, 0, 1, 1)]})
    assert part_field(resp, "acknowledge_error_code") == {0: INVALID_RECORD_STATE}
    assert Admin(root).describe_share_group("g").info.partitions[0].start_offset == 3


def test_a_malformed_acknowledgement_batch_is_invalid_request(conn: Conn) -> None:
    conn.heartbeat("m1", 0)
    conn.fetch("m1", 0, {0: []})
    assert part_field(conn.ack("m1", 1, {0: [batch(ACK, 0, 2, 1, 1)]}), "error_code") == {0: INVALID_REQUEST}
    assert part_field(conn.ack("m1", 2, {0: [batch(ACK, 0, 0, 9)]}), "error_code") == {0: INVALID_REQUEST}
    assert part_field(conn.ack("m1", 3, {0: [batch(ACK, 2, 0, 1)]}), "error_code") == {0: INVALID_REQUEST}


def test_two_members_never_hold_one_record_and_a_closed_session_releases(conn: Conn) -> None:
    conn.heartbeat("m1", 0)
    conn.heartbeat("m2", 0)
    first = acquired(conn.fetch("m1", 0, {0: [], 1: []}, max_records=4))
    second = acquired(conn.fetch("m2", 0, {0: [], 1: []}))
    offsets = lambda rs: {(p, o) for p, a, b, _ in rs for o in range(a, b + 1)}  # noqa: E731
    assert len(offsets(first)) == 4 and len(offsets(second)) == 2
    assert not offsets(first) & offsets(second)
    closed = conn.ack("m1", -1, {})
    assert closed.error_code == 0
    back = acquired(conn.fetch("m2", 1, {}))
    assert offsets(back) == offsets(first) and {c for *_, c in back} == {2}  # released, counted


def test_a_long_poll_is_woken_by_an_append(conn: Conn, root: str) -> None:
    conn.heartbeat("m1", 0)
    conn.fetch("m1", 0, {0: [], 1: []})  # takes all six

    def append() -> None:
        time.sleep(0.3)
        with Producer(root) as p:
            p.send("jobs", b"late", partition=1)

    t = threading.Thread(target=append)
    t.start()
    resp = conn.fetch("m1", 1, {}, wait_ms=20_000)
    t.join()
    assert acquired(resp) == [(1, 3, 3, 1)]


def test_embedded_and_raw_members_share_records(conn: Conn, root: str) -> None:
    conn.heartbeat("m1", 0)
    with ShareConsumer(root, "jobs", group_id="g", auto_offset_reset="earliest") as sc:
        mine = {(r.partition, r.offset) for r in sc.poll(timeout=1, max_records=3)}
        theirs = acquired(conn.fetch("m1", 0, {0: [], 1: []}))
        net = {(p, o) for p, a, b, _ in theirs for o in range(a, b + 1)}
        assert len(mine) == 3 and len(net) == 3 and not mine & net


def test_an_invalid_group_id_is_refused(conn: Conn) -> None:
    resp = conn.call(HB, 1, group_id="no/slashes", member_id="m1", member_epoch=0, subscribed_topic_names=("jobs",))
    assert resp.error_code == 24  # INVALID_GROUP_ID
    assert (
        conn.call(HB, 1, group_id="g", member_id="m1", member_epoch=0, subscribed_topic_names=("jobs",)).error_code == 0
    )


@pytest.mark.parametrize(
    "setting",
    [
        {"share_lock_duration_ms": 0},
        {"share_delivery_count_limit": "5"},
        {"share_session_timeout_ms": -1},
        {"share_auto_offset_reset": "middle"},
        {"share_dead_letter_topic": 7},
    ],
)
def test_wrong_share_settings_are_config_errors(root: str, setting: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=next(iter(setting))):
        Server(root, port=0, **setting)


def test_a_rejected_record_goes_to_a_dead_letter_topic_created_on_first_use(root: str) -> None:
    Admin(root).create_topic("jobs", partitions=1)
    with Producer(root) as p:
        p.send("jobs", b"poison", key=b"k")
    with Server(root, port=0, share_auto_offset_reset="earliest", share_dead_letter_topic="dead") as srv:
        c = Conn(srv.port)
        c.topic_id = _topic_id(c)
        c.heartbeat("m1", 0)
        assert acquired(c.fetch("m1", 0, {0: []})) == [(0, 0, 0, 1)]
        assert part_field(c.ack("m1", 1, {0: [batch(ACK, 0, 0, 3)]}), "error_code") == {0: 0}
        c.sock.close()
    with Consumer(root, "dead", group_id=None, auto_offset_reset="earliest") as dead:
        (letter,) = dead.poll(timeout=5)
    assert (letter.key, letter.value, dict(letter.headers)["__dlq.errors.reason"]) == (b"k", b"poison", b"rejected")


def _topic_id(c: Conn) -> uuid.UUID:
    topic = nested(METADATA, "MetadataRequestTopic", 12)(topic_id=None, name="jobs")
    md = c.call(
        METADATA, 12, topics=(topic,), allow_auto_topic_creation=False, include_topic_authorized_operations=False
    )
    return md.topics[0].topic_id


def test_a_network_member_is_a_live_member_until_the_server_stops_then_its_records_return(root: str) -> None:
    Admin(root).create_topic("jobs", partitions=1)
    with Producer(root) as p:
        for i in range(3):
            p.send("jobs", b"r%d" % i)
    with Server(root, port=0, share_auto_offset_reset="earliest") as srv:
        c = Conn(srv.port)
        c.topic_id = _topic_id(c)
        c.heartbeat("m1", 0)
        assert acquired(c.fetch("m1", 0, {0: []})) == [(0, 0, 2, 1)]
        (member,) = Admin(root).describe_share_group("g").info.members
        assert member.startswith("net-")
        c.sock.close()
    assert Admin(root).describe_share_group("g").info.members == []
    with ShareConsumer(root, "jobs", group_id="g") as sc:
        back = sc.poll(timeout=5)
    assert sorted((r.offset, r.delivery_count) for r in back) == [(0, 2), (1, 2), (2, 2)]


def test_acknowledgements_sent_after_the_leave_still_apply_as_librdkafka_closes(conn: Conn, root: str) -> None:
    conn.heartbeat("m1", 0)
    assert acquired(conn.fetch("m1", 0, {0: []})) == [(0, 0, 2, 1)]
    assert conn.heartbeat("m1", -1).error_code == 0  # librdkafka leaves first...
    closing = conn.ack("m1", -1, {0: [batch(ACK, 0, 2, 1)]})  # ...then closes the session
    assert closing.error_code == 0 and part_field(closing, "error_code") == {0: 0}
    (part,) = [p for p in Admin(root).describe_share_group("g").info.partitions if p.partition == 0]
    assert (part.start_offset, part.totals.get("acknowledged")) == (3, 3)
    assert Admin(root).describe_share_group("g").info.members == []
    late = conn.ack("m1", -1, {0: [batch(ACK, 0, 0, 1)]})  # nothing left to close
    assert late.error_code == 0 and part_field(late, "error_code") == {0: INVALID_RECORD_STATE}


def test_v2_renew_extends_the_lock_and_is_refused_in_v1_and_for_records_not_held(conn: Conn, root: str) -> None:
    conn.heartbeat("m1", 0)
    assert acquired(conn.fetch("m1", 0, {0: []})) == [(0, 0, 2, 1)]

    def deadline() -> int:
        (part,) = [p for p in Admin(root).describe_share_group("g").info.partitions if p.partition == 0]
        assert part.oldest_acquired is not None
        return part.oldest_acquired[2]

    before = deadline()
    time.sleep(0.02)
    renewed = conn.ack("m1", 1, {0: [batch(ACK, 0, 2, 4, version=2)]}, version=2)
    assert part_field(renewed, "error_code") == {0: 0}
    assert kio_api.timestamp_ms(renewed.acquisition_lock_timeout) == 60_000
    assert deadline() > before  # the lock runs from the renewal now; the records stay acquired
    assert part_field(conn.ack("m1", 2, {0: [batch(ACK, 0, 0, 4)]}), "error_code") == {0: INVALID_REQUEST}  # v1
    assert part_field(conn.ack("m1", 3, {0: [batch(ACK, 0, 5, 4, version=2)]}, version=2), "error_code") == {
        0: INVALID_RECORD_STATE  # offsets 3-5 are not held: 0-2 renewed, the partition answered with the error
    }
    # a renew-only ShareFetch acquires nothing, though partition 1 has records
    renew_fetch = conn.fetch("m1", 4, {1: []}, version=2, is_renew_ack=True)
    assert acquired(renew_fetch) == []
    assert acquired(conn.fetch("m1", 5, {}, version=2)) == [(1, 0, 2, 1)]


def test_a_topic_deleted_and_created_again_has_a_new_id_and_the_old_one_is_unknown(conn: Conn, root: str) -> None:
    topic = nested(METADATA, "MetadataRequestTopic", 12)

    def by_id(tid: uuid.UUID) -> tuple[str | None, int]:
        resp = conn.call(
            METADATA,
            12,
            topics=(topic(topic_id=tid, name=None),),
            allow_auto_topic_creation=False,
            include_topic_authorized_operations=False,
        )
        return resp.topics[0].name, resp.topics[0].error_code

    old = conn.topic_id
    assert by_id(old) == ("jobs", 0)
    Admin(root).delete_topic("jobs")
    Admin(root).create_topic("jobs", partitions=1)
    assert by_id(old) == (None, UNKNOWN_TOPIC_ID)
    new = _topic_id(conn)
    assert new != old and by_id(new) == ("jobs", 0)


def test_a_topic_created_after_the_join_is_assigned_at_the_next_heartbeat_with_a_new_epoch(
    conn: Conn, root: str
) -> None:
    joined = conn.heartbeat("m1", 0, ("later",))
    assert (joined.member_epoch, joined.assignment.topic_partitions) == (1, ())
    assert conn.heartbeat("m1", 1, None).member_epoch == 1
    Admin(root).create_topic("later", partitions=3)
    grown = conn.heartbeat("m1", 1, None)
    (tp,) = grown.assignment.topic_partitions
    assert grown.member_epoch == 2 and tuple(tp.partitions) == (0, 1, 2)
    assert conn.heartbeat("m1", 1, None).error_code == FENCED_MEMBER_EPOCH
