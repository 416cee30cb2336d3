"""AIOProducer on real event loops (asyncio's and uvloop): sends, futures, cancellation, misuse."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest
from logq import Admin, AIOProducer, ClientClosedError, ConfigError, Consumer, RecordMetadata, SerializationError
from logq.errors import LogqError, UnknownTopicError

from tests.aio.conftest import Run


def read_all(data: str, topic: str = "t") -> list[tuple[int, int, bytes | None]]:
    """Every record of ``topic`` as (partition, offset, value), read by a sync consumer."""
    out = []
    with Consumer(data, topic, auto_offset_reset="earliest") as c:
        while recs := c.poll(0.2, max_records=10_000):
            out += [(r.partition, r.offset, r.value) for r in recs]
    return sorted(out)


def test_send_returns_a_future_of_where_the_record_landed(run: Run, data: str) -> None:
    async def main() -> RecordMetadata:
        async with AIOProducer(data) as p:
            fut = await p.send("t", b"v", key=b"k")
            assert isinstance(fut, asyncio.Future)
            return await fut

    md = run(main())
    assert (md.topic, md.offset) == ("t", 0)
    assert read_all(data) == [(md.partition, 0, b"v")]


def test_send_and_wait_returns_offsets_in_send_order_per_partition(run: Run, data: str) -> None:
    async def main() -> list[RecordMetadata]:
        async with AIOProducer(data, linger_ms=1) as p:
            return [await p.send_and_wait("t", str(i).encode(), partition=1) for i in range(20)]

    mds = run(main())
    assert [m.offset for m in mds] == list(range(20))
    assert [v for _, _, v in read_all(data)] == [str(i).encode() for i in range(20)]


def test_many_sends_then_gather_resolve_every_future(run: Run, data: str) -> None:
    async def main() -> list[RecordMetadata]:
        async with AIOProducer(data, batch_size=1024) as p:
            futs = [await p.send("t", b"x" * 50, partition=i % 3) for i in range(3000)]
            return await asyncio.gather(*futs)

    mds = run(main())
    assert sorted((m.partition, m.offset) for m in mds) == sorted((p, o) for p in range(3) for o in range(1000))


def test_fsync_always_sends_through_a_thread_in_order(run: Run, data: str) -> None:
    async def main() -> list[RecordMetadata]:
        async with AIOProducer(data, fsync="always", batch_size=256) as p:
            futs = [await p.send("t", str(i).encode(), partition=2) for i in range(100)]
            return list(await asyncio.gather(*futs))

    assert [m.offset for m in run(main())] == list(range(100))
    assert [v for _, _, v in read_all(data)] == [str(i).encode() for i in range(100)]


def test_send_batch_and_flush_write_everything(run: Run, data: str) -> None:
    async def main() -> int:
        async with AIOProducer(data) as p:
            metas = await p.send_batch("t", [b"a"] * 500, partition=0)
            await p.send("t", b"b", partition=0)
            await p.flush()
            return sum(m.count for m in metas)

    assert run(main()) == 500
    assert len(read_all(data)) == 501


def test_cancelled_send_and_wait_still_delivers_every_record_exactly_once(run: Run, data: str) -> None:
    """Cancellation stops the wait only: each record whose send_and_wait was called is written once."""
    rng = random.Random(7)

    async def main(fsync: str | None) -> int:
        cancelled = 0
        async with AIOProducer(data, fsync=fsync, linger_ms=2) as p:
            for i in range(300):
                task = asyncio.ensure_future(p.send_and_wait("t", f"{fsync}-{i}".encode(), partition=0))
                await asyncio.sleep(rng.choice([0, 0, 0.0001, 0.001]))
                if task.cancel():
                    cancelled += 1
                try:
                    await task
                except asyncio.CancelledError:
                    pass
            await p.flush()
            md = await p.send_and_wait("t", b"after", partition=0)  # still usable
            assert md.offset == (601 if fsync else 300)
        return cancelled

    assert run(main(None)) > 0
    assert run(main("always")) > 0
    values = [v for _, _, v in read_all(data)]
    expected = [f"{f}-{i}".encode() for f in (None, "always") for i in range(300)]
    assert values == expected[:300] + [b"after"] + expected[300:] + [b"after"]


def test_a_bad_record_raises_at_send(run: Run, data: str) -> None:
    async def main() -> None:
        async with AIOProducer(data) as p:
            with pytest.raises(SerializationError):
                await p.send("t", 42)  # type: ignore[arg-type]
            with pytest.raises(UnknownTopicError):
                await p.send("nope", b"v")
            with pytest.raises(LogqError):
                await p.send("t", b"v", partition=9)
            assert (await p.send_and_wait("t", b"ok")).offset == 0  # usable after refusals

    run(main())


def test_send_before_start_after_stop_and_stop_twice(run: Run, data: str) -> None:
    async def main() -> None:
        p = AIOProducer(data)
        with pytest.raises(ConfigError, match="not started"):
            await p.send("t", b"v")
        await p.start()
        await p.start()  # harmless
        await p.send("t", b"v")
        await p.stop()
        await p.stop()  # harmless
        with pytest.raises(ClientClosedError):
            await p.send("t", b"v")
        with pytest.raises(ClientClosedError):
            await p.start()

    run(main())
    assert len(read_all(data)) == 1  # stop() flushed the unawaited send


def test_wrong_producer_arguments_raise_at_construction(data: str) -> None:
    with pytest.raises(ConfigError):
        AIOProducer(data, linger_ms=-1)
    with pytest.raises(LogqError):
        AIOProducer(data, fsync="sometimes")


def test_partitions_for_lists_the_topic_partitions(run: Run, data: str) -> None:
    async def main() -> set[int]:
        async with AIOProducer(data) as p:
            return p.partitions_for("t")

    assert run(main()) == {0, 1, 2}


def test_sends_move_to_the_worker_thread_while_the_buffer_is_short_of_room(run: Run, data: str) -> None:
    """A send that finds the buffer full writes batches and may wait: never on the loop."""
    threads: list[str] = []
    turn = iter(range(10**9))

    def round_robin(_key: bytes | None, partitions: list[int], _available: list[int]) -> int:
        threads.append(threading.current_thread().name)
        return partitions[next(turn) % len(partitions)]

    async def main() -> list[RecordMetadata]:
        # 3 partitions x 16 KiB open batches fill most of a 40 KiB buffer before any is written
        async with AIOProducer(
            data, buffer_bytes=40 << 10, batch_size=16 << 10, linger_ms=60_000, partitioner=round_robin
        ) as p:
            futs = [await p.send("t", str(i).encode().ljust(1000)) for i in range(600)]
            await p.flush()  # the last batches are not full: written now, not after linger_ms
            return list(await asyncio.gather(*futs))

    mds = run(main())
    assert threads[0] == threading.main_thread().name  # on the loop while there was room
    assert any(name.startswith("logq-aio-send") for name in threads)  # then moved off it
    for part in range(3):
        assert [m.offset for m in mds if m.partition == part] == list(range(200))
    values = read_all(data)
    for part in range(3):
        got = [int(v) for p, _, v in values if p == part]
        assert got == sorted(got) and len(got) == 200


def test_metrics_are_the_sync_producers(run: Run, data: str) -> None:
    async def main() -> dict[str, float]:
        async with AIOProducer(data) as p:
            for _ in range(10):
                await p.send_and_wait("t", b"v", partition=0)
            return p.metrics()

    assert run(main())["record-send-total"] == 10


def test_a_producer_refuses_another_event_loop(data: str) -> None:
    p = AIOProducer(data)
    asyncio.run(p.start())
    with pytest.raises(ConfigError, match="another event loop"):
        asyncio.run(p.send("t", b"v"))
    p.producer.close()


def test_sends_to_a_topic_that_fsyncs_every_append_run_in_the_worker_thread(run: Run, data: str) -> None:
    with Admin(data) as admin:
        admin.create_topic("durable", partitions=1, fsync="always")
    threads: list[str] = []

    def first(_key: bytes | None, partitions: list[int], _available: list[int]) -> int:
        threads.append(threading.current_thread().name)
        return partitions[0]

    async def main() -> list[int]:
        async with AIOProducer(data, partitioner=first, batch_size=512) as p:
            await p.send_and_wait("t", b"plain")
            futs = [await p.send("durable", str(i).encode()) for i in range(50)]
            return [m.offset for m in await asyncio.gather(*futs)]

    assert run(main()) == list(range(50))
    assert threads[0] == threading.main_thread().name  # the topic without fsync: on the loop
    assert all(name.startswith("logq-aio-send") for name in threads[1:])


def test_send_and_send_and_wait_carry_delay_and_ttl_headers_for_share_consumers(run: Run, data: str) -> None:
    ts = 1_700_000_000_000

    async def main() -> None:
        async with AIOProducer(data) as p:
            await (await p.send("t", b"a", partition=0, timestamp_ms=ts, delay_ms=5_000))
            await p.send_and_wait("t", b"b", partition=0, timestamp_ms=ts, deliver_at=ts + 7_000, ttl_ms=1_000)
            with pytest.raises(ConfigError):
                await p.send("t", b"c", delay_ms=-1)

    run(main())
    with Consumer(data, "t", auto_offset_reset="earliest") as c:
        recs = c.poll(5, max_records=10)
    heads = [dict(r.headers) for r in recs]
    assert [r.value for r in recs] == [b"a", b"b"]
    assert heads[0] == {"logq.deliver_at_ms": str(ts + 5_000).encode()}
    assert heads[1] == {"logq.deliver_at_ms": str(ts + 7_000).encode(), "logq.expire_at_ms": str(ts + 8_000).encode()}
