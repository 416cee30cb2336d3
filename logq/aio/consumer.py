"""AIOConsumer: the Consumer for asyncio code, shaped like aiokafka's AIOKafkaConsumer.

It wraps one ``logq.Consumer`` (logq/client/consumer.py), which does all the fetching,
decoding, positions, commits and group membership (its heartbeat thread keeps running as
with the sync client); this module decides where each call runs and how an idle consumer
waits:

- Reads run on the loop, as non-blocking ``poll(0, n)`` calls of at most
  ``read_chunk_records`` records each; a ``getmany`` that wants more gives the loop a turn
  between chunks, and so does a ``getone()`` loop every ``read_chunk_records`` records, so
  the loop is held for one chunk, or for one stored batch when a batch holds more records
  (a read decodes whole batches; from the page cache: see docs/benchmarks.md, "asyncio",
  for the measured stalls).
- When nothing is there, it waits without a timer: the inotify descriptor of its own
  ``Watcher`` (logq/client/notify.py), watching the assigned partitions' directories, is
  registered with ``loop.add_reader``. It is drained before each read, so a write after
  the drain leaves it readable: no wake-up is lost, and an idle consumer makes no reads.
  A group member also watches its group's directory (members joining or leaving rewrite
  the group state there) and re-checks the group every ``session_timeout_ms / 3`` (the
  heartbeat interval), every 50 ms while its assignment moved within the last
  ``session_timeout_ms`` (partitions released by their previous owner are taken then, as a
  sync poll does). Without inotify it sleeps 0.1 ms doubling up to 10 ms, as the sync client.
- Calls that may block (starting, which joins the group; ``commit``; seeks that read the
  logs; ``stop``) run in a worker thread while holding an ``asyncio.Lock`` that reads take
  too (logq/aio/bridge.py): the sync consumer sees one caller at a time.

``getone()`` (and ``async for``) reads up to ``read_chunk_records`` records at once and
returns them one by one; no read happens while some are left, so the sync consumer's
auto-commit and rebalances (which run inside its reads) only ever see positions after
records already returned. A seek, pause, resume, position, commit or ``stop()`` first
gives the records read ahead back (seeking their partitions to the first of them).

Cancellation: cancelling ``getmany``/``getone`` loses nothing. Records read in a
cancelled call but not returned are given back the same way, so positions (and commits)
always stand after the last record returned and the next call returns them again. A
cancelled ``commit`` or seek finishes in its thread. A group member with
``enable_auto_commit`` reads one chunk per call (``read_chunk_records`` caps
``max_records``): the sync core auto-commits, and commits on a rebalance, inside a read,
so a second chunk could store positions past records of the first that a cancellation
would then give back (a crash before the next commit would skip them); with one chunk, a
read's records are returned with no suspension after it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Any

from logq.aio.bridge import ThreadCalls, check_arguments
from logq.client.consumer import Consumer
from logq.client.consumer_config import as_tp, int_at_least
from logq.client.notify import Watcher
from logq.errors import ClientClosedError, ConcurrentAccessError, ConfigError, LogqError
from logq.groups.files import group_dir
from logq.storage.topics import partition_path
from logq.types import OffsetAndTimestamp, Record, TopicPartition

__all__ = ["AIOConsumer"]

_GROUP_MOVING_S = 0.05  # group re-check while the assignment is moving (the sync poll's interval)
_MIN_SLEEP_S = 0.0001  # without inotify: the first sleep, doubled while nothing arrives
_MAX_SLEEP_S = 0.01


class AIOConsumer:
    """``logq.Consumer`` for asyncio: ``await start()``, ``await getmany()``, ``async for``, ``await stop()``.

    Takes the arguments of ``logq.Consumer`` (checked by ``start()``, which opens it and
    joins the group) plus ``read_chunk_records`` (int >= 1, default 500: the most records
    one read on the loop returns before the loop gets a turn).
    """

    def __init__(self, data_dir: str, *topics: str, read_chunk_records: int = 500, **consumer_args: Any) -> None:
        self._chunk = int_at_least("read_chunk_records", read_chunk_records, 1)
        check_arguments(Consumer, "AIOConsumer", data_dir, *topics, **consumer_args)
        self._args = (data_dir, topics, consumer_args)
        self._consumer: Consumer | None = None
        self._watcher: Watcher | None = None
        self._calls: ThreadCalls | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Future[None] | None = None  # settled when the watcher's fd is readable
        self._reader_fd = -1
        self._sleep_s = _MIN_SLEEP_S
        self._since_turn = 0  # records returned since the loop last had a turn
        self._ahead: deque[Record] = deque()  # read by getone() but not returned yet
        self._group = consumer_args.get("group_id") is not None
        session_ms = consumer_args.get("session_timeout_ms", 3000)
        self._session_s = session_ms / 1000 if isinstance(session_ms, int) else 3.0
        self._owned: set[TopicPartition] = set()
        self._moved_at = 0.0  # loop time the assignment last changed
        self._stopping = False
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle
    @property
    def consumer(self) -> Consumer:
        """The sync Consumer underneath (for ``read_stats()`` and the like; do not poll it)."""
        return self._open()

    async def start(self) -> None:
        """Open the consumer (in a worker thread: joining a group takes file locks). Twice is harmless."""
        if self._stopped:
            raise ClientClosedError("consumer")
        if self._consumer is not None:
            return
        if self._calls is None:
            self._loop = asyncio.get_running_loop()
            self._calls = ThreadCalls()
            self._moved_at = self._loop.time()
        await self._calls.run(self._build)  # a second start() meanwhile waits for this one

    def _build(self) -> None:
        """In the worker thread; sets the fields even if start() was cancelled meanwhile (stop() closes them).

        A failed build (an unknown topic, a bad argument) leaves nothing: start() may be called again."""
        if self._consumer is None:
            data_dir, topics, args = self._args
            c = Consumer(data_dir, *topics, **args)
            self._watcher = Watcher()
            self._consumer = c

    def _close(self, autocommit: bool) -> None:
        """In the worker thread, after any build in progress (the lock orders them)."""
        if self._consumer is not None:
            self._consumer.close(autocommit)

    async def stop(self, autocommit: bool = True) -> None:
        """Leave the group (committing first, as ``Consumer.close``) and release everything.

        A ``getmany``/``getone`` waiting meanwhile returns empty ({} / ends ``async for``);
        later calls raise ClientClosedError. A second call does nothing.
        """
        if self._stopped:
            return
        self._stopped = self._stopping = True
        self._settle_ready()
        calls = self._calls
        try:
            if calls is not None:
                await calls.run(self._close, autocommit, prepare=self._hand_back)
        finally:
            if self._watcher is not None:
                self._watcher.close()

    async def __aenter__(self) -> AIOConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _open(self) -> Consumer:
        if self._stopping:
            raise ClientClosedError("consumer")
        c = self._consumer
        if c is None:
            raise ConfigError(
                "AIOConsumer is not started", hint="await consumer.start() first, or use `async with AIOConsumer(...)`"
            )
        return c

    def _on_loop(self) -> Consumer:
        """The consumer, for a coroutine: it must run on the loop the consumer was started in."""
        c = self._open()
        if asyncio.get_running_loop() is not self._loop:
            raise ConfigError(
                "AIOConsumer used from another event loop than the one it was started in",
                hint="create one AIOConsumer per event loop",
            )
        return c

    def _lock(self) -> asyncio.Lock:
        assert self._calls is not None  # set by start(), before any consumer exists
        return self._calls.lock

    # ------------------------------------------------------------------ reading
    async def getmany(
        self, *partitions: Any, timeout_ms: int | None = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Record]]:
        """Records by partition, at most ``max_records`` (default ``max_poll_records``) in all;
        only from ``partitions`` (assigned TopicPartitions) when given.

        Waits up to ``timeout_ms`` (int >= 0; None: until records arrive or ``stop()``) when
        nothing is there; {} when nothing arrived in time.
        """
        out: dict[TopicPartition, list[Record]] = {}
        for r in await self._get(timeout_ms, max_records, partitions):
            tp = TopicPartition(r.topic, r.partition)
            lst = out.get(tp)
            if lst is None:
                out[tp] = [r]
            else:
                lst.append(r)
        return out

    async def getone(self, *partitions: Any) -> Record:
        """The next record (of ``partitions`` when given), waiting as long as it takes;
        ClientClosedError if ``stop()`` ends the wait."""
        if partitions:  # no read-ahead: the next read may be of other partitions
            recs = await self._get(None, 1, partitions)
            rec = recs[0] if recs else None
        else:
            rec = await self._next()
        if rec is None:
            raise ClientClosedError("consumer")
        return rec

    async def _next(self, timeout_ms: int | None = None) -> Record | None:
        """One record: from the records read ahead, or a read of up to a chunk (the rest read ahead)."""
        ahead = self._ahead
        if ahead:
            return ahead.popleft()
        recs = await self._get(timeout_ms, self._chunk)
        if not recs:
            return None
        ahead.extend(recs)  # no suspension from the read to here: a cancellation loses nothing
        return ahead.popleft()

    def __aiter__(self) -> AIOConsumer:
        return self

    async def __anext__(self) -> Record:
        """``async for record in consumer``: ends when ``stop()`` is called, or after
        ``consumer_timeout_ms`` (a Consumer argument) without a record."""
        if self._stopping:
            raise StopAsyncIteration
        rec = await self._next(self._open().consumer_timeout_ms)
        if rec is None:
            raise StopAsyncIteration
        return rec

    async def _get(self, timeout_ms: Any, max_records: Any, partitions: tuple[Any, ...] = ()) -> list[Record]:
        c = self._on_loop()
        if timeout_ms is not None:
            timeout_ms = int_at_least("timeout_ms", timeout_ms, 0)
        limit = c.max_poll_records if max_records is None else int_at_least("max_records", max_records, 1)
        only = {as_tp(tp) for tp in partitions} if partitions else None
        ahead = self._ahead
        if ahead and only is None:  # read by getone() and not returned yet: no read until they are
            return [ahead.popleft() for _ in range(min(limit, len(ahead)))]
        loop = asyncio.get_running_loop()
        deadline = None if timeout_ms is None else loop.time() + timeout_ms / 1000
        while True:
            recs, rewatched = await self._read(c, limit, only)
            if recs or self._stopping:
                return recs
            if rewatched:  # a partition watched only now: read it before sleeping
                continue
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return recs
            await self._wait(left)
            if self._stopping:
                return []

    async def _read(self, c: Consumer, limit: int, only: set[TopicPartition] | None) -> tuple[list[Record], bool]:
        """Up to ``limit`` records (of ``only``, if given), in chunks with a loop turn between
        them; and whether watches changed."""
        out: list[Record] = []
        if self._since_turn >= self._chunk:  # getone() over a backlog: a loop turn every chunk of records
            self._since_turn = 0
            await asyncio.sleep(0)
        async with self._lock():
            if self._stopping:
                return out, False
            ahead = self._ahead
            if ahead and only is None:  # another task's getone() read ahead while this one waited
                return [ahead.popleft() for _ in range(min(limit, len(ahead)))], False
            self._hand_back()  # reading some partitions only: what getone() read ahead is read again later
            held = self._hold_others(c, only)
            assert self._watcher is not None
            self._watcher.drain()  # before reading: a write from now on leaves the fd readable
            one_chunk = c.enable_auto_commit  # see "Cancellation" in the module docstring
            try:
                while True:
                    chunk = c.poll(0, min(limit - len(out), self._chunk))
                    out += chunk
                    if not chunk or len(out) >= limit or self._stopping or one_chunk:
                        break
                    await asyncio.sleep(0)  # a turn for the loop between chunks
                    self._since_turn = 0
            except asyncio.CancelledError:
                self._give_back(c, out)
                raise
            except LogqError:
                if not out:  # otherwise the records before the failure go first; the next read raises
                    raise
            finally:
                if held:
                    c.resume(*held)
            if out:
                self._since_turn += len(out)
                self._sleep_s = _MIN_SLEEP_S
                return out, False
            return out, self._rewatch(c)

    def _hold_others(self, c: Consumer, only: set[TopicPartition] | None) -> list[TopicPartition]:
        """Pause the assigned partitions outside ``only`` (not paused by the user) for one read."""
        if only is None:
            return []
        assigned = c.assignment()
        for tp in only - assigned:
            raise ConfigError(f"{tp.topic}-{tp.partition} is not assigned to this consumer", hint="see assignment()")
        held = sorted(assigned - only - c.paused())
        if held:
            c.pause(*held)
        return held

    def _hand_back(self) -> None:
        """Give back the records read ahead (before a seek, pause, commit or close changes or stores positions)."""
        if self._ahead and self._consumer is not None:
            self._give_back(self._consumer, list(self._ahead))
            self._ahead.clear()

    def _give_back(self, c: Consumer, records: list[Record]) -> None:
        """Seek each partition of ``records`` back to its first one: the next read returns them again."""
        first: dict[TopicPartition, int] = {}
        for r in records:
            first.setdefault(TopicPartition(r.topic, r.partition), r.offset)
        for tp, offset in first.items():
            try:
                c.seek(tp, offset)
            except ConfigError:  # revoked by a rebalance meanwhile: its new owner reads it
                pass

    def _rewatch(self, c: Consumer) -> bool:
        """Watch the directories of the partitions read now (and the group's); True if one was added."""
        owned = c.assignment()
        assert self._watcher is not None and self._loop is not None
        if owned != self._owned:
            self._owned = owned
            self._moved_at = self._loop.time()
        want = {partition_path(c.root, tp.topic, tp.partition) for tp in owned}
        if c.group_id is not None:
            want.add(group_dir(c.root, c.group_id))
        have = self._watcher.watched()
        for d in have - want:
            self._watcher.unwatch(d)
        for d in want - have:
            self._watcher.watch(d)
        return bool((want - have) & self._watcher.watched())  # none without inotify (or past its limits)

    async def _wait(self, left: float | None) -> None:
        """Until the watcher's fd is readable, ``left`` seconds pass, the group is due a check, or stop()."""
        assert self._loop is not None
        if self._group:
            moving = self._loop.time() - self._moved_at < self._session_s
            recheck = _GROUP_MOVING_S if moving else self._session_s / 3
            left = recheck if left is None else min(left, recheck)
        ready = self._ready_future()
        if not ready.done():
            await asyncio.wait([ready], timeout=left)

    def _ready_future(self) -> asyncio.Future[None]:
        f = self._ready
        if f is not None and not f.done():
            return f
        loop = self._loop
        assert loop is not None and self._watcher is not None
        f = self._ready = loop.create_future()
        fd = self._watcher.fileno()
        if fd >= 0:
            self._reader_fd = fd
            loop.add_reader(fd, self._settle_ready)
        else:  # no inotify: sleep, backing off while nothing arrives (as logq/client/notify.py)
            loop.call_later(self._sleep_s, self._settle_ready)
            self._sleep_s = min(self._sleep_s * 2, _MAX_SLEEP_S)
        return f

    def _settle_ready(self) -> None:
        if self._reader_fd >= 0 and self._loop is not None:
            self._loop.remove_reader(self._reader_fd)
            self._reader_fd = -1
        f = self._ready
        if f is not None and not f.done():
            f.set_result(None)

    # ------------------------------------------------------------------ positions and commits
    def _inline(self, what: str, reads_only: bool = False) -> Consumer:
        """The consumer, for a call made on the loop that must not meet a call in progress.

        A call that only reads (``reads_only``) is refused only while a call runs in a worker
        thread; one that moves positions also while another task's read is under way."""
        c = self._open()
        assert self._calls is not None
        if self._calls.busy or (not reads_only and self._lock().locked()):
            raise ConcurrentAccessError(
                f"AIOConsumer.{what}() was called while another task's read, commit or seek is in progress",
                hint="await that call first (for a seek: `await consumer.seek_async(tp, offset)` waits for it)",
            )
        return c

    def seek(self, tp: Any, offset: int) -> None:
        """The next read of ``tp`` starts at ``offset`` (as aiokafka's ``seek``: not a coroutine)."""
        c = self._inline("seek")
        self._hand_back()
        c.seek(tp, offset)

    async def seek_async(self, tp: Any, offset: int) -> None:
        """``seek``, waiting for a read or commit of another task to finish first."""
        c = self._on_loop()
        async with self._lock():
            self._hand_back()
            c.seek(tp, offset)

    def assignment(self) -> set[TopicPartition]:
        return self._inline("assignment", reads_only=True).assignment()

    def pause(self, *tps: Any) -> None:
        c = self._inline("pause")
        self._hand_back()
        c.pause(*tps)

    def resume(self, *tps: Any) -> None:
        c = self._inline("resume")
        self._hand_back()
        c.resume(*tps)

    def paused(self) -> set[TopicPartition]:
        return self._inline("paused", reads_only=True).paused()

    async def position(self, tp: Any) -> int:
        c = self._on_loop()
        async with self._lock():
            self._hand_back()
            return c.position(tp)

    async def _run(self, method: str, *args: Any, hand_back: bool = True, **kwargs: Any) -> Any:
        """``Consumer.<method>`` in a worker thread; the records read ahead are given back first
        unless the call neither moves nor reads positions (``hand_back=False``)."""
        c = self._on_loop()
        assert self._calls is not None
        prepare = self._hand_back if hand_back else None
        return await self._calls.run(getattr(c, method), *args, prepare=prepare, **kwargs)

    async def commit(self, offsets: dict[Any, int] | None = None) -> None:
        """Commit the positions (after the last record returned) or ``{tp: next offset}`` (worker thread)."""
        await self._run("commit", offsets)

    async def committed(self, tp: Any) -> Any:
        """The committed offset of one partition (int or None), or {tp: offset or None} for several."""
        return await self._run("committed", tp, hand_back=False)

    async def beginning_offsets(self, partitions: Iterable[Any]) -> dict[TopicPartition, int]:
        result: dict[TopicPartition, int] = await self._run("beginning_offsets", partitions, hand_back=False)
        return result

    async def end_offsets(self, partitions: Iterable[Any]) -> dict[TopicPartition, int]:
        result: dict[TopicPartition, int] = await self._run("end_offsets", partitions, hand_back=False)
        return result

    async def topics(self) -> set[str]:
        result: set[str] = await self._run("topics", hand_back=False)
        return result

    async def partitions_for_topic(self, topic: str) -> set[int] | None:
        result: set[int] | None = await self._run("partitions_for_topic", topic, hand_back=False)
        return result

    async def metrics(self) -> dict[str, int | float]:
        """``Consumer.metrics()`` (it reads the log ends for the lag: in a worker thread)."""
        result: dict[str, int | float] = await self._run("metrics")
        return result

    async def unsubscribe(self) -> None:
        """Leave the group's subscription (``Consumer.unsubscribe``; a worker thread: it takes the group lock)."""
        await self._run("unsubscribe")

    async def seek_to_committed(self, *partitions: Any) -> dict[TopicPartition, int | None]:
        """Seek the given (default: all assigned) partitions to their committed offsets (as
        aiokafka's); {tp: committed offset or None}; a partition without one keeps its position."""
        c = self._on_loop()
        assert self._calls is not None
        result: dict[TopicPartition, int | None] = await self._calls.run(
            _seek_to_committed, c, partitions, prepare=self._hand_back
        )
        return result

    async def seek_to_beginning(self, *tps: Any) -> None:
        await self._run("seek_to_beginning", *tps)

    async def seek_to_end(self, *tps: Any) -> None:
        await self._run("seek_to_end", *tps)

    async def replay_from(
        self, *, offset: int | None = None, timestamp: Any = None, partitions: Iterable[Any] | None = None
    ) -> dict[TopicPartition, int]:
        """As ``Consumer.replay_from``: seek to an offset or a time (worker thread: it reads time indexes)."""
        result: dict[TopicPartition, int] = await self._run(
            "replay_from", offset=offset, timestamp=timestamp, partitions=partitions
        )
        return result

    async def offsets_for_times(self, timestamps: dict[Any, Any]) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        result: dict[TopicPartition, OffsetAndTimestamp | None] = await self._run(
            "offsets_for_times", timestamps, hand_back=False
        )
        return result

    async def lag(self) -> dict[TopicPartition, int]:
        result: dict[TopicPartition, int] = await self._run("lag")
        return result

    async def assign(self, partitions: Iterable[Any]) -> None:
        await self._run("assign", partitions)

    async def subscribe(self, topics: Any) -> None:
        await self._run("subscribe", topics)

    def read_stats(self) -> dict[str, int]:
        """The sync consumer's ``read_stats()``: fetches, bytes read, records decoded."""
        return self._open().read_stats()


def _seek_to_committed(c: Consumer, partitions: tuple[Any, ...]) -> dict[TopicPartition, int | None]:
    """In the worker thread: AIOConsumer.seek_to_committed."""
    out: dict[TopicPartition, int | None] = {}
    for tp in [as_tp(tp) for tp in partitions] or sorted(c.assignment()):
        offset = c.committed(tp)
        out[tp] = offset
        if offset is not None:
            c.seek(tp, offset)
    return out
