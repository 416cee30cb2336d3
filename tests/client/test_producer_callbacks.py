"""Delivery callbacks and kafka-python's future API: ``send(on_delivery=...)`` (confluent-kafka's
``(error, metadata)`` order), ``add_callback``/``add_errback``/``add_both``, ``get(timeout)``,
``succeeded``/``failed``. Each callback runs exactly once per record, on the thread that wrote
the batch (the linger thread, or the caller of send/flush/close), outside the producer's
locks; a callback that raises is logged and changes nothing else."""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections import Counter
from typing import Any

import pytest
from logq import (
    Admin,
    ConfigError,
    LogqTimeoutError,
    Producer,
    RecordMetadata,
    RecordsFailedError,
    TopicDeletedError,
)

from tests.support.clients import make_topic


def test_on_delivery_runs_once_per_record_with_the_metadata_result_gives(root: str) -> None:
    make_topic(root, "t", 3)
    calls: list[tuple[Any, Any]] = []
    with Producer(root, linger_ms=1, batch_size=500) as prod:
        futs = [
            prod.send("t", b"v%d" % i, key=b"k%d" % i, on_delivery=lambda e, m: calls.append((e, m)))
            for i in range(1000)
        ]
    assert len(calls) == 1000
    assert all(e is None for e, _ in calls)
    assert Counter(m for _, m in calls) == Counter(f.result() for f in futs)


def test_two_threads_sending_with_callbacks_get_each_record_acknowledged_exactly_once(root: str) -> None:
    make_topic(root, "t", 2)
    seen: Counter[tuple[int, int]] = Counter()
    lock = threading.Lock()

    def note(md: RecordMetadata) -> None:
        with lock:
            seen[(md.partition, md.offset)] += 1

    with Producer(root, linger_ms=1, batch_size=300) as prod:

        def work() -> None:
            for i in range(2000):
                prod.send("t", b"x%d" % i).add_callback(note)

        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(seen) == 4000 and set(seen.values()) == {1}


def test_callbacks_of_lingering_batches_run_on_the_linger_thread_and_flush_runs_its_own(root: str) -> None:
    make_topic(root)
    threads: list[str] = []
    with Producer(root, linger_ms=5) as prod:
        prod.send("t", b"a").add_callback(lambda md: threads.append(threading.current_thread().name))
        prod.send("t", b"b").get(timeout=10)
        assert threads == ["logq-linger"]
    with Producer(root, linger_ms=60_000) as prod:
        prod.send("t", b"c").add_callback(lambda md: threads.append(threading.current_thread().name))
        prod.flush()
    assert threads[1] == threading.current_thread().name


def test_a_callback_may_send_even_to_the_partition_being_written(root: str) -> None:
    make_topic(root)
    got: list[int] = []
    for linger in (0, 60_000):
        with Producer(root, linger_ms=linger) as prod:

            def again(md: RecordMetadata, prod: Producer = prod) -> None:
                if md.offset % 2 == 0:
                    prod.send("t", b"follow-up").add_callback(lambda m: got.append(m.offset))

            prod.send("t", b"first").add_callback(again)
            prod.flush()
            prod.flush()  # the follow-up queued by the callback
    assert len(got) == 2


def test_a_failed_batch_runs_errbacks_and_on_delivery_with_the_error_and_never_the_callback(root: str) -> None:
    make_topic(root)
    events: list[tuple[str, Any]] = []
    with Producer(root, linger_ms=60_000) as prod:
        fut = prod.send("t", b"v", on_delivery=lambda e, m: events.append(("delivery", (type(e), m))))
        fut.add_callback(lambda md: events.append(("callback", md)))
        fut.add_errback(lambda e: events.append(("errback", type(e))))
        fut.add_both(lambda x: events.append(("both", type(x))))
        with Admin(root) as admin:
            admin.delete_topic("t")
        with pytest.raises(RecordsFailedError):
            prod.flush()
    assert events == [
        ("delivery", (TopicDeletedError, None)),
        ("errback", TopicDeletedError),
        ("both", TopicDeletedError),
    ]
    assert fut.failed() and not fut.succeeded()
    with pytest.raises(TopicDeletedError):
        fut.get(timeout=1)


def test_a_callback_that_raises_is_logged_and_the_others_and_the_producer_go_on(
    root: str, caplog: pytest.LogCaptureFixture
) -> None:
    make_topic(root)
    ok: list[int] = []

    def boom(md: RecordMetadata) -> None:
        raise RuntimeError("callback bug")

    with caplog.at_level(logging.ERROR, logger="logq.producer"):
        with Producer(root, linger_ms=60_000) as prod:
            prod.send("t", b"a").add_callback(boom).add_callback(lambda md: ok.append(md.offset))
            prod.flush()
            prod.send("t", b"b").add_callback(lambda md: ok.append(md.offset))
    assert ok == [0, 1]
    assert "delivery callback" in caplog.text and "callback bug" in caplog.text


def test_adding_a_callback_to_a_done_future_runs_it_at_once_in_the_caller(root: str) -> None:
    make_topic(root)
    with Producer(root, linger_ms=0) as prod:
        fut = prod.send("t", b"v")
        md = fut.get(timeout=10)
        got: list[Any] = []
        fut.add_callback(lambda tag, m, n=0: got.append((tag, m, n)), "tag", n=3)
        assert got == [("tag", md, 3)]
        fut.add_errback(lambda e: got.append(e))  # succeeded: never called
        assert fut.succeeded() and len(got) == 1


def test_get_and_exception_wait_at_most_their_timeout_and_raise_a_logq_timeout(root: str) -> None:
    make_topic(root)
    with Producer(root, linger_ms=60_000) as prod:
        fut = prod.send("t", b"v")
        with pytest.raises(LogqTimeoutError):
            fut.get(timeout=0.01)
        with pytest.raises(LogqTimeoutError):
            fut.exception(timeout=0.01)
        assert not fut.done()
        prod.flush()
        assert fut.get(timeout=0) == fut.result() and fut.exception(timeout=0) is None


@pytest.mark.parametrize("bad", [42, "print", object()])
def test_a_callback_that_is_not_callable_is_refused_and_nothing_is_queued(root: str, bad: object) -> None:
    make_topic(root)
    with Producer(root, linger_ms=60_000) as prod:
        with pytest.raises(ConfigError, match="callable"):
            prod.send("t", b"v", on_delivery=bad)  # type: ignore[arg-type]
        fut = prod.send("t", b"w")
        with pytest.raises(ConfigError, match="callable"):
            fut.add_callback(bad)  # type: ignore[arg-type]
        prod.flush()
        assert prod.metrics()["record-send-total"] == 1


def test_callbacks_added_from_another_thread_while_batches_are_written_run_exactly_once(root: str) -> None:
    make_topic(root, "t", 2)
    calls: Counter[tuple[int, int]] = Counter()
    lock = threading.Lock()
    futures: list[Any] = []
    done_sending = threading.Event()

    def note(i: int, md: RecordMetadata) -> None:
        with lock:
            calls[(i, md.offset)] += 1

    def adder() -> None:  # races add_callback against the writers' finish()
        i = 0
        while not done_sending.is_set() or i < len(futures):
            if i < len(futures):
                futures[i].add_callback(note, i)
                i += 1

    with Producer(root, linger_ms=1, batch_size=200) as prod:
        t = threading.Thread(target=adder)
        t.start()
        for n in range(3000):
            futures.append(prod.send("t", b"v%d" % n))
        done_sending.set()
        t.join()
    assert len(calls) == 3000 and set(calls.values()) == {1}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_fork_child_never_runs_the_parents_callbacks_and_the_parent_runs_them_once(root: str) -> None:
    make_topic(root)
    ran: list[Any] = []
    with Producer(root, linger_ms=60_000) as prod:
        fut = prod.send("t", b"v", on_delivery=lambda e, m: ran.append(m))
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its copy of the future failed; the parent's callback did not run here
            try:
                errs: list[Any] = []
                fut.add_errback(lambda e: errs.append(type(e).__name__))
                ok = not ran and errs == ["ForkedClientError"]
                os.write(w, b"ok" if ok else repr((ran, errs)).encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            child_says = f.read()
        os.waitpid(pid, 0)
        prod.flush()
    assert child_says == b"ok"
    assert len(ran) == 1 and ran[0].offset == 0


def test_a_producer_dropped_without_close_still_calls_back_once_when_collected(root: str) -> None:
    make_topic(root)
    calls: list[Any] = []
    prod = Producer(root, linger_ms=60_000)
    prod.send("t", b"v", on_delivery=lambda e, m: calls.append((e, m.offset)))
    del prod
    gc.collect()
    assert calls == [(None, 0)]


def test_callbacks_of_one_partition_run_in_send_order_whichever_thread_writes(root: str) -> None:
    make_topic(root, "t", 2)
    order: dict[int, list[int]] = {0: [], 1: []}

    def note(err: Any, md: RecordMetadata | None) -> None:
        assert err is None and md is not None
        order[md.partition].append(md.offset)  # no lock: one partition's callbacks never overlap

    with Producer(root, linger_ms=1, batch_size=150) as prod:

        def work(p: int) -> None:
            for i in range(1500):
                prod.send("t", b"v%d" % i, partition=(i + p) % 2, on_delivery=note)
                if i % 100 == 0:
                    prod.flush()  # a third writer besides the linger thread and send()

        threads = [threading.Thread(target=work, args=(p,)) for p in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for p in (0, 1):
        assert order[p] == list(range(1500))


def test_flush_returns_only_after_callbacks_other_threads_run_and_a_callback_may_flush(root: str) -> None:
    make_topic(root)
    started, release, flushed = threading.Event(), threading.Event(), threading.Event()
    done: list[int] = []

    def slow(md: RecordMetadata) -> None:  # runs on the linger thread
        started.set()
        release.wait(30)
        done.append(md.offset)

    with Producer(root, linger_ms=1) as prod:
        prod.send("t", b"v").add_callback(slow)
        assert started.wait(30)
        t = threading.Thread(target=lambda: (prod.flush(), flushed.set()))
        t.start()
        assert not flushed.wait(0.2)  # still waiting for the linger thread's callback
        release.set()
        assert flushed.wait(30) and done == [0]
        t.join()

        def flushing(md: RecordMetadata) -> None:
            prod.flush()  # from inside a callback: does not wait for itself
            done.append(md.offset)

        prod.send("t", b"w").add_callback(flushing)
        prod.flush()
    assert done == [0, 1]
