"""Request/reply: a Requester waits for the reply that carries its correlation id, answered by
workers in other processes (ShareConsumers) or by a plain Consumer; threads share one
Requester; replies to others, and late replies, are not mistaken for one's own; timeouts and
misuse raise logq errors."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator

import logq
import pytest
from logq.client.request_reply import CORRELATION_HEADER, REPLY_TO_HEADER, Replier, Requester, reply

WORKER = """
import sys
import logq
from logq.client.request_reply import Replier
root = sys.argv[1]
with logq.ShareConsumer(root, "requests", group_id="workers", auto_offset_reset="earliest") as sc, Replier(root) as r:
    print("ready", flush=True)
    while True:
        for rec in sc.poll(timeout=1.0):
            if rec.value == b"stop":
                sc.commit()
                sys.exit(0)
            r.reply(rec, b"done:" + rec.value, key=rec.key)
"""


def make(root: str) -> None:
    with logq.Admin(root) as a:
        a.create_topic("requests", partitions=2)
        a.create_topic("replies", partitions=2)


@pytest.fixture
def workers(root: str) -> Iterator[list[subprocess.Popen[str]]]:
    make(root)
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, root], stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
    yield procs
    with logq.Producer(root) as prod:
        for _ in procs:
            for part in (0, 1):
                prod.send("requests", b"stop", partition=part)
    for p in procs:
        try:
            p.wait(timeout=60)
        finally:
            p.kill()


def test_a_request_gets_the_reply_of_a_worker_in_another_process(root: str, workers: list) -> None:
    with Requester(root, "requests", "replies") as rq:
        got = rq.request(b"job-1", key=b"k", timeout=60)
    assert got.topic == "replies" and got.value == b"done:job-1" and got.key == b"k"
    assert [k for k, _ in got.headers] == [CORRELATION_HEADER]


def test_threads_sharing_a_requester_each_get_their_own_reply(root: str, workers: list) -> None:
    results: dict[bytes, bytes] = {}
    errors: list[BaseException] = []
    with Requester(root, "requests", "replies", max_pending_requests=3) as rq:

        def client(t: int) -> None:
            try:
                for i in range(8):
                    v = b"t%d-%d" % (t, i)
                    results[v] = rq.request(v, timeout=60).value
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=client, args=(t,)) for t in range(5)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert errors == []
    assert len(results) == 40 and all(r == b"done:" + v for v, r in results.items())


def test_two_requesters_on_one_reply_topic_do_not_take_each_others_replies(root: str, workers: list) -> None:
    with Requester(root, "requests", "replies") as a, Requester(root, "requests", "replies") as b:
        for i in range(5):
            assert a.request(b"a%d" % i, timeout=60).value == b"done:a%d" % i
            assert b.request(b"b%d" % i, timeout=60).value == b"done:b%d" % i


def test_no_reply_raises_logq_timeout_and_a_late_reply_is_dropped(root: str) -> None:
    make(root)
    with Requester(root, "requests", "replies") as rq:
        with pytest.raises(logq.LogqTimeoutError, match="no reply on 'replies'") as e:
            rq.request(b"first", timeout=0.05)
        assert isinstance(e.value, TimeoutError) and e.value.hint
        with logq.Consumer(root, "requests", auto_offset_reset="earliest") as c, Replier(root) as w:
            (first,) = c.poll(timeout=1.0)
            w.reply(first, b"late")  # its requester gave up: dropped
            result: list[logq.Record] = []
            t = threading.Thread(target=lambda: result.append(rq.request(b"second", timeout=60)))
            t.start()
            (second,) = c.poll(timeout=30.0)
            reply(w.producer, second, b"answer")  # a plain Consumer's record, the module function
            t.join()
    assert [r.value for r in result] == [b"answer"]


def test_a_request_carries_the_correlation_and_reply_to_headers_after_the_users(root: str) -> None:
    make(root)
    with Requester(root, "requests", "replies") as rq:
        with pytest.raises(logq.LogqTimeoutError):
            rq.request(b"x", headers={"trace": b"1"}, timeout=0.01)
    with logq.Consumer(root, "requests", auto_offset_reset="earliest") as c:
        (req,) = c.poll(timeout=1.0)
    names = [k for k, _ in req.headers]
    assert names == ["trace", CORRELATION_HEADER, REPLY_TO_HEADER]
    cid = dict(req.headers)[CORRELATION_HEADER]
    assert len(cid) == 32 and int(cid, 16) >= 0 and dict(req.headers)[REPLY_TO_HEADER] == b"replies"


def test_a_request_with_ttl_expires_unprocessed_when_no_worker_took_it_in_time(root: str) -> None:
    make(root)
    with Requester(root, "requests", "replies") as rq:
        with pytest.raises(logq.LogqTimeoutError):
            rq.request(b"x", timeout=0.01, ttl_ms=1)
        with pytest.raises(logq.ConfigError, match="ttl_ms=0"):
            rq.request(b"x", timeout=1, ttl_ms=0)
    with logq.Consumer(root, "requests", auto_offset_reset="earliest") as c:
        (req,) = c.poll(timeout=1.0)
    assert int(dict(req.headers)["logq.expire_at_ms"]) == req.timestamp + 1
    clock = lambda: req.timestamp + 1  # noqa: E731
    with logq.ShareConsumer(root, "requests", group_id="w", auto_offset_reset="earliest", clock=clock) as sc:
        assert sc.poll(timeout=0) == []


@pytest.mark.parametrize("timeout", [0, -1, None, float("inf"), "1", True])
def test_bad_timeouts_are_config_errors(root: str, timeout: object) -> None:
    make(root)
    with Requester(root, "requests", "replies") as rq, pytest.raises(logq.ConfigError, match="timeout"):
        rq.request(b"x", timeout=timeout)  # type: ignore[arg-type]


def test_misuse_raises_logq_errors(root: str) -> None:
    make(root)
    with pytest.raises(logq.UnknownTopicError):
        Requester(root, "nope", "replies")
    with pytest.raises(logq.UnknownTopicError):
        Requester(root, "requests", "nope")
    with pytest.raises(logq.InvalidTopicError):
        Requester(root, "bad topic", "replies")
    with pytest.raises(logq.ConfigError, match="max_pending_requests"):
        Requester(root, "requests", "replies", max_pending_requests=0)
    rq = Requester(root, "requests", "replies")
    with pytest.raises(logq.ConfigError, match="set by the request/reply helper"):
        rq.request(b"x", headers=[(CORRELATION_HEADER, b"mine")], timeout=1)
    rq.close()
    rq.close()
    with pytest.raises(logq.ClientClosedError):
        rq.request(b"x", timeout=1)
    with Replier(root) as w, pytest.raises(logq.ConfigError, match="not a request"):
        w.reply(logq.Record("requests", 0, 0, 0, None, b"x", ()), b"y")


def test_close_from_another_thread_ends_a_waiting_request(root: str) -> None:
    make(root)
    rq = Requester(root, "requests", "replies")
    raised: list[BaseException] = []
    started = threading.Event()

    def wait() -> None:
        started.set()
        try:
            rq.request(b"x", timeout=600)
        except BaseException as e:
            raised.append(e)

    t = threading.Thread(target=wait)
    t.start()
    started.wait()
    with logq.Consumer(root, "requests", auto_offset_reset="earliest") as c:
        assert c.poll(timeout=30.0)  # the request is out: its thread waits for the reply
    rq.close()
    t.join()
    assert len(raised) == 1 and isinstance(raised[0], logq.ClientClosedError)


def test_a_requester_never_closed_lets_its_process_exit_cleanly(root: str) -> None:
    make(root)
    code = (
        "import sys, logq\n"
        "from logq.client.request_reply import Requester\n"
        "rq = Requester(sys.argv[1], 'requests', 'replies')\n"
        "try:\n"
        "    rq.request(b'x', timeout=0.01)\n"
        "except logq.LogqTimeoutError:\n"
        "    pass\n"
    )
    res = subprocess.run([sys.executable, "-c", code, root], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    with logq.Consumer(root, "requests", auto_offset_reset="earliest") as c:
        assert len(c.poll(timeout=1.0)) == 1  # the request was written before the exit
