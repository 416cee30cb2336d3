"""AIOProducer: the Producer for asyncio code, shaped like aiokafka's AIOKafkaProducer.

It wraps one ``logq.Producer`` (logq/client/producer.py), which does all the batching,
partitioning, linger and writing; this module only decides where each call runs:

- ``await send(...)`` calls the sync ``send`` on the loop: it checks the record, appends it
  to its partition's open batch, and writes that batch itself when it is full (at most
  ``batch_size`` bytes to the page cache: the loop stalls for that one write; see
  docs/benchmarks.md, "asyncio"). It returns an ``asyncio.Future`` of the
  ``RecordMetadata``, settled when the batch is in the log (one hand-over to the loop per
  batch: logq/aio/bridge.py). A send
  that wrote a batch, and every 128th send, gives the loop a turn, so a tight
  ``await send()`` loop does not starve the other tasks.
- With ``fsync="always"`` (the producer's, or the topic's when the producer sets none) a
  send that fills a batch also waits for its fdatasync, so every ``send`` to such a topic
  runs in a worker thread (one, so sends keep their order). So do sends while
  less than half of ``buffer_bytes`` is free (checked at every loop turn, until three
  quarters are free again): a send that finds the buffer full writes every waiting batch
  and may wait up to ``max_block_ms`` for room, which must not happen on the loop.
- ``flush()``, ``stop()`` and ``send_batch()`` write and wait: they run in worker threads.

Cancellation: a ``send`` or ``send_and_wait`` that was called sends its record even if the
awaiting task is cancelled (the record is accepted before the first suspension, or handed
to the worker thread, which is not interrupted); cancelling stops the waiting only. The
record is written, and ``flush()``/``stop()`` report it if the write failed. The producer
stays usable.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from logq.aio.bridge import FutureBridge, check_arguments
from logq.client.futures import RecordFuture, RecordMetadata
from logq.client.producer import BatchMetadata, Producer
from logq.errors import ClientClosedError, ConfigError, LogqError

__all__ = ["AIOProducer"]

_TURN_SENDS = 128  # sends between loop turns in a tight `await send()` loop
_OFFLOAD_BELOW = 0.5  # sends move to the worker thread when less of buffer_bytes is free
_INLINE_ABOVE = 0.75  # and back to the loop when more is free again


class AIOProducer:
    """``logq.Producer`` for asyncio: ``await start()``, ``await send(...)``, ``await stop()``.

    Takes the arguments of ``logq.Producer`` (checked here, at construction). Use it as
    ``async with AIOProducer(path) as producer:`` or call ``start()`` and ``stop()``.
    """

    def __init__(self, data_dir: str, **producer_args: Any) -> None:
        check_arguments(Producer, "AIOProducer", data_dir, **producer_args)
        self._producer = Producer(data_dir, **producer_args)
        self._fsync = producer_args.get("fsync")
        self._durable: dict[str, bool] = {}  # topic -> its appends fdatasync (fsync="always")
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="logq-aio-send")  # one: order kept
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bridge: FutureBridge | None = None
        self._stopped = False
        self._since_turn = 0  # inline sends since the loop last had a turn
        self._offload = False  # the buffer is short of room: sends run in the worker thread

    @property
    def producer(self) -> Producer:
        """The sync Producer underneath (thread-safe: usable from other threads too)."""
        return self._producer

    async def start(self) -> None:
        """Bind to the running loop. Calling it twice is harmless; after ``stop()`` it raises ClientClosedError."""
        if self._stopped:
            raise ClientClosedError("producer")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._bridge = FutureBridge(self._loop)

    def _started(self) -> asyncio.AbstractEventLoop:
        if self._stopped:
            raise ClientClosedError("producer")
        loop = self._loop
        if loop is None:
            raise ConfigError(
                "AIOProducer is not started", hint="await producer.start() first, or use `async with AIOProducer(...)`"
            )
        if asyncio.get_running_loop() is not loop:
            raise ConfigError(
                "AIOProducer used from another event loop than the one it was started in",
                hint="create one AIOProducer per event loop",
            )
        return loop

    async def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Any = None,
        *,
        delay_ms: int | None = None,
        deliver_at: Any = None,
        ttl_ms: int | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Queue one record; returns a future of its ``RecordMetadata`` (await it for the offset).

        Raises at once what the sync ``send`` raises for this record (types, size, topic).
        ``delay_ms``/``deliver_at``/``ttl_ms`` are the sync ``send``'s (for ShareConsumers).
        """
        loop = self._started()
        call = functools.partial(
            self._producer.send,
            topic,
            value,
            key,
            headers,
            partition,
            timestamp_ms,
            delay_ms=delay_ms,
            deliver_at=deliver_at,
            ttl_ms=ttl_ms,
        )
        wrote = False
        durable = self._durable.get(topic) if type(topic) is str else False
        if durable is None:
            durable = self._fsyncs(topic)
        if durable or self._offload:
            handed = loop.run_in_executor(self._sender, call)
            rf: RecordFuture = await asyncio.shield(handed)  # cancelled: the worker still sends it
        else:
            rf = call()
            wrote = rf.done()
        self._since_turn += 1
        if wrote or self._since_turn >= _TURN_SENDS:  # it wrote a batch, or a tight send loop
            self._since_turn = 0
            self._offload = self._buffer_short()
            await asyncio.sleep(0)  # a turn for the loop (cancelled here: the record is sent)
        assert self._bridge is not None  # set with _loop
        return self._bridge.future_for(rf)

    def _fsyncs(self, topic: str) -> bool:
        """Whether appends to ``topic`` fdatasync: this producer's ``fsync``, else the topic's."""
        if self._fsync is not None:
            durable = self._fsync == "always"
        else:
            try:
                durable = self._producer.registry.get(topic).config.fsync == "always"
            except LogqError:  # no such topic: the send raises it
                return False
        self._durable[topic] = durable
        return durable

    def _buffer_short(self) -> bool:
        """Whether sends should go to the worker thread: a send that finds the buffer full
        writes every waiting batch and may wait up to ``max_block_ms`` for room."""
        p = self._producer
        free = p.metrics()["buffer-available-bytes"] / p.buffer_bytes
        return free < (_INLINE_ABOVE if self._offload else _OFFLOAD_BELOW)

    async def send_and_wait(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Any = None,
        *,
        delay_ms: int | None = None,
        deliver_at: Any = None,
        ttl_ms: int | None = None,
    ) -> RecordMetadata:
        """``send`` and wait until the record is in the log; its ``RecordMetadata``."""
        fut = await self.send(
            topic, value, key, partition, timestamp_ms, headers, delay_ms=delay_ms, deliver_at=deliver_at, ttl_ms=ttl_ms
        )
        return await fut

    async def send_batch(
        self,
        topic: str,
        values: Sequence[Any],
        *,
        key: Any = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> list[BatchMetadata]:
        """The sync bulk path (``Producer.send_batch``), in a worker thread; written when it returns.

        Cancelling the wait does not stop the write.
        """
        loop = self._started()
        call = functools.partial(
            self._producer.send_batch, topic, values, key=key, partition=partition, timestamp_ms=timestamp_ms
        )
        return await asyncio.shield(loop.run_in_executor(self._sender, call))

    async def flush(self, timeout: float | None = None) -> None:
        """Write every queued record (in a worker thread); raises what ``Producer.flush`` raises."""
        loop = self._started()
        await asyncio.shield(loop.run_in_executor(self._sender, self._producer.flush, timeout))

    def metrics(self) -> dict[str, float]:
        """The sync producer's ``metrics()`` (counters under Kafka's names)."""
        return self._producer.metrics()

    def partitions_for(self, topic: str) -> set[int]:
        """The partition numbers of ``topic`` (as aiokafka's ``partitions_for``)."""
        return self._producer.partitions_for(topic)

    async def stop(self, timeout: float | None = None) -> None:
        """Flush and close (in a worker thread). A second call does nothing."""
        if self._stopped:
            return
        self._stopped = True
        loop = asyncio.get_running_loop()
        try:
            await asyncio.shield(loop.run_in_executor(self._sender, self._producer.close, timeout))
        finally:
            self._sender.shutdown(wait=False)

    async def __aenter__(self) -> AIOProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
