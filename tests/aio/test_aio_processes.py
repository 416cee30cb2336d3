"""AIOConsumer across real processes: a group split between two processes, and a wake-up by another process."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from logq import Admin, AIOConsumer, Consumer, Producer, TopicPartition

from tests.aio.conftest import Run

REPO = Path(__file__).resolve().parents[2]


def child(name: str, **args: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tests.aio.children", name, json.dumps(args)], cwd=REPO)


def wait_until(cond, what: str, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def assigned(out: Path) -> list[int] | None:
    try:
        return json.loads((out.parent / (out.name + ".assign")).read_text())
    except (FileNotFoundError, ValueError):
        return None


def lines(out: Path) -> list[tuple[int, int, str]]:
    if not out.exists():
        return []
    return [(int(p), int(o), v) for p, o, v in (ln.split() for ln in out.read_text().splitlines())]


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_two_aio_consumer_processes_in_one_group_split_partitions_and_read_each_record_once(
    tmp_path: Path, loop_kind: str
) -> None:
    if loop_kind == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop is not installed (it is in the test extras)")
    data = str(tmp_path / "data")
    with Admin(data) as admin:
        admin.create_topic("t", partitions=4)
    outs = [tmp_path / "a.txt", tmp_path / "b.txt"]
    stop = tmp_path / "stop"
    procs = [
        child("group_reader", data=data, group="g", out=str(o), stop_file=str(stop), loop_kind=loop_kind) for o in outs
    ]
    try:
        # both members settled on a split of the four partitions
        wait_until(
            lambda: (
                all(assigned(o) for o in outs) and sorted(sum((assigned(o) or [] for o in outs), [])) == [0, 1, 2, 3]
            ),
            "both members to own partitions",
        )
        with Producer(data) as p:
            for i in range(400):
                p.send("t", str(i).encode(), partition=i % 4)
        wait_until(lambda: sum(len(lines(o)) for o in outs) >= 400, "400 records read")
        time.sleep(0.3)  # a duplicate would show up now
        owned = [set(assigned(o) or []) for o in outs]  # before the first to stop hands its partitions over
        got = [lines(o) for o in outs]
        stop.touch()
        for proc in procs:
            assert proc.wait(timeout=30) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert owned[0] and owned[1] and not owned[0] & owned[1]
    assert sorted(int(v) for g in got for _, _, v in g) == list(range(400))
    for g, mine in zip(got, owned):
        assert {p for p, _, _ in g} <= mine  # each read only the partitions it owned


def test_a_producer_process_wakes_an_idle_aio_consumer_that_made_no_reads_while_waiting(run: Run, data: str) -> None:
    async def main() -> tuple[int, list[bytes]]:
        async with AIOConsumer(data, "t") as c:
            waiting = asyncio.ensure_future(c.getmany(timeout_ms=None))
            await asyncio.sleep(0.2)
            before = c.read_stats()["fetches"]
            await asyncio.sleep(1.0)
            idle_fetches = c.read_stats()["fetches"] - before
            proc = child("produce", data=data, values=["hello"], partition=2)
            got = await waiting
            assert await asyncio.to_thread(proc.wait, 30) == 0
            return idle_fetches, [r.value for recs in got.values() for r in recs]

    assert run(main()) == (0, [b"hello"])


def test_records_sent_by_an_aio_producer_never_stopped_are_written_at_exit(data: str) -> None:
    code = (
        "import asyncio, sys\n"
        "from logq import AIOProducer\n"
        "async def main():\n"
        "    p = AIOProducer(sys.argv[1], linger_ms=60000)\n"
        "    await p.start()\n"
        "    for i in range(50):\n"
        "        await p.send('t', b'%d' % i, partition=1)\n"
        "asyncio.run(main())\n"
    )
    res = subprocess.run([sys.executable, "-c", code, data], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    with Consumer(data, "t", auto_offset_reset="earliest") as c:
        assert [r.value for r in c.poll(2.0, max_records=100)] == [b"%d" % i for i in range(50)]


def test_cancelled_reads_during_a_rebalance_with_another_process_lose_no_record(run: Run, tmp_path: Path) -> None:
    """A member cancelled at random points while a member in another process joins: every record is
    read by one of them (at least once: a rebalance may hand over uncommitted records)."""
    data = str(tmp_path / "data")
    with Admin(data) as admin:
        admin.create_topic("t", partitions=4)
    with Producer(data) as p:
        for i in range(2000):
            p.send("t", str(i).encode(), partition=i % 4)
    out, stop = tmp_path / "child.txt", tmp_path / "stop"
    rng = random.Random(3)

    async def main() -> set[int]:
        seen: set[int] = set()
        proc = None
        async with AIOConsumer(data, "t", group_id="g", auto_offset_reset="earliest", session_timeout_ms=1500) as c:
            deadline = time.monotonic() + 60
            while len(seen | {int(v) for _, _, v in lines(out)}) < 2000:
                assert time.monotonic() < deadline, "records went missing"
                if proc is None and len(seen) > 200:
                    proc = child(
                        "group_reader", data=data, group="g", out=str(out), stop_file=str(stop), loop_kind="asyncio"
                    )
                task = asyncio.ensure_future(c.getmany(timeout_ms=50, max_records=rng.randint(1, 20)))
                await asyncio.sleep(rng.choice([0, 0, 0.0005, 0.002]))
                task.cancel()
                try:
                    got = await task
                except asyncio.CancelledError:
                    continue
                seen |= {int(r.value) for recs in got.values() for r in recs}
                await c.commit()
                await asyncio.sleep(0.003 if assigned(out) else 0.02)  # slowly until the other member joined
        stop.touch()
        if proc is not None:
            assert await asyncio.to_thread(proc.wait, 30) == 0
        return seen

    seen = run(main())
    theirs = {int(v) for _, _, v in lines(out)}
    assert seen | theirs == set(range(2000))
    assert theirs, "the other process took part"


def test_an_idle_member_takes_over_the_partitions_of_a_member_killed_with_sigkill(run: Run, tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    with Admin(data) as admin:
        admin.create_topic("t", partitions=4)
    out, stop = tmp_path / "child.txt", tmp_path / "stop"

    async def main() -> tuple[set[TopicPartition], list[int]]:
        async with AIOConsumer(data, "t", group_id="g", auto_offset_reset="earliest", session_timeout_ms=1500) as c:
            proc = child("group_reader", data=data, group="g", out=str(out), stop_file=str(stop), loop_kind="asyncio")
            try:
                deadline = time.monotonic() + 30
                while not (assigned(out) and len(c.assignment()) == 4 - len(assigned(out) or [])):
                    assert time.monotonic() < deadline, "the two members did not split the partitions"
                    await c.getmany(timeout_ms=50)
                os.kill(proc.pid, signal.SIGKILL)
                assert await asyncio.to_thread(proc.wait, 30) == -signal.SIGKILL
                with Producer(data) as p:
                    for i in range(40):
                        p.send("t", str(i).encode(), partition=i % 4)
                got: list[int] = []
                while len(got) < 40:
                    assert time.monotonic() < deadline + 30, "the killed member's partitions were not taken over"
                    batches = await c.getmany(timeout_ms=None)  # woken by the group's files, then the data
                    got += [int(r.value) for recs in batches.values() for r in recs]
                return c.assignment(), sorted(got)
            finally:
                if proc.poll() is None:
                    proc.kill()

    owned, got = run(main())
    assert owned == {TopicPartition("t", p) for p in range(4)}
    assert got == list(range(40))
