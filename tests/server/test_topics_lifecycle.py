"""Topics that change under a running server: deleted or recreated by another process, a
second server on the same data directory, oversized batches, out-of-range fetches, a long
poll woken by a produce, and fetch responses capped by the server."""

from __future__ import annotations

import datetime
import threading
import time

import pytest
from logq import Admin, Consumer, Server
from logq.codec.batch import encode_batch
from logq.errors import ConfigError

from tests.server import wire


def _mod(key: int, version: int) -> object:
    return __import__(wire.request_class(key, version).__module__, fromlist=["x"])


def _produce(port: int, topic: str, batch: bytes) -> tuple[int, int]:
    pm = _mod(0, 7)
    req = pm.ProduceRequest(  # type: ignore[attr-defined]
        transactional_id=None,
        acks=1,
        timeout=datetime.timedelta(seconds=5),
        topic_data=(
            pm.TopicProduceData(name=topic, partition_data=(pm.PartitionProduceData(index=0, records=batch),)),
        ),  # type: ignore[attr-defined]
    )
    with wire.connect(port) as s:
        s.sendall(wire.request_frame(0, 7, 1, req))
        _, resp = wire.decode_response(0, 7, wire.read_frame(s))
    part = resp.responses[0].partition_responses[0]
    return int(part.error_code), part.base_offset


def _fetch(port: int, topic: str, offset: int, max_wait_ms: int = 0, max_bytes: int = 1 << 20) -> object:
    fm = _mod(1, 11)
    req = fm.FetchRequest(  # type: ignore[attr-defined]
        max_wait=datetime.timedelta(milliseconds=max_wait_ms),
        min_bytes=1,
        max_bytes=max_bytes,
        topics=(
            fm.FetchTopic(
                topic=topic,
                partitions=(fm.FetchPartition(partition=0, fetch_offset=offset, partition_max_bytes=1 << 20),),
            ),
        ),  # type: ignore[attr-defined]
        forgotten_topics_data=(),
    )
    with wire.connect(port, timeout_s=60) as s:
        s.sendall(wire.request_frame(1, 11, 1, req))
        _, resp = wire.decode_response(1, 11, wire.read_frame(s))
    return resp.responses[0].partitions[0]


def _batch(n: int = 1, size: int = 10) -> bytes:
    return bytes(encode_batch([(None, b"v" * size, None, 1000 + i) for i in range(n)], 0))


def test_a_topic_deleted_by_another_process_is_unknown_to_produce_and_fetch(root: str) -> None:
    with Admin(root) as a:
        a.create_topic("gone", partitions=1)
    with Server(root, port=0) as srv:
        assert _produce(srv.port, "gone", _batch()) == (0, 0)
        with Admin(root) as a:
            a.delete_topic("gone")
        assert _produce(srv.port, "gone", _batch())[0] == 3
        assert _fetch(srv.port, "gone", 0).error_code == 3  # type: ignore[attr-defined]


def test_a_topic_recreated_by_another_process_is_written_afresh(root: str) -> None:
    with Admin(root) as a:
        a.create_topic("again", partitions=1)
    with Server(root, port=0) as srv:
        assert _produce(srv.port, "again", _batch(3)) == (0, 0)
        with Admin(root) as a:
            a.delete_topic("again")
            a.create_topic("again", partitions=1)
        assert _produce(srv.port, "again", _batch()) == (0, 0)  # the new incarnation's first offset
    with Consumer(root, "again", group_id=None, auto_offset_reset="earliest") as c:
        assert len(c.poll(timeout=5)) == 1


def test_a_second_server_on_the_same_data_directory_is_refused(server: Server, root: str) -> None:
    with pytest.raises(ConfigError, match="already serving"):
        Server(root, port=0).start()


def test_a_batch_above_the_topics_max_batch_bytes_is_message_too_large(root: str) -> None:
    with Admin(root) as a:
        a.create_topic("small", partitions=1, max_batch_bytes=1000)
    with Server(root, port=0) as srv:
        assert _produce(srv.port, "small", _batch(1, 2000))[0] == 10
        assert _produce(srv.port, "small", _batch(1, 10)) == (0, 0)


def test_a_fetch_outside_the_log_is_offset_out_of_range(root: str) -> None:
    with Admin(root) as a:
        a.create_topic("range", partitions=1)
    with Server(root, port=0) as srv:
        _produce(srv.port, "range", _batch(5))
        part = _fetch(srv.port, "range", 6)
        assert part.error_code == 1 and part.high_watermark == 5  # type: ignore[attr-defined]
        assert _fetch(srv.port, "range", 5).records == b""  # type: ignore[attr-defined]


def test_a_long_poll_is_answered_with_the_records_a_produce_appends(root: str) -> None:
    with Admin(root) as a:
        a.create_topic("wake", partitions=1)
    forever_ms = 2**31 - 1  # only an append can end this wait
    with Server(root, port=0, max_fetch_wait_ms=forever_ms) as srv:
        result: list[object] = []
        t = threading.Thread(target=lambda: result.append(_fetch(srv.port, "wake", 0, max_wait_ms=forever_ms)))
        t.start()
        while srv.stats()["waiting_fetches"] == 0:
            time.sleep(0.001)
        _produce(srv.port, "wake", _batch(2))
        t.join(120)  # a liveness bound: without the wake-up it would wait for days
        assert not t.is_alive()
    assert result and result[0].records != b""  # type: ignore[attr-defined]


def test_the_server_caps_a_fetchs_max_bytes(root: str) -> None:
    with Admin(root) as a:
        a.create_topic("cap", partitions=1)
    with Server(root, port=0, max_fetch_response_bytes=1) as srv:
        for _ in range(3):
            _produce(srv.port, "cap", _batch(10, 100))
        part = _fetch(srv.port, "cap", 0, max_bytes=1 << 30)
    records = part.records  # type: ignore[attr-defined]
    assert 0 < len(records) < 3 * len(_batch(10, 100))  # one batch, not all three


class _NoInotify:
    """A Watcher as on a system without inotify (or past its limits)."""

    native = False

    def fileno(self) -> int:
        return -1

    def watch(self, directory: str) -> None: ...

    def unwatch(self, directory: str) -> None: ...

    def drain(self) -> None: ...

    def close(self) -> None: ...


@pytest.mark.parametrize("inotify", [True, False], ids=["inotify", "polling"])
def test_a_long_poll_is_woken_by_a_producer_outside_the_server(
    root: str, monkeypatch: pytest.MonkeyPatch, inotify: bool
) -> None:
    from logq import Producer
    from logq.server import context

    if not inotify:
        monkeypatch.setattr(context, "Watcher", _NoInotify)
    with Admin(root) as a:
        a.create_topic("outside", partitions=1)
    forever_ms = 2**31 - 1
    with Server(root, port=0, max_fetch_wait_ms=forever_ms) as srv:
        result: list[object] = []
        t = threading.Thread(target=lambda: result.append(_fetch(srv.port, "outside", 0, max_wait_ms=forever_ms)))
        t.start()
        while srv.stats()["waiting_fetches"] == 0:
            time.sleep(0.001)
        with Producer(root) as p:  # appends to the files directly, not through the server
            p.send("outside", value=b"direct").get()
        t.join(120)  # a liveness bound: without a wake-up it would wait for days
        assert not t.is_alive()
    assert result and b"direct" in result[0].records  # type: ignore[attr-defined]


def test_the_servers_own_files_are_private_like_the_rest_of_the_data_directory(root: str) -> None:
    import os
    import stat

    with Server(root, port=0):
        pass
    folder = os.path.join(root, "__logq", "server")
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    for name in os.listdir(folder):
        assert stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode) & 0o077 == 0, name
