"""The share-partition's flock, waited for in the kernel with a bounded wait.

Many processes take this lock once per poll, each hold being short (catch up, change, append a
frame). Waiting by retrying ``LOCK_NB`` with sleeps (logq/groups/files.py's GroupLock) wakes
up late: a consumer of a contended partition slept through most of its wall time. Here a
waiter first tries ``LOCK_NB``; when the lock is taken, a helper thread blocks in
``flock(LOCK_EX)`` (the kernel hands the lock over the moment its holder releases it) while the
caller waits for it on an event, at most ``timeout_ms`` (no signals are used).

The file and its content are those of a GroupLock (two 64-byte token slots), so a GroupLock and
a ShareLock on the same path exclude each other (flock is per open file description).

A wait that times out leaves its helper blocked, no longer wanted: when it gets the lock it
lets go at once (and closes the descriptor if the ShareLock was closed meanwhile), so no lock
is ever held for nobody, even by a ShareLock dropped without ``close``. The next ``hold`` while
that helper is still blocked waits for it again (never a second helper on one descriptor, so no
helper can take or release the lock behind a holder's back).
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from logq.errors import ClientClosedError, LockTimeoutError, storage_error
from logq.groups.files import read_lock_tokens, write_lock_token
from logq.storage import files as fs


class _Waiter:
    """One helper thread blocked in flock(LOCK_EX) on ``fd``. When it gets the lock it keeps
    it only if a ``hold`` is waiting for it (``wanted``); otherwise (the wait timed out, the
    lock was closed or dropped) it lets go at once, so a lock is never held for nobody."""

    def __init__(self, lock: ShareLock, fd: int) -> None:
        self.done = threading.Event()
        self.locked = False  # the helper got the lock and handed it to the waiting hold
        self.wanted = True
        self.error: OSError | None = None
        self.thread = threading.Thread(target=self._run, args=(lock, fd), name="logq-share-lock", daemon=True)
        self.thread.start()

    def _run(self, lock: ShareLock, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            self.error = e
        with lock.guard:
            if self.error is None:
                if self.wanted:
                    self.locked = True
                else:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            if lock.abandoned_fd == fd:  # closed while waiting
                os.close(fd)
                lock.abandoned_fd = None
            self.done.set()


class ShareLock:
    """An exclusive flock on ``path`` with bounded, kernel-woken waits; shareable by the threads
    of one process (they take turns)."""

    def __init__(self, path: str, timeout_ms: float) -> None:
        self.path = path
        self.timeout_ms = timeout_ms
        self._fd: int | None = fs.open_file(path, os.O_RDWR | os.O_CREAT)
        self._threads = threading.Lock()
        self.guard = threading.Lock()  # between close() and a helper thread
        self.abandoned_fd: int | None = None
        self._waiter: _Waiter | None = None

    @contextmanager
    def hold(self) -> Iterator[None]:
        if not self._threads.acquire(timeout=max(0.0, self.timeout_ms / 1000.0)):
            raise LockTimeoutError(self.path, "share-partition lock", self.timeout_ms)
        try:
            if self._fd is None:
                raise ClientClosedError("share-partition lock")
            self._lock(self._fd)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _lock(self, fd: int) -> None:
        with self.guard:
            waiter = self._waiter
            if waiter is not None and waiter.done.is_set():
                waiter = self._waiter = None  # a helper that let go after a timed-out wait
            if waiter is not None:
                waiter.wanted = True  # still blocked: wait for it (never a second helper)
        if waiter is None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                waiter = self._waiter = _Waiter(self, fd)
        waiter.done.wait(self.timeout_ms / 1000.0)
        with self.guard:
            if not waiter.done.is_set():
                waiter.wanted = False  # it lets go when it gets the lock
                raise LockTimeoutError(self.path, "share-partition lock", self.timeout_ms)
            self._waiter = None
        if waiter.error is not None:
            raise storage_error("flock", self.path, waiter.error)
        assert waiter.locked

    def read_tokens(self) -> tuple[bytes, bytes]:
        assert self._fd is not None
        return read_lock_tokens(self._fd)

    def write_token(self, slot: int, token: bytes) -> None:
        assert self._fd is not None
        write_lock_token(self._fd, slot, token, self.path)

    def close(self) -> None:
        with self._threads, self.guard:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            waiter, self._waiter = self._waiter, None
            if waiter is not None and not waiter.done.is_set():
                waiter.wanted = False
                self.abandoned_fd = fd  # the helper lets go and closes it when it gets the lock
                return
            os.close(fd)
