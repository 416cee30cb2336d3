"""The pre-authentication frame limit of `logq serve` (``max_unauthenticated_request_bytes``,
Kafka's ``sasl.server.max.receive.size``), on the wire: before a connection authenticates, a
larger size prefix closes it before its body is read; after, and on a server without
authentication, the normal ``max_request_bytes`` applies."""

from __future__ import annotations

import datetime
import logging
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from logq import Admin, ConfigError, Consumer, Server
from logq.codec.batch import encode_batch
from logq.server import kio_api
from logq.server.framing import DEFAULT_MAX_UNAUTHENTICATED_REQUEST_BYTES
from logq.server.sasl import add_user

from tests.server import wire

PASSWORD = "pre-auth pässword"
LIMIT = 2048  # max_unauthenticated_request_bytes of these servers: small frames stay cheap


@pytest.fixture
def users(tmp_path: Any) -> str:
    path = os.path.join(str(tmp_path), "users.json")
    add_user(path, "alice", PASSWORD)
    return path


@pytest.fixture
def sasl_server(root: str, users: str) -> Iterator[Server]:
    Admin(root).create_topic("t", partitions=1)
    with Server(root, port=0, users_file=users, max_unauthenticated_request_bytes=LIMIT) as s:
        yield s


def frame_of(key: int, version: int, corr: int, **fields: object) -> bytes:
    return wire.request_frame(key, version, corr, kio_api.make(wire.request_class(key, version), **fields))


def call(sock: socket.socket, key: int, version: int, corr: int, **fields: object) -> Any:
    sock.sendall(frame_of(key, version, corr, **fields))
    return wire.decode_response(key, version, wire.read_frame(sock))[1]


def produce_frame(corr: int, value_bytes: int) -> bytes:
    """A Produce v7 (acks=all) frame with one record of ``value_bytes`` to t-0."""
    batch = bytes(encode_batch([(None, b"v" * value_bytes, None, 1000)], 0))
    m = wire.request_class(0, 7)
    mod = __import__(m.__module__, fromlist=["x"])
    data = mod.TopicProduceData(name="t", partition_data=(mod.PartitionProduceData(index=0, records=batch),))
    req = m(transactional_id=None, acks=-1, timeout=datetime.timedelta(seconds=5), topic_data=(data,))
    return wire.request_frame(0, 7, corr, req)


def produce_error(sock: socket.socket) -> int:
    _, resp = wire.decode_response(0, 7, wire.read_frame(sock))
    return int(resp.responses[0].partition_responses[0].error_code)


def authenticate(sock: socket.socket) -> None:
    assert call(sock, 17, 1, 1, mechanism="PLAIN").error_code == 0
    assert call(sock, 36, 2, 2, auth_bytes=b"\0alice\0" + PASSWORD.encode()).error_code == 0


def values_of_t(root: str) -> list[int]:
    with Consumer(root, "t", auto_offset_reset="earliest") as c:
        return [len(r.value) for batch in iter(lambda: c.poll(timeout=0.5), []) for r in batch]


def test_the_default_limit_is_kafkas_sasl_server_max_receive_size() -> None:
    assert DEFAULT_MAX_UNAUTHENTICATED_REQUEST_BYTES == 524288
    assert Server("unused", port=0).config.max_unauthenticated_request_bytes == 524288


@pytest.mark.parametrize("bad", [0, -1, 1.5, "512", True, None])
def test_a_bad_limit_is_a_config_error_naming_it(bad: object) -> None:
    with pytest.raises(ConfigError, match="max_unauthenticated_request_bytes"):
        Server("unused", port=0, max_unauthenticated_request_bytes=bad)


def test_an_oversized_size_prefix_before_authentication_closes_before_the_body_is_sent(
    sasl_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="logq.server"), wire.connect(sasl_server.port) as sock:
        sock.sendall(struct.pack(">i", LIMIT + 1))  # the size only: the body never comes
        assert wire.closed_by_peer(sock)
    lines = [r.getMessage() for r in caplog.records if "max_unauthenticated_request_bytes" in r.getMessage()]
    assert len(lines) == 1 and "before authentication" in lines[0] and str(LIMIT + 1) in lines[0]


def test_the_server_keeps_serving_others_after_closing_an_oversized_one(sasl_server: Server) -> None:
    with wire.connect(sasl_server.port) as good, wire.connect(sasl_server.port) as bad:
        assert call(good, 18, 3, 1, client_software_name="t", client_software_version="1").error_code == 0
        bad.sendall(struct.pack(">i", 100 * 1024 * 1024) + b"\0" * 1000)  # within max_request_bytes
        assert wire.closed_by_peer(bad)
        authenticate(good)
        good.sendall(produce_frame(3, 10))
        assert produce_error(good) == 0
    with wire.connect(sasl_server.port) as later:
        authenticate(later)
    assert values_of_t(sasl_server.data_dir) == [10]


def test_a_frame_at_the_limit_before_authentication_is_read(sasl_server: Server) -> None:
    with wire.connect(sasl_server.port) as sock:
        assert call(sock, 17, 1, 1, mechanism="PLAIN").error_code == 0
        token = b"\0alice\0" + b"x" * 64
        frame = frame_of(36, 1, 2, auth_bytes=token)  # v1: the token's length is a fixed int32
        pad = LIMIT - (len(frame) - 4)  # grow the token until the frame is exactly LIMIT bytes
        frame = frame_of(36, 1, 2, auth_bytes=b"\0alice\0" + b"x" * (64 + pad))
        assert len(frame) - 4 == LIMIT
        sock.sendall(frame)
        r = wire.decode_response(36, 1, wire.read_frame(sock))[1]
        assert r.error_code == 58  # read and judged: a wrong password, not a size refusal


def test_a_bare_v0_token_above_the_limit_closes_the_connection(sasl_server: Server) -> None:
    with wire.connect(sasl_server.port) as sock:
        assert call(sock, 17, 0, 1, mechanism="PLAIN").error_code == 0
        sock.sendall(struct.pack(">i", LIMIT + 1) + b"\0alice\0")
        assert wire.closed_by_peer(sock)


def test_after_authentication_the_normal_limit_applies(sasl_server: Server) -> None:
    with wire.connect(sasl_server.port) as sock:
        authenticate(sock)
        sock.sendall(produce_frame(3, 50 * LIMIT))
        assert produce_error(sock) == 0
    assert values_of_t(sasl_server.data_dir) == [50 * LIMIT]


def test_after_a_bare_v0_exchange_the_normal_limit_applies(sasl_server: Server) -> None:
    with wire.connect(sasl_server.port) as sock:
        assert call(sock, 17, 0, 1, mechanism="PLAIN").error_code == 0
        token = b"\0alice\0" + PASSWORD.encode()
        sock.sendall(struct.pack(">i", len(token)) + token)
        assert wire.read_frame(sock) == b""
        sock.sendall(produce_frame(3, 10 * LIMIT))
        assert produce_error(sock) == 0


def test_a_large_request_pipelined_behind_the_authenticating_one_is_judged_after_it(sasl_server: Server) -> None:
    """The limit of a frame is decided once the frames before it were handled: a client
    that sends its first large request without waiting for the authentication answer is
    served, and one whose authentication fails is closed before that request is handled."""
    token = b"\0alice\0" + PASSWORD.encode()
    with wire.connect(sasl_server.port) as sock:
        sock.sendall(
            frame_of(17, 1, 1, mechanism="PLAIN") + frame_of(36, 2, 2, auth_bytes=token) + produce_frame(3, 20 * LIMIT)
        )
        assert wire.decode_response(17, 1, wire.read_frame(sock))[1].error_code == 0
        assert wire.decode_response(36, 2, wire.read_frame(sock))[1].error_code == 0
        assert produce_error(sock) == 0
    with wire.connect(sasl_server.port) as sock:
        sock.sendall(
            frame_of(17, 1, 1, mechanism="PLAIN")
            + frame_of(36, 2, 2, auth_bytes=b"\0alice\0wrong")
            + produce_frame(3, 20 * LIMIT)
        )
        assert wire.decode_response(17, 1, wire.read_frame(sock))[1].error_code == 0
        assert wire.decode_response(36, 2, wire.read_frame(sock))[1].error_code == 58
        assert wire.closed_by_peer(sock)
    assert values_of_t(sasl_server.data_dir) == [20 * LIMIT]


def test_without_authentication_configured_the_normal_limit_applies(root: str) -> None:
    Admin(root).create_topic("t", partitions=1)
    with Server(root, port=0, max_unauthenticated_request_bytes=LIMIT) as srv, wire.connect(srv.port) as sock:
        sock.sendall(produce_frame(1, 50 * LIMIT))
        assert produce_error(sock) == 0
    assert values_of_t(root) == [50 * LIMIT]


def test_a_real_client_authenticates_and_produces_large_records_at_the_default_limit(root: str, users: str) -> None:
    import confluent_kafka as ck

    Admin(root).create_topic("t", partitions=1)
    with Server(root, port=0, users_file=users) as srv:
        p = ck.Producer(
            {
                "bootstrap.servers": f"127.0.0.1:{srv.port}",
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "SCRAM-SHA-256",
                "sasl.username": "alice",
                "sasl.password": PASSWORD,
                "message.max.bytes": 2_000_000,
            }
        )
        errors: list[object] = []
        p.produce("t", b"x" * 900_000, on_delivery=lambda err, msg: err and errors.append(err))
        assert p.flush(30) == 0 and errors == []
    assert values_of_t(root) == [900_000]
