"""Between the sync clients and an event loop: thread calls that survive cancellation, and futures.

The asyncio clients run the sync clients' core (logq/client): nothing here batches, fetches
or follows a group. Two helpers carry that core into a loop:

- ``ThreadCalls``: run a blocking call of the sync client in a worker thread while holding an
  ``asyncio.Lock`` that every other use of that client takes too, so the sync client sees one
  caller at a time (its one-thread rule, logq/client/consumer_access.py). A call cannot be
  taken back once its thread started, so cancelling the awaiting task ends the wait at once
  but the lock stays held until the thread returns: nothing else touches the client while
  the call finishes in the background, and the cancelled caller sees CancelledError.
- ``loop_future``: an ``asyncio.Future`` settled from a sync ``RecordFuture`` when its
  batch is written (its ``add_both`` callback, in the writing thread, hands the outcome to
  the loop through ``loop.call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from logq.client.futures import RecordFuture, RecordMetadata

__all__ = ["ThreadCalls", "loop_future", "settle"]

_R = TypeVar("_R")


class ThreadCalls:
    """Run sync calls in threads under one ``asyncio.Lock`` (see the module docstring)."""

    def __init__(self, executor: Executor | None = None) -> None:
        self.lock = asyncio.Lock()
        self.executor = executor

    async def run(self, fn: Callable[..., _R], *args: Any, **kwargs: Any) -> _R:
        """``fn(*args, **kwargs)`` in a worker thread, holding ``lock`` until it returned."""
        await self.lock.acquire()
        try:
            fut = asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))
        except BaseException:
            self.lock.release()
            raise
        held_on = False
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            if not fut.done():  # the thread goes on: release when it returns, not now
                held_on = True
                fut.add_done_callback(self._release_after)
            raise
        finally:
            if not held_on:
                self.lock.release()

    def _release_after(self, fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled():
            fut.exception()  # retrieved: its caller was cancelled and will not see it
        self.lock.release()


def settle(target: asyncio.Future[RecordMetadata], rf: RecordFuture) -> None:
    """Copy a done RecordFuture's outcome into ``target`` (on the loop's thread)."""
    if target.done():  # cancelled by its awaiter: the record is written anyway
        return
    try:
        target.set_result(rf.result(0))
    except BaseException as e:  # noqa: BLE001 - the future carries whatever the write raised
        target.set_exception(e)


def loop_future(rf: RecordFuture, loop: asyncio.AbstractEventLoop) -> asyncio.Future[RecordMetadata]:
    """An asyncio future that completes with ``rf`` (at once if ``rf`` is already done).

    The writing thread settles it through ``rf.add_both`` and ``call_soon_threadsafe``:
    one callback per record, no thread waiting. Cancelling the returned future does not
    un-send the record.
    """
    out: asyncio.Future[RecordMetadata] = loop.create_future()
    if rf.done():
        settle(out, rf)
        return out

    def done(_outcome: object) -> None:  # in the writing thread
        try:
            loop.call_soon_threadsafe(settle, out, rf)
        except RuntimeError:  # the loop was closed meanwhile: nobody is waiting
            pass

    rf.add_both(done)
    return out
