"""One thread at a time inside a Consumer, as in Kafka's clients.

A Consumer's methods are wrapped in ``one_thread``: a call made while another thread is inside
one raises ConcurrentAccessError (ClientClosedError once ``close()`` was called from another
thread), while the thread inside may call other methods (the lock is reentrant). The lock is
the client's ``_access`` (an RLock), ``_owner`` the thread inside and ``_closing`` whether
``close()`` is under way; ``wakeup()`` and ``close()`` are not wrapped: they may be called
from any thread.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from logq.errors import ClientClosedError, ConcurrentAccessError

__all__ = ["one_thread"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def one_thread(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a Consumer method only if no other thread is inside one (Kafka's light lock)."""

    @functools.wraps(method)
    def guarded(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        self: Any = args[0]  # a Consumer
        if not self._access.acquire(blocking=False):  # reentrant for the thread inside
            if self._closing:
                raise ClientClosedError("consumer")
            raise ConcurrentAccessError(
                f"Consumer is not safe for multi-threaded access: {method.__name__}() was called while "
                f"thread {self._owner} is inside a call"
            )
        self._owner = threading.get_ident()
        try:
            return method(*args, **kwargs)
        finally:
            self._access.release()

    return guarded
