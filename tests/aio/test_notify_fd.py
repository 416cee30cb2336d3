"""Watcher.fileno() and watched(): what an event loop registers with add_reader."""

from __future__ import annotations

import select
from pathlib import Path

import pytest
from logq.client.notify import Watcher


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_the_fd_is_readable_after_a_write_until_drained(tmp_path: Path) -> None:
    w = Watcher()
    if not w.native:
        pytest.skip("inotify is not available here")
    try:
        w.watch(str(tmp_path))
        assert w.watched() == {str(tmp_path)}
        fd = w.fileno()
        assert fd >= 0 and not readable(fd)
        (tmp_path / "f").write_bytes(b"x")
        assert readable(fd)
        w.drain()
        assert not readable(fd)
        w.unwatch(str(tmp_path))
        assert w.watched() == set()
    finally:
        w.close()
    assert w.fileno() == -1
    w.close()  # twice is harmless
