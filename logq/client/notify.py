"""Wake a waiting consumer when any process writes to a partition it reads.

On Linux this is inotify (through ctypes, no dependency): the kernel reports every write
to a file in a watched partition directory, so producers in other processes pay nothing
and a sleeping consumer wakes within tens of microseconds. ``sleep()``-based polling could
not do better than ~0.6 ms here. Elsewhere, or when inotify is unavailable (limits
reached), waiting falls back to short sleeps that back off up to ``_MAX_SLEEP_S`` while
nothing arrives; the consumer calls ``reset_backoff()`` when a read returns records, so a
partition that is busy again is polled at the shortest sleep, not at the idle one.

An event loop waits without a thread: ``fileno()`` is the inotify descriptor (-1 without
inotify), readable once a watched directory changed; register it with
``loop.add_reader``, and ``drain()`` (never blocking) before re-reading the logs, so a
write after the drain leaves it readable (logq/aio/consumer.py does this).

``wake()`` (from any thread) ends the current or next wait at once: a byte on a pipe the
wait also selects on, or an Event in the fallback. ``Consumer.wakeup()`` and a ``close()``
from another thread use it.

A watcher never decides what is new: it only ends a wait early. The consumer re-reads the
log after every wake-up, so a lost or spurious event costs at most one extra read.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import math
import os
import select
import sys
import threading

__all__ = ["Watcher"]

_IN_MODIFY = 0x00000002
_IN_CREATE = 0x00000100
_IN_MOVED_TO = 0x00000080
_IN_CLOSE_WRITE = 0x00000008
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_MASK = _IN_MODIFY | _IN_CREATE | _IN_MOVED_TO
_DRAIN_BYTES = 64 * 1024
_MAX_EVENT_BYTES = 16 + 256  # struct inotify_event plus the longest name (NAME_MAX + NUL, padded)
_MAX_SLEEP_S = 0.01

_libc: ctypes.CDLL | None = None


def _load_libc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            lib.inotify_init1.argtypes = [ctypes.c_int]
            lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
            lib.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
            _libc = lib
        except (OSError, AttributeError):
            return None
    return _libc


class Watcher:
    """Watches directories; ``wait(timeout_s)`` returns early when one of them changes."""

    def __init__(self) -> None:
        self._fd = -1
        self._watches: dict[str, int] = {}
        lib = _load_libc()
        if lib is not None:
            fd = lib.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
            if fd >= 0:
                self._fd = fd
        self._sleep_s = 0.0001
        self._woken = threading.Event()  # wake() was called: the next wait returns at once
        self._wake_lock = threading.Lock()  # wake() never writes to a pipe close() released
        self._wake_r = self._wake_w = -1
        if self._fd >= 0:
            try:
                self._wake_r, self._wake_w = os.pipe()
            except OSError:  # EMFILE: out of descriptors, so poll instead (as without inotify)
                os.close(self._fd)
                self._fd = -1
        self._poller: select.poll | None = None
        if self._fd >= 0:
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
            # poll(2) with both descriptors registered once: no fd lists built per wait
            self._poller = select.poll()
            self._poller.register(self._fd, select.POLLIN)
            self._poller.register(self._wake_r, select.POLLIN)

    @property
    def native(self) -> bool:
        return self._fd >= 0

    def fileno(self) -> int:
        """The inotify descriptor (non-blocking), readable when a watched directory changed; -1 without inotify.

        For an event loop's ``add_reader``: it stays readable until ``drain()``; it does not
        report ``wake()``, which is for threads blocked in ``wait``.
        """
        return self._fd

    def watched(self) -> set[str]:
        """The directories watched now."""
        return set(self._watches)

    def watch(self, directory: str, *, closes: bool = False) -> None:
        """Wake on writes to files in ``directory``; with ``closes``, also when a file opened for
        writing there is closed, which the kernel does for a process killed with kill -9 (share
        consumers watch their group's member files so)."""
        if self._fd < 0 or directory in self._watches:
            return
        lib = _load_libc()
        assert lib is not None
        mask = _MASK | _IN_CLOSE_WRITE if closes else _MASK
        wd = lib.inotify_add_watch(self._fd, os.fsencode(directory), mask)
        if wd < 0:
            if ctypes.get_errno() == errno.ENOSPC:  # fs.inotify.max_user_watches reached
                self.close()
            return
        self._watches[directory] = wd

    def unwatch(self, directory: str) -> None:
        wd = self._watches.pop(directory, None)
        if wd is not None and self._fd >= 0:
            lib = _load_libc()
            assert lib is not None
            lib.inotify_rm_watch(self._fd, wd)

    def drain(self) -> None:
        """Discard pending events (called before re-reading the logs).

        One read: the kernel hands over as many whole events as fit, and a short read
        means the queue is empty (an event that arrives after it ends the next wait at
        once, which is what it is for). Reading again only to meet EAGAIN would cost a
        system call and an exception on every poll.
        """
        if self._fd < 0:
            return
        try:
            while len(os.read(self._fd, _DRAIN_BYTES)) > _DRAIN_BYTES - _MAX_EVENT_BYTES:
                pass  # the buffer was (nearly) full: more may be queued
        except BlockingIOError:
            pass

    def wake(self) -> None:
        """End the wait in progress (or the next one) now; safe from any thread."""
        self._woken.set()
        with self._wake_lock:
            if self._wake_w >= 0:
                try:
                    os.write(self._wake_w, b"w")
                except OSError:  # the pipe is full: a wake-up is pending anyway
                    pass

    def wait(self, timeout_s: float | None) -> bool:
        """Block up to ``timeout_s`` (None: until a change or ``wake()``); True if something changed (or might have)."""
        if self._woken.is_set():
            self._clear_wake()
            return True
        if timeout_s is not None and timeout_s <= 0:
            return False
        poller = self._poller
        if self._fd >= 0 and poller is not None:
            ready = poller.poll(None if timeout_s is None else max(0, math.ceil(timeout_s * 1000)))
            for fd, _ in ready:
                if fd == self._wake_r:
                    self._clear_wake()
            return bool(ready)
        # Fallback: sleep, backing off so an idle consumer does not spin.
        delay = self._sleep_s if timeout_s is None else min(self._sleep_s, timeout_s)
        if self._woken.wait(delay):
            self._clear_wake()
        self._sleep_s = min(self._sleep_s * 2, _MAX_SLEEP_S)
        return True

    def woken(self) -> bool:
        """Whether a ``wake()`` is pending (not yet consumed by ``wait``)."""
        return self._woken.is_set()

    def _clear_wake(self) -> None:
        self._woken.clear()
        if self._wake_r >= 0:
            try:
                while os.read(self._wake_r, 512):
                    pass
            except BlockingIOError:
                pass

    def reset_backoff(self) -> None:
        self._sleep_s = 0.0001

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._poller = None
        with self._wake_lock:
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._wake_r = self._wake_w = -1
        self._watches.clear()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
