"""kafka-python's protocol classes (built from Kafka's JSON message definitions by another
project) as an independent oracle: every API version the server implements is encoded by
kafka-python, sent to a live server, and its response decoded by kafka-python."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from kafka.protocol.admin import (
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteRecordsRequest,
    DeleteRecordsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
)
from kafka.protocol.consumer import FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse
from kafka.protocol.metadata import ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse
from kafka.protocol.producer import InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse
from logq import Server
from logq.codec.batch import encode_batch

from tests.server import wire

BATCH = bytes(encode_batch([(b"k", b"oracle", [("h", b"1")], 1234)], 0))


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[socket.socket]:
    root = str(tmp_path_factory.mktemp("oracle") / "data")
    with Server(root, port=0, max_fetch_wait_ms=10) as srv, wire.connect(srv.port) as s:
        yield s


def call(sock: socket.socket, req_cls: Any, resp_cls: Any, version: int, **fields: Any) -> Any:
    req = req_cls[version](**fields)
    req.with_header(correlation_id=version + 100, client_id="oracle")
    sock.sendall(req.encode(header=True, framed=True))
    payload = wire.read_frame(sock)
    resp = resp_cls.decode(payload, version=version, header=True)
    assert struct.unpack_from(">i", payload)[0] == version + 100
    return resp


@pytest.mark.parametrize("version", range(4))
def test_api_versions(conn: socket.socket, version: int) -> None:
    extra = {"client_software_name": "o", "client_software_version": "1"} if version >= 3 else {}
    resp = call(conn, ApiVersionsRequest, ApiVersionsResponse, version, **extra)
    assert resp.error_code == 0 and any(k.api_key == 0 for k in resp.api_keys)


@pytest.mark.parametrize("version", range(6))
def test_metadata_creates_and_describes_a_topic(conn: socket.socket, version: int) -> None:
    topic = MetadataRequest.MetadataRequestTopic(name="oracle")
    resp = call(conn, MetadataRequest, MetadataResponse, version, topics=[topic], allow_auto_topic_creation=True)
    (t,) = resp.topics
    assert (t.name, t.error_code, len(t.partitions)) == ("oracle", 0, 1)
    assert resp.brokers[0].host == "127.0.0.1"


@pytest.mark.parametrize("version", range(3, 8))
def test_produce(conn: socket.socket, version: int) -> None:
    data = ProduceRequest.TopicProduceData(
        name="oracle", partition_data=[ProduceRequest.TopicProduceData.PartitionProduceData(index=0, records=BATCH)]
    )
    resp = call(conn, ProduceRequest, ProduceResponse, version, acks=-1, timeout_ms=1000, topic_data=[data])
    part = resp.responses[0].partition_responses[0]
    assert part.error_code == 0 and part.base_offset >= 0


@pytest.mark.parametrize("version", range(4, 12))
def test_fetch_returns_the_stored_batch_bytes(conn: socket.socket, version: int) -> None:
    test_produce(conn, 7)
    part = FetchRequest.FetchTopic.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)
    resp = call(
        conn,
        FetchRequest,
        FetchResponse,
        version,
        replica_id=-1,
        max_wait_ms=0,
        min_bytes=1,
        max_bytes=1 << 20,
        topics=[FetchRequest.FetchTopic(topic="oracle", partitions=[part])],
    )
    got = resp.responses[0].partitions[0]
    assert got.error_code == 0 and got.high_watermark >= 1
    records = got.records if isinstance(got.records, bytes) else bytes(got.records.buffer())
    assert b"oracle" in records  # the stored batch, uncompressed value inside


@pytest.mark.parametrize("version", range(1, 4))
def test_list_offsets(conn: socket.socket, version: int) -> None:
    test_produce(conn, 7)
    parts = [ListOffsetsRequest.ListOffsetsTopic.ListOffsetsPartition(partition_index=0, timestamp=1234)]
    resp = call(
        conn,
        ListOffsetsRequest,
        ListOffsetsResponse,
        version,
        replica_id=-1,
        topics=[ListOffsetsRequest.ListOffsetsTopic(name="oracle", partitions=parts)],
    )
    p = resp.topics[0].partitions[0]
    assert p.error_code == 0 and p.offset == 0 and p.timestamp == 1234


@pytest.mark.parametrize("version", range(2))
def test_init_producer_id_hands_out_distinct_ids(conn: socket.socket, version: int) -> None:
    a = call(
        conn, InitProducerIdRequest, InitProducerIdResponse, version, transactional_id=None, transaction_timeout_ms=1000
    )
    b = call(
        conn, InitProducerIdRequest, InitProducerIdResponse, version, transactional_id=None, transaction_timeout_ms=1000
    )
    assert a.error_code == b.error_code == 0 and a.producer_id != b.producer_id >= 0


@pytest.mark.parametrize("version", range(2, 4))
def test_create_describe_and_delete_topics(conn: socket.socket, version: int) -> None:
    name = f"made-{version}"
    cfg = CreateTopicsRequest.CreatableTopic.CreatableTopicConfig(name="retention.ms", value="5000")
    topic = CreateTopicsRequest.CreatableTopic(
        name=name, num_partitions=2, replication_factor=1, assignments=[], configs=[cfg]
    )
    resp = call(conn, CreateTopicsRequest, CreateTopicsResponse, version, topics=[topic], timeout_ms=1000)
    assert resp.topics[0].error_code == 0
    again = call(conn, CreateTopicsRequest, CreateTopicsResponse, version, topics=[topic], timeout_ms=1000)
    assert again.topics[0].error_code == 36  # TOPIC_ALREADY_EXISTS
    for dv in (1, 2):
        res = DescribeConfigsRequest.DescribeConfigsResource(
            resource_type=2, resource_name=name, configuration_keys=None
        )
        desc = call(conn, DescribeConfigsRequest, DescribeConfigsResponse, dv, resources=[res])
        entries = {c.name: c.value for c in desc.results[0].configs}
        assert entries["retention.ms"] == "5000"
    deleted = call(conn, DeleteTopicsRequest, DeleteTopicsResponse, version, topic_names=[name], timeout_ms=1000)
    assert deleted.responses[0].error_code == 0
    gone = call(conn, DeleteTopicsRequest, DeleteTopicsResponse, version, topic_names=[name], timeout_ms=1000)
    assert gone.responses[0].error_code == 3


@pytest.mark.parametrize("version", range(2))
def test_delete_records_moves_the_log_start(conn: socket.socket, version: int) -> None:
    test_produce(conn, 7)
    part = DeleteRecordsRequest.DeleteRecordsTopic.DeleteRecordsPartition(partition_index=0, offset=1)
    resp = call(
        conn,
        DeleteRecordsRequest,
        DeleteRecordsResponse,
        version,
        topics=[DeleteRecordsRequest.DeleteRecordsTopic(name="oracle", partitions=[part])],
        timeout_ms=1000,
    )
    p = resp.topics[0].partitions[0]
    assert p.error_code == 0 and p.low_watermark == 1
