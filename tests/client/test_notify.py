"""The Watcher that ends a consumer's wait: wake-ups arrive, and drain() leaves nothing behind."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from logq.client.notify import Watcher


@pytest.fixture
def watcher() -> Watcher:
    w = Watcher()
    if not w.native:
        w.close()
        pytest.skip("inotify is not available here")
    return w


def test_a_write_in_a_watched_directory_ends_the_wait(tmp_path: Path, watcher: Watcher) -> None:
    watcher.watch(str(tmp_path))
    assert watcher.wait(0) is False
    threading.Timer(0.05, lambda: (tmp_path / "a.log").write_bytes(b"x")).start()
    assert watcher.wait(30) is True
    watcher.close()


def test_drain_empties_a_queue_larger_than_one_read(tmp_path: Path, watcher: Watcher) -> None:
    watcher.watch(str(tmp_path))
    for i in range(3000):  # ~48 bytes of event each: more than one 64 KiB read holds
        (tmp_path / f"{i:020d}.log").write_bytes(b"x")
    watcher.drain()
    assert watcher.wait(0) is False  # nothing left to wake a wait early
    (tmp_path / "more.log").write_bytes(b"y")
    assert watcher.wait(30) is True
    watcher.close()


def test_wake_from_another_thread_ends_a_wait_without_a_timeout(watcher: Watcher) -> None:
    threading.Timer(0.05, watcher.wake).start()
    assert watcher.wait(None) is True  # returned at all: the wait had no timeout
    assert not watcher.woken()
    watcher.close()


def test_close_ends_then_refuses_nothing(tmp_path: Path, watcher: Watcher) -> None:
    watcher.watch(str(tmp_path))
    watcher.close()
    assert not watcher.native
    watcher.wake()  # after close: a no-op, never an error
