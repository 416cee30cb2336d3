"""Deleting a topic renames each partition directory away only while holding its write lock
(``.lock``, the lock every append holds), so a writer that checked the topic's incarnation
under that lock finishes in the live directory first (issue 9 item 3: a race found in the
producer's incarnation check). A real process holds the lock; the delete waits for it, and
goes on at once when the holder is killed (the kernel drops the flock)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from logq.storage.topics import TopicRegistry, partition_path

HOLD_LOCK = """
import os, sys, time
from logq.storage.files import FileLock
lock = FileLock(os.path.join(sys.argv[1], ".lock"))
lock.acquire()
open(sys.argv[2], "w").close()
time.sleep(600)
"""


def _hold_write_lock(part_dir: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    ready = tmp_path / "locked"
    child = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, part_dir, str(ready)])
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert child.poll() is None, "the lock holder exited"
        assert time.monotonic() < deadline, "the child did not take the lock"
        time.sleep(0.01)
    return child


def _has_open(path: str) -> bool:
    """Whether this process has ``path`` open (the delete opened the lock file to wait on it)."""
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == path:
                return True
        except OSError:
            pass
    return False


def test_delete_waits_for_a_writer_holding_the_partition_lock(tmp_path: Path) -> None:
    root = str(tmp_path / "data")
    reg = TopicRegistry(root)
    reg.create("t", partitions=2)
    part0 = partition_path(root, "t", 0)
    holder = _hold_write_lock(part0, tmp_path)
    errors: list[BaseException] = []

    def delete() -> None:
        try:
            TopicRegistry(root).delete("t")
        except BaseException as e:  # reported below
            errors.append(e)

    t = threading.Thread(target=delete)
    t.start()
    try:
        deadline = time.monotonic() + 60
        while not _has_open(os.path.join(part0, ".lock")):
            assert t.is_alive() and time.monotonic() < deadline, "the delete never waited on the lock"
            time.sleep(0.01)
        # The delete is waiting for the lock the child holds: the metadata is gone (a writer
        # checking now fails) but the directory a writer may be appending to is still in place.
        assert not reg._has_meta_file("t")
        assert os.path.isdir(part0) and t.is_alive()
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # the kernel drops the holder's flock
        holder.wait()
    t.join(60)
    assert not t.is_alive() and errors == []
    assert not os.path.exists(part0) and not os.path.exists(partition_path(root, "t", 1))
    assert not TopicRegistry(root).exists("t")


def test_a_writer_holding_the_lock_past_open_timeout_ms_does_not_block_the_delete(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = str(tmp_path / "data")
    reg = TopicRegistry(root)
    reg.create("t", partitions=1, open_timeout_ms=0)
    part0 = partition_path(root, "t", 0)
    holder = _hold_write_lock(part0, tmp_path)
    try:
        with caplog.at_level(logging.WARNING, logger="logq.topics"):
            TopicRegistry(root).delete("t")
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert not os.path.exists(part0)
    assert any("renaming it anyway" in r.getMessage() for r in caplog.records)
