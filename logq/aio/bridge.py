"""Between the sync clients and an event loop: thread calls that survive cancellation, and futures.

The asyncio clients run the sync clients' core (logq/client): nothing here batches, fetches
or follows a group. Two helpers carry that core into a loop:

- ``ThreadCalls``: run a blocking call of the sync client in a worker thread while holding an
  ``asyncio.Lock`` that every other use of that client takes too, so the sync client sees one
  caller at a time (its one-thread rule, logq/client/consumer_access.py). A call cannot be
  taken back once its thread started, so cancelling the awaiting task ends the wait at once
  but the lock stays held until the thread returns: nothing else touches the client while
  the call finishes in the background, and the cancelled caller sees CancelledError.
- ``FutureBridge``: ``asyncio.Future``s settled from sync ``RecordFuture``s when their
  batch is written (one ``add_both`` callback per batch, in the writing thread, hands the
  batch to the loop through ``loop.call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from logq.client.futures import RecordFuture, RecordMetadata
from logq.errors import ConfigError

__all__ = ["FutureBridge", "ThreadCalls", "check_arguments", "settle"]

_R = TypeVar("_R")


class ThreadCalls:
    """Run sync calls in threads under one ``asyncio.Lock`` (see the module docstring)."""

    def __init__(self, executor: Executor | None = None) -> None:
        self.lock = asyncio.Lock()
        self.executor = executor
        self.busy = False  # a call is running in its thread (set and cleared on the loop)

    async def run(
        self, fn: Callable[..., _R], *args: Any, prepare: Callable[[], object] | None = None, **kwargs: Any
    ) -> _R:
        """``fn(*args, **kwargs)`` in a worker thread, holding ``lock`` until it returned.

        ``prepare()`` runs first, on the loop, once the lock is held.
        """
        await self.lock.acquire()
        try:
            if prepare is not None:
                prepare()
            fut = asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))
        except BaseException:
            self.lock.release()
            raise
        self.busy = True
        fut.add_done_callback(self._not_busy)
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

    def _not_busy(self, _fut: asyncio.Future[Any]) -> None:
        self.busy = False

    def _release_after(self, fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled():
            fut.exception()  # retrieved: its caller was cancelled and will not see it
        self.lock.release()


def settle(target: asyncio.Future[RecordMetadata], rf: RecordFuture) -> None:
    """Copy a written RecordFuture's outcome into ``target`` (on the loop's thread).

    Read without waiting (``outcome``): ``result`` waits for the batch's delivery callbacks,
    which may still be running in the writing thread when the loop gets here.
    """
    if target.done():  # cancelled by its awaiter: the record is written anyway
        return
    got = rf.outcome()
    if isinstance(got, BaseException):
        target.set_exception(got)
    else:
        target.set_result(got)


class FutureBridge:
    """asyncio futures settled from sync ``RecordFuture``s, one hand-over per batch.

    A RecordFuture is a (batch, index) pair (logq/client/futures.py) and every record of a
    batch completes at once, so the first pending record of a batch registers one
    ``add_both`` callback; in the writing thread it hands the whole batch to the loop with
    one ``call_soon_threadsafe`` (a write to the loop's wake-up pipe), and the loop settles
    every future of the batch. Cancelling a returned future does not un-send its record.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._waiting: dict[object, list[tuple[asyncio.Future[RecordMetadata], RecordFuture]]] = {}

    def future_for(self, rf: RecordFuture) -> asyncio.Future[RecordMetadata]:
        """An asyncio future that completes with ``rf`` (at once if ``rf`` is already done)."""
        out: asyncio.Future[RecordMetadata] = self.loop.create_future()
        if rf.done():
            settle(out, rf)
            return out
        batch = rf[0]
        pending = self._waiting.get(batch)
        if pending is not None:
            pending.append((out, rf))
            return out
        self._waiting[batch] = [(out, rf)]
        rf.add_both(self._written, batch)
        return out

    def _written(self, batch: object, _outcome: object) -> None:  # in the writing thread
        try:
            self.loop.call_soon_threadsafe(self._settle_batch, batch)
        except RuntimeError:  # the loop was closed meanwhile: nobody is waiting
            pass

    def _settle_batch(self, batch: object) -> None:
        for out, rf in self._waiting.pop(batch, ()):
            settle(out, rf)


def check_arguments(cls: type, name: str, *args: Any, **kwargs: Any) -> None:
    """ConfigError (not Python's TypeError) for arguments ``cls`` does not take, an unknown keyword say."""
    try:
        inspect.signature(cls).bind(*args, **kwargs)
    except TypeError as e:
        raise ConfigError(
            f"{name}: {e}", hint=f"{name} takes the arguments of logq.{cls.__name__} (see docs/guide.md)"
        ) from None
