"""The share-partition lock (logq/groups/share_lock.py): kernel-woken waits, bounded by a timeout.

Two ShareLocks (or a ShareLock and a GroupLock) on one path are two open file descriptions, so
they exclude each other like two processes do. No test depends on timing: waits are observed
through events and outcomes, and the timeouts that must expire are tiny while the ones that must
not are long.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from logq.errors import ClientClosedError, LockTimeoutError, LogqError
from logq.groups.files import GroupLock
from logq.groups.share_lock import ShareLock

LONG_MS = 60_000


def test_a_waiter_gets_the_lock_when_the_holder_releases_it(tmp_path: Path) -> None:
    path = str(tmp_path / "p.lock")
    a, b = ShareLock(path, LONG_MS), ShareLock(path, LONG_MS)
    inside, release, got = threading.Event(), threading.Event(), []

    def holder() -> None:
        with a.hold():
            got.append("a")
            inside.set()
            release.wait()
            got.append("a done")

    t = threading.Thread(target=holder)
    t.start()
    inside.wait()
    with pytest.raises(LockTimeoutError):  # held by a: a short wait times out
        with ShareLock(path, 1).hold():
            pass
    release.set()
    with b.hold():
        got.append("b")
    t.join()
    assert got == ["a", "a done", "b"]
    a.close()
    b.close()


def test_a_timed_out_wait_is_a_logq_error_and_the_next_hold_reuses_its_helper(tmp_path: Path) -> None:
    path = str(tmp_path / "p.lock")
    holder = GroupLock(path, LONG_MS)
    waiter = ShareLock(path, 5)
    with holder.hold():
        with pytest.raises(LogqError, match="share-partition lock"):
            with waiter.hold():
                pass
        with pytest.raises(LockTimeoutError):  # the same helper is still waiting
            with waiter.hold():
                pass
    waiter.timeout_ms = LONG_MS
    with waiter.hold():  # the helper got it when the holder let go
        with pytest.raises(LockTimeoutError):
            with GroupLock(path, 1).hold():
                pass
    with holder.hold():  # released after the hold
        pass
    waiter.close()
    holder.close()


def test_closing_while_a_helper_waits_releases_the_lock_once_the_helper_gets_it(tmp_path: Path) -> None:
    path = str(tmp_path / "p.lock")
    holder = GroupLock(path, LONG_MS)
    waiter = ShareLock(path, 5)
    with holder.hold():
        with pytest.raises(LockTimeoutError):
            with waiter.hold():
                pass
        waiter.close()
    # the helper takes the lock after the holder, then unlocks it and closes its descriptor
    with GroupLock(path, LONG_MS).hold():
        pass
    waiter.close()  # twice: nothing
    with pytest.raises(ClientClosedError):
        with waiter.hold():
            pass
    holder.close()


def test_two_threads_of_one_process_take_turns(tmp_path: Path) -> None:
    lock = ShareLock(str(tmp_path / "p.lock"), LONG_MS)
    inside: list[int] = []
    overlaps: list[int] = []

    def work() -> None:
        for _ in range(200):
            with lock.hold():
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(1)
                inside.pop()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    lock.close()
