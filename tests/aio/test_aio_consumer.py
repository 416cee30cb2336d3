"""AIOConsumer on real event loops (asyncio's and uvloop): reads, waits, cancellation, commits, misuse."""

from __future__ import annotations

import asyncio
import random

import pytest
from logq import (
    Admin,
    AIOConsumer,
    AIOProducer,
    ClientClosedError,
    ConcurrentAccessError,
    ConfigError,
    InvalidTopicError,
    Producer,
    Record,
    TopicPartition,
    UnknownTopicError,
)

from tests.aio.conftest import Run


def produce(data: str, n: int, partitions: int = 3, start: int = 0) -> None:
    with Producer(data) as p:
        for i in range(start, start + n):
            p.send("t", str(i).encode(), partition=i % partitions)


def test_getmany_groups_records_by_partition_up_to_max_records(run: Run, data: str) -> None:
    produce(data, 30)

    async def main() -> tuple[dict[TopicPartition, list[Record]], dict[TopicPartition, list[Record]]]:
        async with AIOConsumer(data, "t", auto_offset_reset="earliest") as c:
            first = await c.getmany(max_records=10)
            rest = await c.getmany(timeout_ms=100, max_records=1000)
            return first, rest

    first, rest = run(main())
    assert sum(len(v) for v in first.values()) == 10
    seen = [r for recs in (*first.values(), *rest.values()) for r in recs]
    assert sorted(int(r.value) for r in seen) == list(range(30))
    for tp, recs in (*first.items(), *rest.items()):
        assert all(r.partition == tp.partition for r in recs)
        assert [r.offset for r in recs] == sorted(r.offset for r in recs)


def test_a_getmany_that_wants_more_than_a_chunk_reads_several_chunks(run: Run, data: str) -> None:
    produce(data, 90, partitions=1)

    async def main() -> int:
        async with AIOConsumer(data, "t", auto_offset_reset="earliest", read_chunk_records=7) as c:
            got = await c.getmany(max_records=50)
            return len(got[TopicPartition("t", 0)])

    assert run(main()) == 50


def test_getmany_returns_empty_after_its_timeout(run: Run, data: str) -> None:
    async def main() -> tuple[dict[TopicPartition, list[Record]], dict[TopicPartition, list[Record]]]:
        async with AIOConsumer(data, "t") as c:
            return await c.getmany(), await c.getmany(timeout_ms=50)

    assert run(main()) == ({}, {})


def test_getone_waits_until_a_record_is_sent_from_another_task(run: Run, data: str) -> None:
    async def main() -> Record:
        async with AIOConsumer(data, "t") as c:

            async def later() -> None:
                await asyncio.sleep(0.1)
                produce(data, 1)

            sender = asyncio.ensure_future(later())
            rec = await c.getone()
            await sender
            return rec

    assert run(main()).value == b"0"


def test_async_for_yields_in_order_and_ends_on_stop(run: Run, data: str) -> None:
    produce(data, 12, partitions=1)

    async def main() -> list[int]:
        c = AIOConsumer(data, "t", auto_offset_reset="earliest")
        await c.start()
        seen: list[int] = []
        async for rec in c:
            seen.append(rec.offset)
            if len(seen) == 12:
                asyncio.get_running_loop().call_later(0.05, lambda: asyncio.ensure_future(c.stop()))
        return seen

    assert run(main()) == list(range(12))


def test_stop_ends_a_waiting_getmany_with_nothing(run: Run, data: str) -> None:
    async def main() -> dict[TopicPartition, list[Record]]:
        c = AIOConsumer(data, "t")
        await c.start()
        waiting = asyncio.ensure_future(c.getmany(timeout_ms=None))
        await asyncio.sleep(0.05)
        await c.stop()
        return await waiting

    assert run(main()) == {}


def test_cancelled_getmany_loses_no_records(run: Run, data: str) -> None:
    """Cancel getmany at random points (between chunks too); every record comes once, in order."""
    produce(data, 3000)
    rng = random.Random(11)

    async def main() -> tuple[list[Record], int]:
        seen: list[Record] = []
        cancels = 0
        async with AIOConsumer(data, "t", auto_offset_reset="earliest", read_chunk_records=3) as c:
            while len(seen) < 3000:
                task = asyncio.ensure_future(c.getmany(timeout_ms=200, max_records=rng.randint(1, 60)))
                for _ in range(rng.randint(0, 12)):
                    await asyncio.sleep(0)
                if task.cancel():
                    cancels += 1
                try:
                    got = await task
                except asyncio.CancelledError:
                    continue
                for recs in got.values():
                    seen += recs
            assert await c.getmany(timeout_ms=20) == {}  # nothing left over, nothing twice
        return seen, cancels

    seen, cancels = run(main())
    assert cancels > 50
    assert sorted(int(r.value) for r in seen) == list(range(3000))
    for p in range(3):
        assert [r.offset for r in seen if r.partition == p] == list(range(1000))


def test_cancelled_getmany_leaves_commits_after_the_last_record_returned(run: Run, data: str) -> None:
    produce(data, 200, partitions=1)

    async def main() -> tuple[int, int | None]:
        async with AIOConsumer(
            data, "t", group_id="g", auto_offset_reset="earliest", read_chunk_records=2, enable_auto_commit=False
        ) as c:
            got = await c.getmany(timeout_ms=2000, max_records=5)
            n = sum(len(v) for v in got.values())
            task = asyncio.ensure_future(c.getmany(max_records=100))
            for _ in range(5):
                await asyncio.sleep(0)
            assert task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await c.commit()
            return n, await c.committed(TopicPartition("t", 0))

    n, committed = run(main())
    assert committed == n == 5


def test_commit_seek_and_replay(run: Run, data: str) -> None:
    produce(data, 30, partitions=1)
    tp = TopicPartition("t", 0)

    async def main() -> None:
        async with AIOConsumer(data, "t", group_id="g", auto_offset_reset="earliest") as c:
            got = await c.getmany(timeout_ms=2000, max_records=10)
            assert [r.offset for r in got[tp]] == list(range(10))
            await c.commit()
            assert await c.committed(tp) == 10
            assert await c.position(tp) == 10
            c.seek(tp, 25)
            assert [r.offset for r in (await c.getmany(max_records=100))[tp]] == [25, 26, 27, 28, 29]
            assert await c.replay_from(offset=3, partitions=[tp]) == {tp: 3}
            assert (await c.getone()).offset == 3
            await c.seek_to_end()
            assert await c.getmany() == {}
            await c.seek_to_beginning(tp)
            assert (await c.getone()).offset == 0
            await c.seek_async(tp, 7)
            assert (await c.getone()).offset == 7
            assert (await c.lag())[tp] == 22
            await c.commit({tp: 2})
            assert await c.committed(tp) == 2

    run(main())


def test_pause_resume_and_assign(run: Run, data: str) -> None:
    produce(data, 9)

    async def main() -> None:
        async with AIOConsumer(data, auto_offset_reset="earliest") as c:
            await c.assign([TopicPartition("t", 0), TopicPartition("t", 1)])
            assert c.assignment() == {TopicPartition("t", 0), TopicPartition("t", 1)}
            c.pause(TopicPartition("t", 0))
            assert c.paused() == {TopicPartition("t", 0)}
            assert set(await c.getmany(max_records=100)) == {TopicPartition("t", 1)}
            c.resume(TopicPartition("t", 0))
            assert set(await c.getmany(max_records=100)) == {TopicPartition("t", 0)}

    run(main())


def test_an_idle_consumer_makes_no_reads_until_a_write_wakes_it(run: Run, data: str) -> None:
    async def main() -> tuple[int, int]:
        async with AIOConsumer(data, "t") as c:
            waiting = asyncio.ensure_future(c.getmany(timeout_ms=None))
            await asyncio.sleep(0.1)
            before = c.read_stats()["fetches"]
            await asyncio.sleep(1.0)
            idle = c.read_stats()["fetches"] - before
            assert not waiting.done()
            produce(data, 1)
            got = await waiting
            return idle, sum(len(v) for v in got.values())

    assert run(main()) == (0, 1)


def test_seek_while_a_commit_runs_in_its_thread_is_refused(run: Run, data: str) -> None:
    produce(data, 3, partitions=1)
    tp = TopicPartition("t", 0)

    async def main() -> None:
        async with AIOConsumer(data, "t", group_id="g", auto_offset_reset="earliest") as c:
            await c.getmany(timeout_ms=2000)
            commit = asyncio.ensure_future(c.commit())
            await asyncio.sleep(0)  # the commit holds the consumer now
            with pytest.raises(ConcurrentAccessError):
                c.seek(tp, 0)
            await commit
            c.seek(tp, 0)  # free again
            assert (await c.getone()).offset == 0

    run(main())


def test_a_cancelled_commit_finishes_and_the_consumer_stays_usable(run: Run, data: str) -> None:
    produce(data, 3, partitions=1)
    tp = TopicPartition("t", 0)

    async def main() -> None:
        async with AIOConsumer(data, "t", group_id="g", auto_offset_reset="earliest", fsync_commits=True) as c:
            await c.getmany(timeout_ms=2000)
            commit = asyncio.ensure_future(c.commit())
            await asyncio.sleep(0)
            commit.cancel()
            with pytest.raises(asyncio.CancelledError):
                await commit
            assert await c.committed(tp) == 3  # waited for the thread's commit, then read it

    run(main())


def test_misuse_raises_logq_errors(run: Run, data: str) -> None:
    with pytest.raises(ConfigError):
        AIOConsumer(data, "t", read_chunk_records=0)

    async def main() -> None:
        c = AIOConsumer(data, "t")
        with pytest.raises(ConfigError, match="not started"):
            await c.getmany()
        with pytest.raises(ConfigError):
            await AIOConsumer(data, "t", max_poll_records=0).start()
        await c.start()
        await c.start()  # harmless
        with pytest.raises(ConfigError):
            await c.getmany(timeout_ms=1.5)
        with pytest.raises(ConfigError):
            await c.getmany(max_records=0)
        with pytest.raises(ConfigError):
            await c.getmany(timeout_ms=-1)
        with pytest.raises(ConfigError):
            c.seek(TopicPartition("t", 0), -1)
        await c.stop()
        await c.stop()  # harmless
        with pytest.raises(ClientClosedError):
            await c.getmany()
        with pytest.raises(ClientClosedError):
            await c.getone()
        with pytest.raises(ClientClosedError):
            await c.commit()
        with pytest.raises(ClientClosedError):
            await c.start()

    run(main())


def test_getone_reads_ahead_but_commits_and_stop_store_only_what_was_returned(run: Run, data: str) -> None:
    produce(data, 100, partitions=1)
    tp = TopicPartition("t", 0)

    async def main() -> None:
        async with AIOConsumer(data, "t", group_id="g", auto_offset_reset="earliest") as c:
            assert [(await c.getone()).offset for _ in range(3)] == [0, 1, 2]
            assert c.read_stats()["records_built"] > 3  # a chunk was read ahead
            await c.commit()
            assert await c.committed(tp) == 3
            assert (await c.getone()).offset == 3  # given back, read again
            assert (await c.getone()).offset == 4
        async with AIOConsumer(data, "t", group_id="g", auto_offset_reset="earliest") as c:
            assert (await c.getone()).offset == 5  # stop() committed after the last record returned

    run(main())


def test_a_seek_or_pause_after_getone_drops_the_records_read_ahead(run: Run, data: str) -> None:
    produce(data, 100, partitions=1)
    tp = TopicPartition("t", 0)

    async def main() -> None:
        async with AIOConsumer(data, "t", auto_offset_reset="earliest") as c:
            assert (await c.getone()).offset == 0
            c.seek(tp, 50)
            assert (await c.getone()).offset == 50
            assert await c.position(tp) == 51
            c.pause(tp)
            assert await c.getmany(timeout_ms=20) == {}
            c.resume(tp)
            got = await c.getmany(max_records=3)
            assert [r.offset for r in got[tp]] == [51, 52, 53]

    run(main())


def test_getone_then_getmany_continue_in_order(run: Run, data: str) -> None:
    produce(data, 40, partitions=1)
    tp = TopicPartition("t", 0)

    async def main() -> list[int]:
        async with AIOConsumer(data, "t", auto_offset_reset="earliest", read_chunk_records=10) as c:
            seen = [(await c.getone()).offset]
            while len(seen) < 40:
                got = await c.getmany(timeout_ms=100, max_records=4)
                seen += [r.offset for r in got.get(tp, [])]
                if len(seen) < 40:
                    seen.append((await c.getone()).offset)
            return seen

    assert run(main()) == list(range(40))


def test_cancelled_getone_loses_no_records(run: Run, data: str) -> None:
    produce(data, 1000)
    rng = random.Random(5)

    async def main() -> list[Record]:
        seen: list[Record] = []
        async with AIOConsumer(data, "t", auto_offset_reset="earliest", read_chunk_records=4) as c:
            while len(seen) < 1000:
                task = asyncio.ensure_future(c.getone())
                for _ in range(rng.randint(0, 3)):
                    await asyncio.sleep(0)
                task.cancel()
                try:
                    seen.append(await task)
                except asyncio.CancelledError:
                    pass
            assert await c.getmany(timeout_ms=20) == {}
        return seen

    seen = run(main())
    for p in range(3):
        assert [r.offset for r in seen if r.partition == p] == list(range(334 if p == 0 else 333))


def test_assignment_is_readable_while_another_task_reads_but_not_during_a_commit(run: Run, data: str) -> None:
    produce(data, 300, partitions=1)

    async def main() -> None:
        async with AIOConsumer(
            data, "t", group_id="g", auto_offset_reset="earliest", read_chunk_records=5, enable_auto_commit=False
        ) as c:
            await c.getmany(timeout_ms=2000, max_records=1)
            reading = asyncio.ensure_future(c.getmany(max_records=200))
            await asyncio.sleep(0)
            await asyncio.sleep(0)  # the read is between two chunks now
            assert not reading.done()
            assert TopicPartition("t", 0) in c.assignment()
            with pytest.raises(ConcurrentAccessError):
                c.seek(TopicPartition("t", 0), 0)  # would move positions under the read
            assert sum(len(v) for v in (await reading).values()) == 200
            commit = asyncio.ensure_future(c.commit())
            await asyncio.sleep(0)
            with pytest.raises(ConcurrentAccessError):
                c.assignment()
            await commit

    run(main())


def test_a_failed_start_can_be_retried(run: Run, data: str) -> None:
    async def main() -> None:
        c = AIOConsumer(data, "later", auto_offset_reset="earliest")
        with pytest.raises(UnknownTopicError):
            await c.start()
        with Admin(data) as admin:
            admin.create_topic("later")
        await c.start()
        assert c.assignment() == {TopicPartition("later", 0)}
        await c.stop()

    run(main())


def test_stop_after_a_cancelled_start_leaves_the_group(run: Run, data: str) -> None:
    async def main() -> set[TopicPartition]:
        c = AIOConsumer(data, "t", group_id="g")
        starting = asyncio.ensure_future(c.start())
        await asyncio.sleep(0)
        starting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await starting
        await c.stop()  # waits for the build, then closes it
        async with AIOConsumer(data, "t", group_id="g") as other:
            await other.getmany(timeout_ms=1500)
            return other.assignment()

    assert run(main()) == {TopicPartition("t", p) for p in range(3)}


def test_offsets_topics_metrics_and_unsubscribe(run: Run, data: str) -> None:
    produce(data, 30)
    tps = [TopicPartition("t", p) for p in range(3)]

    async def main() -> None:
        async with AIOConsumer(data, "t", group_id="g", auto_offset_reset="earliest") as c:
            first = await c.getone()
            assert first.offset == 0
            assert await c.beginning_offsets(tps) == {tp: 0 for tp in tps}
            assert await c.end_offsets(tps) == {tp: 10 for tp in tps}
            assert "t" in await c.topics()
            assert await c.partitions_for_topic("t") == {0, 1, 2}
            await c.commit()
            assert await c.committed(tps) == {tp: (1 if tp.partition == first.partition else 0) for tp in tps}
            metrics = await c.metrics()
            assert metrics["commit-total"] == 1
            assert metrics["records-lag-max"] == 10  # the records read ahead were given back
            await c.unsubscribe()
            assert c.assignment() == set()

    run(main())


def test_async_for_ends_after_consumer_timeout_ms_without_records(run: Run, data: str) -> None:
    produce(data, 5, partitions=1)

    async def main() -> list[int]:
        async with AIOConsumer(data, "t", auto_offset_reset="earliest", consumer_timeout_ms=200) as c:
            return [r.offset async for r in c]

    assert run(main()) == list(range(5))


def test_tasks_sharing_one_consumer_see_each_record_once(run: Run, data: str) -> None:
    produce(data, 900)

    async def main() -> list[Record]:
        seen: list[Record] = []
        async with AIOConsumer(data, "t", auto_offset_reset="earliest", read_chunk_records=7) as c:

            async def worker(use_getone: bool) -> None:
                while len(seen) < 900:
                    if use_getone:  # cancelled by the timeout once the records ran out: loses nothing
                        try:
                            seen.append(await asyncio.wait_for(c.getone(), 0.2))
                        except TimeoutError:
                            pass
                    else:
                        for recs in (await c.getmany(timeout_ms=50, max_records=13)).values():
                            seen.extend(recs)

            await asyncio.wait_for(asyncio.gather(worker(True), worker(True), worker(False)), 30)
        return seen

    seen = run(main())
    assert sorted(int(r.value) for r in seen) == list(range(900))


def test_getmany_and_getone_of_some_partitions_only(run: Run, data: str) -> None:
    produce(data, 30)
    tp0, tp1, tp2 = (TopicPartition("t", p) for p in range(3))

    async def main() -> None:
        async with AIOConsumer(data, "t", auto_offset_reset="earliest") as c:
            ahead = await c.getone()  # reads a chunk ahead
            got = await c.getmany(tp1, timeout_ms=100, max_records=100)
            assert set(got) == {tp1} and [r.offset for r in got[tp1]] == list(range(10))
            c.pause(tp2)
            one = await c.getone(tp0, tp2)
            assert one.partition == 0 and one.offset == (1 if ahead.partition == 0 else 0)
            assert c.paused() == {tp2}  # the user's pause is kept
            rest = await c.getmany(timeout_ms=100, max_records=100)
            assert set(rest) == {tp0} and rest[tp0][0].offset == one.offset + 1
            with pytest.raises(ConfigError, match="not assigned"):
                await c.getmany(TopicPartition("t", 7))
            with pytest.raises(InvalidTopicError):
                await c.getmany("t")  # a topic name, not a (topic, partition)

    run(main())


def test_seek_to_committed_rewinds_to_the_last_commit(run: Run, data: str) -> None:
    produce(data, 20, partitions=1)
    tp = TopicPartition("t", 0)

    async def main() -> None:
        async with AIOConsumer(data, "t", group_id="g", auto_offset_reset="earliest") as c:
            await c.getmany(timeout_ms=2000, max_records=5)
            await c.commit()
            await c.getmany(max_records=5)
            assert await c.position(tp) == 10
            result = await c.seek_to_committed()
            assert result[tp] == 5 and await c.position(tp) == 5
            assert (await c.getone()).offset == 5

    run(main())


def test_an_auto_committing_group_member_reads_one_chunk_per_call(run: Run, data: str) -> None:
    """Its reads commit (auto-commit, rebalances): a read's records are returned before any suspension."""
    produce(data, 100, partitions=1)

    async def main() -> tuple[int, int]:
        async with AIOConsumer(data, "t", group_id="g", auto_offset_reset="earliest", read_chunk_records=7) as c:
            first = sum(len(v) for v in (await c.getmany(timeout_ms=2000, max_records=50)).values())
        async with AIOConsumer(data, "t", auto_offset_reset="earliest", read_chunk_records=7) as c:
            alone = sum(len(v) for v in (await c.getmany(timeout_ms=2000, max_records=50)).values())
        return first, alone

    assert run(main()) == (7, 50)


def test_a_consumer_refuses_another_event_loop(data: str) -> None:
    c = AIOConsumer(data, "t")
    asyncio.run(c.start())
    with pytest.raises(ConfigError, match="another event loop"):
        asyncio.run(c.getmany())
    with pytest.raises(ConfigError, match="another event loop"):
        asyncio.run(c.commit())
    c.consumer.close()  # its loop is gone: close the sync consumer underneath


def test_without_inotify_a_waiting_consumer_falls_back_to_short_sleeps(
    run: Run, data: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logq.client.notify as notify

    monkeypatch.setattr(notify, "_load_libc", lambda: None)  # as on a system without inotify

    async def main() -> tuple[bool, bytes | None]:
        async with AIOConsumer(data, "t") as c:
            assert c.consumer is not None

            async def later() -> None:
                await asyncio.sleep(0.1)
                produce(data, 1)

            sender = asyncio.ensure_future(later())
            rec = await asyncio.wait_for(c.getone(), 10)
            await sender
            return c.read_stats()["fetches"] > 2, rec.value  # it polled while waiting

    assert run(main()) == (True, b"0")


def test_an_unknown_argument_raises_config_error_naming_it(data: str) -> None:
    with pytest.raises(ConfigError, match="group"):
        AIOConsumer(data, "t", group="g")  # Kafka's spelling is group_id
    with pytest.raises(ConfigError, match="bootstrap_servers"):
        AIOProducer(data, bootstrap_servers="localhost:9092")
