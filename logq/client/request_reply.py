"""Request/reply over two topics: a small helper for RPC-style work queues.

A :class:`Requester` sends each request to ``request_topic`` with two headers (ASCII):
``logq.correlation_id`` (32 random hex digits, unique per request) and ``logq.reply_to``
(``reply_topic``), and waits for the record on ``reply_topic`` whose ``logq.correlation_id``
is the same. A worker (a ShareConsumer or a plain Consumer) answers with :func:`reply` or a
:class:`Replier`, which send the reply to the request's ``logq.reply_to`` topic with its
correlation id.

- The Requester reads every partition of ``reply_topic`` from its log end at construction: it
  sees the replies to the requests it sends, and skips (drops) replies to other requesters
  sharing the topic and replies that come after their request timed out.
- Several threads may call :meth:`Requester.request` at once: one of the waiting threads
  reads the reply topic and hands each reply to the thread waiting for it (the others sleep
  on a condition; none polls in a loop). At most ``max_pending_requests`` requests wait at
  once (a further one waits for a slot within its own timeout), so the replies held for
  their waiters are bounded by the same number.
- ``request(..., timeout=s)`` raises LogqTimeoutError when no reply came within ``timeout``
  seconds; the request itself stays in the log (a worker may still process it).
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from logq.client.consumer import Consumer
from logq.client.consumer_config import int_at_least
from logq.client.futures import RecordFuture
from logq.client.producer import Producer
from logq.client.records import header_text
from logq.errors import ClientClosedError, ConfigError, LogqTimeoutError
from logq.storage.topics import validate_topic
from logq.types import Record, TopicPartition

__all__ = ["CORRELATION_HEADER", "REPLY_TO_HEADER", "Replier", "Requester", "reply"]

CORRELATION_HEADER = "logq.correlation_id"
REPLY_TO_HEADER = "logq.reply_to"


def _header(record: Any, name: str) -> str | None:
    return header_text(getattr(record, "headers", None), name)


def _check_timeout(timeout: Any) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise ConfigError(f"timeout={timeout!r} is invalid: must be a number of seconds > 0")
    return float(timeout)


def _user_headers(headers: Any) -> list[tuple[str, Any]]:
    if headers is None:
        return []
    items = list(headers.items() if isinstance(headers, dict) else headers)
    for item in items:
        if isinstance(item, tuple) and len(item) == 2 and item[0] in (CORRELATION_HEADER, REPLY_TO_HEADER):
            raise ConfigError(f"header {item[0]!r} is set by the request/reply helper; do not pass it")
    return items


class Requester:
    """Sends requests to ``request_topic`` and waits for their replies on ``reply_topic``
    (the module docstring). Close it (or use ``with``) to release its producer and consumer."""

    def __init__(
        self, data_dir: str, request_topic: str, reply_topic: str, *, max_pending_requests: int = 1024
    ) -> None:
        self._closed = True  # until built
        self.request_topic = validate_topic(request_topic)
        self.reply_topic = validate_topic(reply_topic)
        self.max_pending_requests = int_at_least("max_pending_requests", max_pending_requests, 1)
        self._producer = Producer(data_dir, linger_ms=0)
        try:
            self._producer.registry.get(self.request_topic)  # UnknownTopicError now
            self._consumer = Consumer(data_dir, auto_offset_reset="latest")
            count = self._producer.registry.get(self.reply_topic).partitions
            tps = [TopicPartition(self.reply_topic, p) for p in range(count)]
            self._consumer.assign(tps)
            for tp, end in self._consumer.end_offsets(tps).items():
                self._consumer.seek(tp, end)  # replies from now on, read or not before the first poll
        except BaseException:
            self._producer.close()
            raise
        self._cond = threading.Condition()
        self._waiting: set[str] = set()  # correlation ids of requests waiting for their reply
        self._replies: dict[str, Record] = {}  # replies read for a waiting request (<= max_pending_requests)
        self._reader = threading.Lock()  # held by the waiting thread that reads the reply topic
        self._closed = False

    def request(
        self, value: Any, key: Any = None, headers: Any = None, timeout: float = 30.0, ttl_ms: int | None = None
    ) -> Record:
        """Send one request and return its reply (a Record of ``reply_topic``); LogqTimeoutError
        after ``timeout`` seconds without one. ``ttl_ms``: the request expires unprocessed after
        that long (share-group workers archive it as "expired"), e.g. ``int(timeout * 1000)``."""
        limit = _check_timeout(timeout)
        extra = _user_headers(headers)
        deadline = time.monotonic() + limit
        cid = secrets.token_hex(16)
        self._enter(cid, deadline, limit)
        try:
            hdrs = extra + [(CORRELATION_HEADER, cid.encode()), (REPLY_TO_HEADER, self.reply_topic.encode())]
            self._producer.send(self.request_topic, value, key=key, headers=hdrs, ttl_ms=ttl_ms)
            self._producer.flush()
            return self._wait(cid, deadline, limit)
        finally:
            with self._cond:
                self._waiting.discard(cid)
                self._replies.pop(cid, None)
                self._cond.notify_all()

    def _enter(self, cid: str, deadline: float, limit: float) -> None:
        with self._cond:
            while len(self._waiting) >= self.max_pending_requests:
                self._check_open()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LogqTimeoutError(
                        "request",
                        limit,
                        f"{self.max_pending_requests} requests already wait for replies (max_pending_requests)",
                        hint="raise max_pending_requests, or wait longer",
                    )
                self._cond.wait(left)
            self._check_open()
            self._waiting.add(cid)

    def _wait(self, cid: str, deadline: float, limit: float) -> Record:
        while True:
            with self._cond:
                self._check_open()
                got = self._replies.pop(cid, None)
                if got is not None:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LogqTimeoutError(
                        "request",
                        limit,
                        f"no reply on {self.reply_topic!r} with {CORRELATION_HEADER} {cid}",
                        hint="check that a worker consumes the request topic and replies; or wait longer",
                    )
                reading = self._reader.acquire(blocking=False)
                if not reading:
                    self._cond.wait(left)  # the reading thread notifies each reply and when it stops
                    continue
            try:
                self._read(left)
            finally:
                self._reader.release()
                with self._cond:
                    self._cond.notify_all()  # another waiter takes over reading

    def _read(self, timeout: float) -> None:
        """Poll the reply topic once (up to ``timeout`` s) and file the replies of waiting requests."""
        records = self._consumer.poll(timeout=timeout)
        with self._cond:
            for r in records:
                cid = _header(r, CORRELATION_HEADER)
                if cid is not None and cid in self._waiting:
                    self._replies[cid] = r
            if records:
                self._cond.notify_all()

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("requester")

    def close(self) -> None:
        """Close the producer and consumer; waiting requests raise ClientClosedError. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._consumer.wakeup()
        with self._cond:
            self._cond.notify_all()
        with self._reader:
            self._consumer.close()
        self._producer.close()

    def __enter__(self) -> Requester:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def reply(producer: Producer, request: Any, value: Any, key: Any = None, headers: Any = None) -> RecordFuture:
    """Send ``value`` as the reply to ``request`` (a Record or ShareRecord carrying
    ``logq.correlation_id`` and ``logq.reply_to``) with ``producer``; the send's future."""
    cid = _header(request, CORRELATION_HEADER)
    to = _header(request, REPLY_TO_HEADER)
    if cid is None or to is None:
        raise ConfigError(
            f"the record has no {CORRELATION_HEADER}/{REPLY_TO_HEADER} headers: it is not a request",
            hint="reply to records a Requester sent",
        )
    hdrs = _user_headers(headers) + [(CORRELATION_HEADER, cid.encode())]
    return producer.send(validate_topic(to), value, key=key, headers=hdrs)


class Replier:
    """The worker side: ``Replier(data_dir).reply(request, value)`` sends and writes the reply
    at once (its own producer, ``linger_ms=0``)."""

    def __init__(self, data_dir: str) -> None:
        self.producer = Producer(data_dir, linger_ms=0)

    def reply(self, request: Any, value: Any, key: Any = None, headers: Any = None) -> RecordFuture:
        return reply(self.producer, request, value, key, headers)

    def close(self) -> None:
        self.producer.close()

    def __enter__(self) -> Replier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
