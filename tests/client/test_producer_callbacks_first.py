"""Callbacks first: a thread waiting on a record's future (``get``/``result``/``exception``)
wakes only once that record's delivery callbacks ran, as in Java's and kafka-python's
producers. ``written()``/``outcome()`` read the outcome as soon as the batch is in the log;
inside a callback, ``get`` waits for the write only (so it cannot wait on itself)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from logq import LogqTimeoutError, Producer, RecordMetadata
from logq.aio.bridge import FutureBridge

from tests.support.clients import make_topic


def test_a_thread_waiting_on_get_wakes_only_after_the_records_callback_ran(root: str) -> None:
    make_topic(root)
    order: list[str] = []
    in_callback, release = threading.Event(), threading.Event()

    def slow(err: BaseException | None, md: RecordMetadata | None) -> None:
        in_callback.set()
        release.wait(30)
        order.append("callback")

    with Producer(root, linger_ms=60_000) as prod:
        fut = prod.send("t", b"v", on_delivery=slow)
        waiter = threading.Thread(target=lambda: order.append(f"get {fut.get(timeout=30).offset}"))
        waiter.start()
        writer = threading.Thread(target=prod.flush)
        writer.start()
        assert in_callback.wait(30)
        assert fut.written() and not fut.done()  # in the log, its callback still running
        assert fut.outcome() == RecordMetadata("t", fut.outcome().partition, 0, fut.outcome().timestamp)
        waiter.join(0.5)  # a chance to return early, which it must not take
        release.set()
        waiter.join(30)
        writer.join(30)
    assert order == ["callback", "get 0"]
    assert fut.done() and fut.succeeded()


def test_a_failed_records_errback_runs_before_exception_returns(root: str) -> None:
    from logq import Admin

    make_topic(root)
    order: list[str] = []
    with Producer(root, linger_ms=60_000) as prod:
        fut = prod.send("t", b"v")
        fut.add_errback(lambda e: order.append(f"errback {type(e).__name__}"))
        with Admin(root) as admin:
            admin.delete_topic("t")
        waiter = threading.Thread(target=lambda: order.append(f"exception {type(fut.exception(30)).__name__}"))
        waiter.start()
        with pytest.raises(Exception, match="could not be written"):
            prod.flush()
        waiter.join(30)
    assert order == ["errback TopicDeletedError", "exception TopicDeletedError"]


def test_get_inside_a_callback_returns_once_written_instead_of_waiting_on_itself(root: str) -> None:
    make_topic(root, "t", 1)
    seen: list[Any] = []
    own: list[Any] = []

    def callback(err: BaseException | None, md: RecordMetadata | None) -> None:
        if md is not None and md.offset == 0:
            again = prod.send("t", b"from-callback", partition=0)
            prod.flush()  # written now; its callbacks are queued behind this one
            seen.append(again.get(timeout=10).offset)
            seen.append(own[0].get(timeout=10).offset)  # this record's own future

    with Producer(root, linger_ms=60_000) as prod:
        own.append(prod.send("t", b"first", partition=0, on_delivery=callback))
        prod.flush()
    assert seen == [1, 0]


def test_outcome_before_the_write_is_a_logq_timeout_and_written_is_false(root: str) -> None:
    make_topic(root)
    with Producer(root, linger_ms=60_000) as prod:
        fut = prod.send("t", b"v")
        assert not fut.written() and not fut.done()
        with pytest.raises(LogqTimeoutError):
            fut.outcome()
        prod.flush()
        assert fut.written() and fut.done()
        assert isinstance(fut.outcome(), RecordMetadata)


def test_an_asyncio_future_settles_while_a_later_callback_of_its_batch_still_runs(root: str) -> None:
    """The aio bridge reads the outcome without waiting: a callback of the same batch that
    waits for the asyncio side must not leave the asyncio future with a timeout."""
    make_topic(root, "t", 1)
    loop_saw = threading.Event()

    async def main() -> RecordMetadata:
        bridge = FutureBridge(asyncio.get_running_loop())
        with Producer(root, linger_ms=60_000) as prod:
            first = prod.send("t", b"a", partition=0)
            settled = bridge.future_for(first)  # the bridge's callback comes first in the batch
            prod.send("t", b"b", partition=0, on_delivery=lambda e, m: loop_saw.wait(30))
            writer = threading.Thread(target=prod.flush)
            writer.start()
            md = await asyncio.wait_for(settled, 30)
            loop_saw.set()
            await asyncio.to_thread(writer.join, 30)
            return md

    md = asyncio.run(main())
    assert (md.partition, md.offset) == (0, 0)


def test_after_a_callback_raised_keyboard_interrupt_the_next_flush_runs_the_callbacks_left_queued(root: str) -> None:
    make_topic(root, "t", 1)
    ran: list[int] = []
    later: list[Any] = []

    def callback(err: BaseException | None, md: RecordMetadata | None) -> None:
        assert md is not None
        ran.append(md.offset)
        if md.offset == 0:
            later.append(prod.send("t", b"second", partition=0, on_delivery=callback))
            prod.flush()  # written; its callback queued behind this one
            raise KeyboardInterrupt  # not an Exception: it ends this thread's turn at callbacks

    with Producer(root, linger_ms=60_000) as prod:
        first = prod.send("t", b"first", partition=0, on_delivery=callback)
        with pytest.raises(KeyboardInterrupt):
            prod.flush()
        assert ran == [0] and first.done()
        assert later[0].written() and not later[0].done()
        prod.flush(timeout=10)  # its write of the partition runs the callback left queued
        assert ran == [0, 1] and later[0].get(timeout=0).offset == 1
