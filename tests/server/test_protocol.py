"""The server over raw sockets: ApiVersions (KIP-511), the advertised set, refusals, limits,
pipelining. Each refusal closes only the offending connection."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from logq import Server
from logq.errors import ConfigError

from tests.server import wire


def _av(version: int) -> object:
    cls = wire.request_class(18, version)
    return cls(client_software_name="t", client_software_version="1") if version >= 3 else cls()


def _api_versions(port: int, version: int) -> tuple[int, object]:
    with wire.connect(port) as s:
        body = _av(min(version, 3))
        raw = wire.request_frame(18, min(version, 3), 7, body)
        if version > 3:  # a version the server does not know: patch the header's version
            raw = raw[:6] + struct.pack(">h", version) + raw[8:]
        s.sendall(raw)
        payload = wire.read_frame(s)
    return wire.decode_response(18, 0 if version > 3 else version, payload, header_version=0)


def _ranges(resp: object) -> dict[int, tuple[int, int]]:
    return {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}  # type: ignore[attr-defined]


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_api_versions_answers_every_version_it_advertises(server: Server, version: int) -> None:
    corr, resp = _api_versions(server.port, version)
    assert corr == 7 and resp.error_code == 0  # type: ignore[attr-defined]
    assert _ranges(resp)[18] == (0, 3)


def test_an_unknown_api_versions_version_gets_a_v0_body_with_unsupported_version(server: Server) -> None:
    corr, resp = _api_versions(server.port, 9)
    assert corr == 7
    assert resp.error_code == 35  # type: ignore[attr-defined]
    assert _ranges(resp)[18] == (0, 3)


def test_the_advertised_set_enables_magic_2_zstd_and_idempotence_in_librdkafka(server: Server) -> None:
    ranges = _ranges(_api_versions(server.port, 3)[1])
    assert ranges[0][1] >= 7 and ranges[1][1] >= 10  # ZSTD: Produce >= 7 and Fetch >= 10
    assert 22 in ranges  # InitProducerId: idempotence
    for key in (0, 1, 2, 3, 18, 19, 20, 22):
        assert ranges[key][0] == 0, key  # aiokafka refuses minimums above its maximum


def test_an_unimplemented_version_closes_only_that_connection(server: Server) -> None:
    with wire.connect(server.port) as bad, wire.connect(server.port) as good:
        header = struct.pack(">hhih", 0, 2, 1, -1)  # Produce v2: advertised, not implemented
        bad.sendall(struct.pack(">i", len(header)) + header)
        assert wire.closed_by_peer(bad)
        good.sendall(wire.request_frame(18, 3, 5, _av(3)))
        assert wire.decode_response(18, 3, wire.read_frame(good), header_version=0)[0] == 5


@pytest.mark.parametrize(
    "raw",
    [
        struct.pack(">i", -1),
        struct.pack(">i", 200 * 1024 * 1024),
        struct.pack(">i", 8) + struct.pack(">hhi", 4242, 0, 1),  # unknown API key
        struct.pack(">i", 3) + b"abc",  # shorter than a header
    ],
)
def test_hostile_frames_close_the_connection_and_the_server_keeps_serving(server: Server, raw: bytes) -> None:
    with wire.connect(server.port) as s:
        s.sendall(raw)
        assert wire.closed_by_peer(s)
    assert _api_versions(server.port, 3)[1].error_code == 0  # type: ignore[attr-defined]


def test_pipelined_requests_are_answered_in_order(server: Server) -> None:
    av = _av(3)
    md = wire.request_class(3, 5)(topics=(), allow_auto_topic_creation=False)
    stream = b"".join(wire.request_frame(18, 3, i, av) if i % 2 else wire.request_frame(3, 5, i, md) for i in range(40))
    with wire.connect(server.port) as s:
        s.sendall(stream)
        corrs = [struct.unpack_from(">i", wire.read_frame(s))[0] for _ in range(40)]
    assert corrs == list(range(40))


def test_a_request_left_incomplete_is_closed_after_the_partial_request_timeout(root: str) -> None:
    with Server(root, port=0, partial_request_timeout_ms=200) as srv, wire.connect(srv.port) as s:
        s.sendall(struct.pack(">i", 100) + b"part")
        assert wire.closed_by_peer(s)  # the sweep closes it; recv waits for that


def test_an_idle_connection_is_closed_after_the_idle_timeout(root: str) -> None:
    with Server(root, port=0, idle_timeout_ms=200) as srv, wire.connect(srv.port) as s:
        assert wire.closed_by_peer(s)


def test_connections_beyond_max_connections_are_refused(root: str) -> None:
    with Server(root, port=0, max_connections=2) as srv:
        keep = [wire.connect(srv.port) for _ in range(2)]
        for s in keep:  # make sure both are accepted before the third
            s.sendall(wire.request_frame(18, 3, 1, _av(3)))
            wire.read_frame(s)
        third = wire.connect(srv.port)
        assert wire.closed_by_peer(third)
        for s in keep + [third]:
            s.close()


def test_a_non_loopback_address_without_auth_needs_insecure(root: str) -> None:
    with pytest.raises(ConfigError, match="--insecure"):
        Server(root, host="0.0.0.0", port=0)
    with Server(root, host="0.0.0.0", port=0, insecure=True) as srv:
        assert srv.port > 0


def test_a_port_in_use_is_a_config_error(server: Server, root: str) -> None:
    with pytest.raises(ConfigError, match="cannot listen"):
        Server(root + "-other", port=server.port).start()


@pytest.mark.parametrize(
    "kwargs",
    [{"port": -1}, {"port": "9092"}, {"max_connections": 0}, {"idle_timeout_ms": 1.5}, {"no_such_limit": 1}],
)
def test_bad_server_arguments_are_config_errors(root: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Server(root, **kwargs)  # type: ignore[arg-type]


def test_stop_twice_and_stop_without_start_are_harmless(root: str) -> None:
    srv = Server(root, port=0)
    srv.stop()
    with Server(root, port=0) as s:
        port = s.port
    s.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_a_stopped_server_cannot_be_started_again(root: str) -> None:
    with Server(root, port=0) as s:
        pass
    with pytest.raises(ConfigError, match="stopped"):
        s.start()
    time.sleep(0)


def test_pipelining_past_max_in_flight_requests_pauses_reading_and_answers_all(root: str) -> None:
    av = _av(3)
    with Server(root, port=0, max_in_flight_requests=2) as srv, wire.connect(srv.port) as s:
        s.sendall(b"".join(wire.request_frame(18, 3, i, av) for i in range(50)))
        corrs = [struct.unpack_from(">i", wire.read_frame(s))[0] for _ in range(50)]
    assert corrs == list(range(50))


def test_a_failing_handler_closes_its_connection_and_the_server_lives(
    root: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from logq.server.handlers import metadata

    async def boom(*args: object) -> object:
        raise RuntimeError("handler bug")

    monkeypatch.setitem(metadata.HANDLERS, 3, boom)
    md = wire.request_class(3, 5)(topics=(), allow_auto_topic_creation=False)
    with Server(root, port=0) as srv:
        with wire.connect(srv.port) as s:
            s.sendall(wire.request_frame(3, 5, 1, md))
            assert wire.closed_by_peer(s)
        assert _api_versions(srv.port, 3)[1].error_code == 0  # type: ignore[attr-defined]
    assert any("handler bug" in r.getMessage() for r in caplog.records)


def test_a_client_that_does_not_read_its_responses_holds_a_bounded_buffer(root: str) -> None:
    from logq import Admin, Producer

    with Admin(root) as a:
        a.create_topic("big", partitions=1)
    with Producer(root) as p:
        for _ in range(20):
            p.send("big", value=b"x" * 100_000)
    fm = wire.request_class(1, 11)
    mod = __import__(fm.__module__, fromlist=["x"])
    fetch = fm(
        max_wait=__import__("datetime").timedelta(0),
        min_bytes=1,
        topics=(
            mod.FetchTopic(
                topic="big", partitions=(mod.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 21),)
            ),
        ),
        forgotten_topics_data=(),
    )
    limit = 256 * 1024
    with Server(root, port=0, max_buffered_response_bytes=limit) as srv, wire.connect(srv.port) as slow:
        slow.sendall(b"".join(wire.request_frame(1, 11, i, fetch) for i in range(30)))  # 60 MB of answers
        one = len(wire.read_frame(slow))  # one answer read: the server got going
        peak = 0
        for _ in range(200):  # meanwhile other clients are served, and the buffer stays bounded
            assert _api_versions(srv.port, 3)[1].error_code == 0  # type: ignore[attr-defined]
            peak = max(peak, srv.stats()["buffered_response_bytes"])
        assert 0 < peak <= limit + one + 4  # the limit plus the one response written past it
        corrs = [struct.unpack_from(">i", wire.read_frame(slow))[0] for _ in range(29)]
    assert corrs == list(range(1, 30))


def test_a_client_that_leaves_its_responses_unread_is_closed_after_the_idle_timeout(root: str) -> None:
    from logq import Admin, Producer

    with Admin(root) as a:
        a.create_topic("big", partitions=1)
    with Producer(root) as p:
        for _ in range(20):
            p.send("big", value=b"x" * 100_000)
    fm = wire.request_class(1, 11)
    mod = __import__(fm.__module__, fromlist=["x"])
    fetch = fm(
        max_wait=__import__("datetime").timedelta(0),
        min_bytes=1,
        topics=(
            mod.FetchTopic(
                topic="big", partitions=(mod.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 21),)
            ),
        ),
        forgotten_topics_data=(),
    )
    with (
        Server(root, port=0, max_buffered_response_bytes=256 * 1024, idle_timeout_ms=300) as srv,
        wire.connect(srv.port) as s,
    ):
        s.sendall(b"".join(wire.request_frame(1, 11, i, fetch) for i in range(30)))
        deadline = time.monotonic() + 60  # a liveness bound
        while srv.stats()["accepted"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        while srv.stats()["connections"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.stats()["connections"] == 0
        assert srv.stats()["buffered_response_bytes"] == 0


def test_two_threads_starting_and_stopping_one_server_get_one_server(root: str) -> None:
    import threading

    srv = Server(root, port=0)
    ports: list[int] = []
    starters = [threading.Thread(target=lambda: ports.append(srv.start().port)) for _ in range(4)]
    for t in starters:
        t.start()
    for t in starters:
        t.join(60)
    assert len(ports) == 4 and len(set(ports)) == 1
    assert _api_versions(ports[0], 3)[1].error_code == 0  # type: ignore[attr-defined]
    stoppers = [threading.Thread(target=srv.stop) for _ in range(4)]
    for t in stoppers:
        t.start()
    for t in stoppers:
        t.join(60)
    assert not any(t.is_alive() for t in stoppers)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", ports[0]), timeout=1)


@pytest.mark.parametrize(
    ("data_dir", "kwargs"),
    [
        (5, {}),
        ("", {}),
        (None, {"host": 127}),
        (None, {"ssl_context": "cert.pem"}),
        (None, {"auto_create_topics": "yes"}),
        (None, {"default_topic_config": {"no_such_setting": 1}}),
        (None, {"default_topic_config": {"fsync": "sometimes"}}),
    ],
)
def test_wrong_argument_types_are_config_errors(root: str, data_dir: object, kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Server(root if data_dir is None else data_dir, port=0, **kwargs).start()  # type: ignore[arg-type]
