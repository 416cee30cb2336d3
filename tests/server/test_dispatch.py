"""The sans-IO core without sockets: Dispatcher.handle(broker, session, frame) -> Reply, on a
Broker built on a private event loop; and a shutdown that answers the request in flight."""

from __future__ import annotations

import asyncio
import datetime
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from logq import Server
from logq.codec.batch import encode_batch
from logq.errors import ProtocolError
from logq.server.apis import Dispatcher, Reply
from logq.server.context import Broker, ServerConfig, Session

from tests.server import wire


def _mod(key: int, version: int) -> Any:
    return __import__(wire.request_class(key, version).__module__, fromlist=["x"])


def run(root: str, body: Callable[[Broker, Dispatcher], Awaitable[Any]], auth: Any = None) -> Any:
    async def main() -> Any:
        broker = Broker(root, ServerConfig(port=0), asyncio.get_running_loop(), auth)
        try:
            return await body(broker, Dispatcher())
        finally:
            await broker.close()

    return asyncio.run(main())


def _frame(key: int, version: int, body: Any, corr: int = 9) -> bytes:
    return wire.request_frame(key, version, corr, body)[4:]


def _metadata(name: str) -> bytes:
    mm = _mod(3, 5)
    return _frame(
        3, 5, mm.MetadataRequest(topics=(mm.MetadataRequestTopic(name=name),), allow_auto_topic_creation=True)
    )


def test_a_metadata_frame_is_answered_and_auto_creates_the_topic(root: str) -> None:
    async def body(broker: Broker, d: Dispatcher) -> Reply:
        reply = await d.handle(broker, Session(peer="t"), _metadata("made"))
        assert broker.registry.exists("made")
        return reply

    reply = run(root, body)
    assert reply.correlation_id == 9 and reply.payload is not None
    _, resp = wire.decode_response(3, 5, reply.payload)
    assert resp.topics[0].name == "made" and resp.topics[0].error_code == 0


def test_a_produce_with_acks_0_has_no_reply_payload_but_is_stored(root: str) -> None:
    pm = _mod(0, 7)
    batch = bytes(encode_batch([(None, b"quiet", None, 1)], 0))
    req = pm.ProduceRequest(
        transactional_id=None,
        acks=0,
        timeout=datetime.timedelta(seconds=1),
        topic_data=(pm.TopicProduceData(name="q", partition_data=(pm.PartitionProduceData(index=0, records=batch),)),),
    )

    async def body(broker: Broker, d: Dispatcher) -> tuple[Reply, int]:
        await d.handle(broker, Session(peer="t"), _metadata("q"))
        reply = await d.handle(broker, Session(peer="t"), _frame(0, 7, req))
        return reply, broker.reader("q", 0).log_end_offset

    reply, end = run(root, body)
    assert reply.payload is None and end == 1


def test_the_client_id_of_the_first_request_names_the_session(root: str) -> None:
    session = Session(peer="t")

    async def body(broker: Broker, d: Dispatcher) -> None:
        await d.handle(broker, session, _metadata("x"))

    run(root, body)
    assert session.client_id == "test"


@pytest.mark.parametrize(
    "frame",
    [b"", b"\x00\x03", bytes.fromhex("7fff0000000000010000"), bytes.fromhex("00000002000000010000")],
    ids=["empty", "short header", "unknown api", "produce v2"],
)
def test_bad_frames_raise_protocol_error(root: str, frame: bytes) -> None:
    async def body(broker: Broker, d: Dispatcher) -> None:
        with pytest.raises(ProtocolError):
            await d.handle(broker, Session(peer="t"), frame)

    run(root, body)


def test_with_auth_only_api_versions_and_sasl_pass_before_authentication(root: str) -> None:
    av = _mod(18, 3).ApiVersionsRequest(client_software_name="a", client_software_version="1")

    async def body(broker: Broker, d: Dispatcher) -> None:
        session = Session(peer="t", authenticated=False)
        assert (await d.handle(broker, session, _frame(18, 3, av))).payload is not None
        with pytest.raises(ProtocolError, match="before authentication"):
            await d.handle(broker, session, _metadata("secret"))
        assert not broker.registry.exists("secret")

    run(root, body, auth=object())


def test_a_shutdown_answers_the_long_poll_in_flight(root: str) -> None:
    fm = _mod(1, 11)
    forever = 2**31 - 1
    req = fm.FetchRequest(
        max_wait=datetime.timedelta(milliseconds=forever),
        min_bytes=1,
        topics=(
            fm.FetchTopic(
                topic="idle", partitions=(fm.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1024),)
            ),
        ),
        forgotten_topics_data=(),
    )
    srv = Server(root, port=0, max_fetch_wait_ms=forever).start()
    sock = wire.connect(srv.port, timeout_s=60)
    sock.sendall(
        wire.request_frame(
            3,
            5,
            1,
            _mod(3, 5).MetadataRequest(
                topics=(_mod(3, 5).MetadataRequestTopic(name="idle"),), allow_auto_topic_creation=True
            ),
        )
    )
    wire.read_frame(sock)
    sock.sendall(wire.request_frame(1, 11, 2, req))
    while srv.stats()["waiting_fetches"] == 0:
        time.sleep(0.001)
    stopper = threading.Thread(target=srv.stop)
    stopper.start()
    corr, resp = wire.decode_response(1, 11, wire.read_frame(sock))  # answered, not dropped
    stopper.join(60)
    sock.close()
    assert corr == 2 and resp.responses[0].partitions[0].error_code == 0
    assert not stopper.is_alive()


def test_a_long_poll_ends_when_its_client_disconnects(root: str) -> None:
    fm = _mod(1, 11)
    forever = 2**31 - 1
    req = fm.FetchRequest(
        max_wait=datetime.timedelta(milliseconds=forever),
        min_bytes=1,
        topics=(
            fm.FetchTopic(
                topic="idle", partitions=(fm.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1024),)
            ),
        ),
        forgotten_topics_data=(),
    )
    mm = _mod(3, 5)
    with Server(root, port=0, max_fetch_wait_ms=forever) as srv:
        sock = wire.connect(srv.port)
        sock.sendall(
            wire.request_frame(
                3,
                5,
                1,
                mm.MetadataRequest(topics=(mm.MetadataRequestTopic(name="idle"),), allow_auto_topic_creation=True),
            )
        )
        wire.read_frame(sock)
        sock.sendall(wire.request_frame(1, 11, 2, req))
        while srv.stats()["waiting_fetches"] == 0:
            time.sleep(0.001)
        sock.close()
        deadline = time.monotonic() + 60  # a liveness bound: without the rule it waits for days
        while srv.stats()["waiting_fetches"] and time.monotonic() < deadline:
            time.sleep(0.001)
        assert srv.stats()["waiting_fetches"] == 0
        assert srv.stats()["connections"] == 0


def test_a_shutdown_answers_the_produce_being_appended_and_keeps_its_records(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from logq import Admin, Consumer
    from logq.storage.log import PartitionLog

    entered, release = threading.Event(), threading.Event()
    original = PartitionLog.append_batch

    def slow_append(self: PartitionLog, batch: bytes, _trusted: bool = False) -> Any:
        entered.set()
        release.wait(60)
        return original(self, batch, _trusted)

    monkeypatch.setattr(PartitionLog, "append_batch", slow_append)
    with Admin(root) as a:
        a.create_topic("durable", partitions=1, fsync="always")  # appended off the event loop
    pm = _mod(0, 7)
    batch = bytes(encode_batch([(None, b"in-flight", None, 1)], 0))
    req = pm.ProduceRequest(
        transactional_id=None,
        acks=-1,
        timeout=datetime.timedelta(seconds=30),
        topic_data=(
            pm.TopicProduceData(name="durable", partition_data=(pm.PartitionProduceData(index=0, records=batch),)),
        ),
    )
    srv = Server(root, port=0).start()
    sock = wire.connect(srv.port, timeout_s=60)
    sock.sendall(wire.request_frame(0, 7, 5, req))
    assert entered.wait(60)
    stopper = threading.Thread(target=srv.stop)
    stopper.start()
    release.set()
    corr, resp = wire.decode_response(0, 7, wire.read_frame(sock))
    stopper.join(60)
    sock.close()
    assert corr == 5 and resp.responses[0].partition_responses[0].error_code == 0
    with Consumer(root, "durable", group_id=None, auto_offset_reset="earliest") as c:
        assert [r.value for r in c.poll(timeout=5)] == [b"in-flight"]


def test_a_failed_produce_with_acks_0_closes_the_connection_instead_of_answering(root: str) -> None:
    pm = _mod(0, 7)
    batch = bytes(encode_batch([(None, b"lost", None, 1)], 0))
    req = pm.ProduceRequest(
        transactional_id=None,
        acks=0,
        timeout=datetime.timedelta(seconds=1),
        topic_data=(
            pm.TopicProduceData(name="missing", partition_data=(pm.PartitionProduceData(index=0, records=batch),)),
        ),
    )
    session = Session(peer="t")

    async def body(broker: Broker, d: Dispatcher) -> Reply:
        return await d.handle(broker, session, _frame(0, 7, req))

    assert run(root, body).payload is None
    assert session.close_after_response


def test_a_produce_to_several_partitions_answers_each_in_request_order(root: str) -> None:
    from logq import Admin

    with Admin(root) as a:
        a.create_topic("multi", partitions=3, fsync="always")
    pm = _mod(0, 7)
    order = [2, 0, 1]
    data = tuple(
        pm.PartitionProduceData(index=p, records=bytes(encode_batch([(None, b"%d" % p, None, 1)] * (p + 1), 0)))
        for p in order
    )
    req = pm.ProduceRequest(
        transactional_id=None,
        acks=-1,
        timeout=datetime.timedelta(seconds=5),
        topic_data=(pm.TopicProduceData(name="multi", partition_data=data),),
    )

    async def body(broker: Broker, d: Dispatcher) -> list[Any]:
        out = []
        for _ in range(2):
            reply = await d.handle(broker, Session(peer="t"), _frame(0, 7, req))
            assert reply.payload is not None
            out.append(wire.decode_response(0, 7, reply.payload)[1].responses[0].partition_responses)
        return out

    first, second = run(root, body)
    assert [(r.index, r.error_code, r.base_offset) for r in first] == [(2, 0, 0), (0, 0, 0), (1, 0, 0)]
    assert [(r.index, r.base_offset) for r in second] == [(2, 3), (0, 1), (1, 2)]
