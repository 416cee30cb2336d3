"""A client's life outside its owner's calls: interpreter exit, garbage collection, fork.

Every open client is in a ``LiveClients`` set (weakly: a client its owner dropped is
collected, and its ``__del__`` writes what it accepted). At interpreter exit the set runs
each live client's exit hook (the producer writes what is queued, bounded by
``EXIT_FLUSH_S``, and warns of what it could not); in the child of ``os.fork()`` it runs
each client's fork hook, which refuses every later call and fails the futures that only
the parent's threads could finish, without taking a lock a parent thread may have held.

The linger thread (``start_linger``) ticks a client every period, holding it weakly, so
that a client nobody holds is still collected; it ends when the client is closed or gone.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from logq.errors import ConfigError

__all__ = ["EXIT_FLUSH_S", "LiveClients", "check_timeout", "start_linger"]

EXIT_FLUSH_S = 30.0  # how long interpreter exit or garbage collection waits to write what is queued

C = TypeVar("C")


class LiveClients(Generic[C]):
    """The open clients of one kind, with what to do to each at exit and in a fork child."""

    def __init__(self, at_exit: Callable[[C], None], after_fork: Callable[[C], None]) -> None:
        self._live: weakref.WeakSet[Any] = weakref.WeakSet()
        self._at_exit = at_exit
        self._after_fork = after_fork
        atexit.register(self._run_at_exit)
        os.register_at_fork(after_in_child=self._run_after_fork)

    def add(self, client: C) -> None:
        self._live.add(client)

    def discard(self, client: C) -> None:
        self._live.discard(client)

    def _run_at_exit(self) -> None:
        for c in list(self._live):
            self._at_exit(c)

    def _run_after_fork(self) -> None:
        for c in list(self._live):
            self._after_fork(c)


def start_linger(client: C, stop: threading.Event, period: float, tick: Callable[[C, float], None]) -> threading.Thread:
    """Start the linger thread: ``tick(client, period)`` every ``period`` seconds until ``stop``."""
    # the thread holds the client weakly, so a client nobody holds is collected (and flushed)
    t = threading.Thread(
        target=_linger_main,
        args=(weakref.ref(client), stop, period, tick),
        name="logq-linger",
        daemon=True,
    )
    t.start()
    return t


def _linger_main(
    ref: weakref.ref[Any], stop: threading.Event, period: float, tick: Callable[[Any, float], None]
) -> None:
    """The linger thread: write batches ``linger_ms`` old; ends when the client closes or is collected."""
    while not stop.wait(period):
        p = ref()
        if p is None:
            return
        tick(p, period)
        del p


def check_timeout(timeout: Any) -> float | None:
    """None (wait as long as it takes) or a number of seconds >= 0."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
        raise ConfigError(f"timeout={timeout!r} is invalid: None (no limit) or a number of seconds >= 0")
    return timeout
